"""The continuous-batching rules, compiled: many iterations of one replica in one call.

`engine_run` plays a replica forward iteration by iteration from a given state, with the
rules of a vLLM-style scheduler (see `replica.py`), and stops after `max_steps` iterations,
when nothing is schedulable, after an iteration whose results someone must act on at their
time (a completion when `stop_done`, a prefill hand-off), or when its buffers run short.
It touches no simulation state: what happened goes to an event log (`apply_log` writes it
into the request table later, when simulated time has caught up), and the state it ends in
goes to `S`/`st`. A state after `ckpt` iterations is copied aside, so a replica interrupted
mid-plan can keep the iterations that have ended and plan again from there in one call.

State of a replica (all int64):
  S[ROW, i] for running sequences i < n, in admission order:
      REQ request id, TGT tokens to prefill (prompt + tokens generated before a preemption),
      KV tokens in the KV cache, BLK KV blocks held, GEN output tokens generated so far,
      LAST when its last token came (ns; 0: none yet), GAP the longest gap between two of
      its tokens so far (ns)
  st[N], st[FREE] free KV blocks, st[DEMAND] KV blocks the waiting requests need,
  st[LATE] blocks freed during the iteration in progress (usable from the next one),
  st[EVICT] blocks a prefix cache holds that no sequence uses, taken back when the free
  pool runs short (0 while prefix caching is off)
The waiting queue is the replica's queue `q_req[q_head:q_tail]` (`q_time`: when each entry
joined it; an entry is admissible from the first iteration that starts at or after that),
behind a stack `F` of preempted sequences (request, tokens generated, LAST, GAP; the top is
the queue's head; it starts as the `nf0` entries the replica holds from earlier calls).

Inter-token gaps: a sequence decoding in consecutive iterations gets its tokens one
iteration apart, so each iteration logs one EV_TOKENS event (how many such tokens) and
`apply_log` counts them at the iteration's duration; a token after any other gap (the first
decode token after a KV hand-off, the first after a preemption or an idle spell) is logged
alone with its gap (EV_GAP). A completion carries the sequence's longest gap.

Priorities (cfg C_PRIORITY): the replica keeps its queue in priority order (highest first,
arrival order within a class), running sequences are kept in the same order so that the
sequence preempted for KV space is the lowest class's latest admitted, and a waiting head of
a higher class goes before preempted sequences of a lower one, and before the prefill
chunks of lower classes' prompts (which keep their KV and take what budget is left: a long
low-class prompt in chunks would otherwise hold the prefill budget for seconds). With
C_PREEMPT_LOWER, a head that finds no slot or KV space preempts running sequences of lower
classes to make room.

Prefix caching (the engine's half; `prefix_cache.py` decides what is cached): `cached[r]`
tokens of request r's prompt are already in the KV cache, so its prefill starts after them
and its blocks exclude them; when it completes, `keep[r]` of its blocks stay cached
(evictable) instead of freeing. With C_STOP_EVICT a run stops after an iteration that took
blocks back from the cache, so that the cache learns which entries lost them at that
iteration's end.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..timing.kernels import batch_time

# rows of S
REQ, TGT, KV, BLK, GEN, LAST, GAP = 0, 1, 2, 3, 4, 5, 6
S_ROWS = 7
F_ROWS = 4     # rows of the preempted stack: REQ, GEN, LAST, GAP
NS = 1e9       # token times and gaps are kept in integer nanoseconds
# entries of st
N, FREE, DEMAND, LATE, EVICT = 0, 1, 2, 3, 4
ST_SIZE = 5
# entries of cfg
(C_BS, C_MAX_SEQS, C_MAX_TOKENS, C_CHUNK, C_CHUNKED, C_KV_GROWS, C_PER_SEQ, C_TOTAL, C_STOP_DONE, C_PREFILL_ROLE,
 C_PRIORITY, C_PREEMPT_LOWER, C_STOP_EVICT, C_MIXED) = range(14)
CFG_SIZE = 14
# rows of obs (per iteration, as the batch stands while it runs; column `steps` is the end state)
# O_NEXT: the iteration at whose end running + waiting next changes (-1: not in this run)
O_RUNNING, O_WAITING, O_USED, O_DEMAND, O_TOKENS, O_NEXT = range(6)
OBS_ROWS = 6
# event log rows: (kind, iteration, request, value)
EV_ADMIT, EV_FIRST, EV_DONE, EV_PREEMPT, EV_HANDOFF, EV_TOKENS, EV_GAP = range(7)
# inter-token latency histogram: log-spaced bins, ITL_PER_DECADE a decade from ITL_LO seconds
ITL_LO, ITL_PER_DECADE, ITL_BINS = 1e-5, 40, 320
# entries of res
R_STEPS, R_STOP, R_LOG, R_CONSUMED, R_FRONT, R_CK_LOG, R_CK_CONSUMED, R_CK_FRONT = range(8)
RES_SIZE = 8
# why a run stopped
STOP_HORIZON, STOP_IDLE, STOP_EVENT, STOP_ROOM = range(4)


@njit(cache=True, inline="always")
def _blocks_for(tokens, bs, kv_grows, per_seq):
    return ((tokens + bs - 1) // bs if kv_grows else 0) + per_seq


@njit(cache=True, inline="always")
def _event(log, lp, kind, j, r, v):
    """Append event (kind, iteration, request, value) at log[lp]; the next free row."""
    log[lp, 0], log[lp, 1], log[lp, 2], log[lp, 3] = kind, j, r, v
    return lp + 1


@njit(cache=True, inline="always")
def _observe(obs, j, n, waiting, used, demand, tokens):
    obs[O_RUNNING, j], obs[O_WAITING, j], obs[O_USED, j], obs[O_DEMAND, j], obs[O_TOKENS, j] = \
        n, waiting, used, demand, tokens


@njit(cache=True, inline="always")
def _token(S, i, t_ns, start_ns, log, lp, steps):
    """Sequence i gets a token at t_ns, the end of an iteration that began at start_ns: its
    gap since its last token goes into its longest gap, and is logged alone (EV_GAP) unless
    it is that one iteration. Returns lp and 1 for a token one iteration apart, else 0."""
    last = S[LAST, i]
    S[LAST, i] = t_ns
    if last == 0:              # its first token
        return lp, 0
    S[GAP, i] = max(S[GAP, i], t_ns - last)
    if last == start_ns:       # counted in bulk by the iteration's EV_TOKENS
        return lp, 1
    return _event(log, lp, EV_GAP, steps, S[REQ, i], t_ns - last), 0


@njit(cache=True, inline="always")
def _preempt_last(S, n, F, nf, log, lp, steps, prompt, cached, bs, kv_grows, per_seq):
    """Preempt running sequence n-1 onto the stack F. Returns its freed blocks, its waiting
    demand, nf and lp."""
    r = S[REQ, n - 1]
    F[0, nf] = r
    F[1, nf] = S[GEN, n - 1]
    F[2, nf] = S[LAST, n - 1]
    F[3, nf] = S[GAP, n - 1]
    lp = _event(log, lp, EV_PREEMPT, steps, r, S[GEN, n - 1])
    need = _blocks_for(prompt[r] + S[GEN, n - 1], bs, kv_grows, per_seq) - cached[r] // bs
    return S[BLK, n - 1], need, nf + 1, lp


@njit(cache=True, inline="always")
def _continue_prefills(S, lo, hi, prio, below, pf_i, pf_len, npf, pb):
    """Running sequences lo..hi-1 with prompt left to prefill take chunks of the prefill
    budget pb in order, until it is spent or a sequence of a class below `below` comes.
    Returns npf, pb and where it stopped (hi when it went through, or the budget ran out)."""
    for i in range(lo, hi):
        if pb <= 0:
            return npf, pb, hi
        if prio[S[REQ, i]] < below:
            return npf, pb, i
        left = S[TGT, i] - S[KV, i]
        if left > 0:
            c = left if left < pb else pb
            pf_i[npf] = i
            pf_len[npf] = c
            npf += 1
            pb -= c
    return npf, pb, hi


@njit(cache=True)
def _prefill_ready(S, n, F, nf, q_req, q_time, q_next, q_tail, t, prompt, generated, kv_ready, cached, max_seqs,
                   free, evict, bs, kv_grows, per_seq):
    """Whether a prefill can run now: a running prompt has chunks left, or the next waiting
    request (the preempted stack's top, else the queue's head) fits a slot and the KV cache.
    An engine that does not mix prefill and decode runs a prefill iteration then, and
    otherwise a decode iteration."""
    for i in range(n):
        if S[KV, i] < S[TGT, i]:
            return True
    if n >= max_seqs:
        return False
    if nf > 0:
        r = F[0, nf - 1]
        need = _blocks_for(prompt[r] + F[1, nf - 1], bs, kv_grows, per_seq) - cached[r] // bs
        return need <= free + evict
    if q_next < q_tail and q_time[q_next] <= t:
        r = q_req[q_next]
        if kv_ready[r]:
            return False
        need = _blocks_for(prompt[r] + generated[r], bs, kv_grows, per_seq) - cached[r] // bs
        return need <= free + evict
    return False


@njit(cache=True)
def _sort_by_priority(S, n, prio, dec, nd, pf_i, npf):
    """Stable-sort running sequences by class, highest first, and renumber dec and pf_i."""
    order = np.arange(n)
    for a in range(1, n):
        x = order[a]
        b = a
        while b > 0 and prio[S[REQ, order[b - 1]]] < prio[S[REQ, x]]:
            order[b] = order[b - 1]
            b -= 1
        order[b] = x
    inv = np.empty(n, np.int64)
    for k in range(n):
        inv[order[k]] = k
    S[:, :n] = S[:, order]
    for d in range(nd):
        dec[d] = inv[dec[d]]
    for q in range(npf):
        pf_i[q] = inv[pf_i[q]]


@njit(cache=True)
def engine_run(t0, S0, st0, S, st, F, q_req, q_time, q_head, q_tail, prompt, output, generated, kv_ready,
               cfg, p, max_steps, ckpt, S_ck, st_ck, F_ck, ends, obs, log, res, late_at,
               F0, nf0, prio, cached, keep, first_token):
    """Run up to `max_steps` iterations from time t0; see the module docstring.

    S0, st0   the state at t0 (not changed)
    S, st     out: the state after the last iteration
    F         out: the preempted-sequence stack (req, gen, last, gap) at the end, bottom first
    F0, nf0   the stack at t0 (the replica's preempted sequences)
    prio      each request's class (C_PRIORITY); cached, keep: prefix-cache tokens and blocks
    first_token   when each request's first token came (a prefilled request's last token)
    S_ck, st_ck, F_ck   out: the same after `ckpt` iterations (when 0 < ckpt <= steps)
    ends[s]   out: end time of iteration s
    obs[:, s] out: running, waiting, KV blocks used, waiting demand, tokens of iteration s
    log       out: events (kind, iteration, request, value)
    res       out: steps, stop reason, log length, queue entries consumed, stack depth,
              and the last three at the checkpoint
    late_at   the iteration from which st[LATE] blocks (freed while an iteration ran) are free
    """
    bs, max_seqs, max_tokens = cfg[C_BS], cfg[C_MAX_SEQS], cfg[C_MAX_TOKENS]
    chunk_limit, chunked, kv_grows, per_seq = cfg[C_CHUNK], cfg[C_CHUNKED], cfg[C_KV_GROWS], cfg[C_PER_SEQ]
    total, stop_done, prefill_role = cfg[C_TOTAL], cfg[C_STOP_DONE], cfg[C_PREFILL_ROLE]
    use_prio, preempt_lower, stop_evict = cfg[C_PRIORITY], cfg[C_PREEMPT_LOWER], cfg[C_STOP_EVICT]
    mixed = cfg[C_MIXED]
    cap = S.shape[1]
    log_cap = log.shape[0]
    f_cap = F.shape[1]
    n, free, demand, late, evict = st0[N], st0[FREE], st0[DEMAND], st0[LATE], st0[EVICT]
    S[:, :n] = S0[:, :n]
    F[:, :nf0] = F0[:, :nf0]
    dec = np.empty(cap, np.int64)
    pf_i = np.empty(cap, np.int64)
    pf_len = np.empty(cap, np.int64)
    pf_off = np.empty(cap, np.int64)
    pf_tgt = np.empty(cap, np.int64)
    dec_ctx = np.empty(cap, np.int64)
    flag = np.zeros(cap, np.int64)
    consumed = 0
    nf = nf0
    lp = 0
    steps = 0
    stop = STOP_HORIZON
    t = t0
    res[R_CK_LOG] = 0
    res[R_CK_CONSUMED] = 0
    res[R_CK_FRONT] = 0
    decode_turn = False
    while True:
        if steps >= max_steps:
            break
        if lp + 5 * cap + 5 > log_cap or nf + cap > f_cap:
            stop = STOP_ROOM
            break
        if steps == late_at:
            free += late
            late = 0
        # -- a waiting head of a higher class than the last running sequence makes room
        if preempt_lower and n > 0 and q_head + consumed < q_tail and q_time[q_head + consumed] <= t:
            r = q_req[q_head + consumed]
            h = prio[r]
            if nf == 0 or prio[F[0, nf - 1]] < h:
                if kv_ready[r]:
                    want = _blocks_for(prompt[r], bs, kv_grows, per_seq) + 1
                else:
                    want = _blocks_for(prompt[r] + generated[r], bs, kv_grows, per_seq) - cached[r] // bs
                while n > 0 and prio[S[REQ, n - 1]] < h and (n >= max_seqs or want > free + evict):
                    blk, back, nf, lp = _preempt_last(S, n, F, nf, log, lp, steps, prompt, cached, bs, kv_grows,
                                                      per_seq)
                    free += blk
                    demand += back
                    n -= 1
        # -- decoding sequences each take one token; a new block comes from the free pool,
        #    then from the prefix cache, or by preempting the latest-admitted sequence
        #    (of the lowest class)
        evict_before = evict
        # an engine that does not mix runs all prefill (when a prefill can run) or all decode
        prefill_turn = mixed == 0 and not decode_turn and _prefill_ready(S, n, F, nf, q_req, q_time, q_head + consumed, q_tail, t,
                                                     prompt, generated, kv_ready, cached, max_seqs, free, evict, bs,
                                                     kv_grows, per_seq)
        nd = 0
        i = 0
        while i < n and not prefill_turn:
            if S[KV, i] >= S[TGT, i]:
                need = 1 if (kv_grows and S[KV, i] % bs == 0) else 0
                if need > free and evict > 0:
                    evict -= 1
                    free += 1
                gave_up = False
                while need > free:
                    v = n - 1
                    blk, back, nf, lp = _preempt_last(S, n, F, nf, log, lp, steps, prompt, cached, bs, kv_grows,
                                                      per_seq)
                    free += blk
                    demand += back
                    n -= 1
                    if v == i:
                        gave_up = True
                        break
                if not gave_up:
                    free -= need
                    S[BLK, i] += need
                    dec[nd] = i
                    nd += 1
            i += 1
        # -- partially prefilled prompts continue, in admission order (with classes, those of
        #    a class below the waiting head's wait until the head has had its share)
        budget = max_tokens - nd
        pb = budget if budget < chunk_limit else chunk_limit
        if mixed == 0 and not prefill_turn:
            pb = 0
        npf = 0
        waiting_class = -(1 << 62)
        if use_prio:
            if nf > 0:
                waiting_class = prio[F[0, nf - 1]]
            if q_head + consumed < q_tail and q_time[q_head + consumed] <= t and prio[q_req[q_head + consumed]] > waiting_class:
                waiting_class = prio[q_req[q_head + consumed]]
        n_before = n
        npf, pb, resume = _continue_prefills(S, 0, n, prio, waiting_class, pf_i, pf_len, npf, pb)
        # -- waiting requests join in queue order while slots, KV and the token budget allow
        admitted = 0
        while n < max_seqs:
            head = q_head + consumed < q_tail and q_time[q_head + consumed] <= t
            if nf > 0 and not (use_prio and head and prio[q_req[q_head + consumed]] > prio[F[0, nf - 1]]):
                r = F[0, nf - 1]
                g = F[1, nf - 1]
                last, gap = F[2, nf - 1], F[3, nf - 1]
                ready = False
                from_stack = True
            elif head:
                r = q_req[q_head + consumed]
                g = generated[r]
                ready = kv_ready[r]
                last = np.int64(first_token[r] * NS) if ready and first_token[r] == first_token[r] else 0
                gap = 0
                from_stack = False
            else:
                break
            if not (pb > 0 or ready):
                break
            if ready:  # its prompt was prefilled elsewhere and the KV cache is here: decode now
                kvp = prompt[r]
                need = _blocks_for(kvp, bs, kv_grows, per_seq) + (1 if (kv_grows and kvp % bs == 0) else 0)
                if nd >= max_tokens:
                    break
                tgt, kv0 = kvp, kvp
            else:
                tgt = prompt[r] + g
                need = _blocks_for(tgt, bs, kv_grows, per_seq) - cached[r] // bs
                if not chunked and min(tgt - cached[r], max_tokens) > pb:
                    break
                kv0 = cached[r]
            if need > free + evict:
                break
            if need > free:
                evict -= need - free
                free = need
            if from_stack:
                nf -= 1
            else:
                consumed += 1
            free -= need
            demand -= _blocks_for(prompt[r] + g, bs, kv_grows, per_seq) - (0 if ready else cached[r] // bs)
            S[REQ, n], S[TGT, n], S[KV, n], S[BLK, n], S[GEN, n] = r, tgt, kv0, need, g
            S[LAST, n], S[GAP, n] = last, gap
            lp = _event(log, lp, EV_ADMIT, steps, r, 0)
            if ready:
                dec[nd] = n
                nd += 1
            else:
                c = tgt - kv0 if tgt - kv0 < pb else pb
                pf_i[npf] = n
                pf_len[npf] = c
                npf += 1
                pb -= c
            n += 1
            admitted += 1
        # -- the lower classes' prefills that waited for the head take what budget is left
        npf, pb, _ = _continue_prefills(S, resume, n_before, prio, -(1 << 62), pf_i, pf_len, npf, pb)
        if use_prio and admitted and n > 1:
            _sort_by_priority(S, n, prio, dec, nd, pf_i, npf)
        if free < 0 or free + evict > total:
            raise RuntimeError("KV block accounting broken")
        if nd == 0 and npf == 0:
            if prefill_turn:   # the waiting prefill could not start after all: decode instead
                decode_turn = True
                continue
            stop = STOP_IDLE
            break
        decode_turn = False
        # -- how long the iteration takes
        tokens = nd
        for q in range(npf):
            i = pf_i[q]
            pf_off[q] = S[KV, i]
            pf_tgt[q] = S[TGT, i]
            tokens += pf_len[q]
        for d in range(nd):
            dec_ctx[d] = S[KV, dec[d]] + 1
        _observe(obs, steps, n, nf + q_tail - q_head - consumed, total - free - evict, demand, tokens)
        start_ns = np.int64(t * NS)
        t = t + batch_time(pf_len[:npf], pf_off[:npf], pf_tgt[:npf], dec_ctx[:nd], p)
        ends[steps] = t
        t_ns = np.int64(t * NS)
        # -- its results: a token per decoding sequence, prefill progress, first tokens
        event = False
        steady = 0
        for d in range(nd):
            i = dec[d]
            S[KV, i] += 1
            S[GEN, i] += 1
            lp, one = _token(S, i, t_ns, start_ns, log, lp, steps)
            steady += one
            if S[GEN, i] >= output[S[REQ, i]]:
                flag[i] = 1
        for q in range(npf):
            i = pf_i[q]
            S[KV, i] += pf_len[q]
            if S[KV, i] == S[TGT, i]:
                r = S[REQ, i]
                S[GEN, i] += 1
                # after a preemption's recompute this is the token after a stall
                lp, one = _token(S, i, t_ns, start_ns, log, lp, steps)
                steady += one
                lp = _event(log, lp, EV_FIRST, steps, r, 0)
                if S[GEN, i] >= output[r]:
                    flag[i] = 1
                elif prefill_role:
                    flag[i] = 2
        if steady:
            lp = _event(log, lp, EV_TOKENS, steps, steady, 0)
        # the prefix cache learns which entries lost blocks when the plan is committed: whoever
        # reads it (a cache-aware router) sees that at this iteration's end, as when stepping
        if stop_evict and evict < evict_before:
            event = True
        # finished and handed-off sequences leave, reported latest-admitted first
        gone = 0
        for i in range(n - 1, -1, -1):
            if flag[i] == 0:
                continue
            r = S[REQ, i]
            if flag[i] == 1:
                kept = keep[r] if keep[r] < S[BLK, i] else S[BLK, i]
                free += S[BLK, i] - kept
                evict += kept
                lp = _event(log, lp, EV_DONE, steps, r, S[GAP, i])
                if stop_done:
                    event = True
            else:  # its blocks stay held until its KV cache has been sent
                lp = _event(log, lp, EV_HANDOFF, steps, r, S[BLK, i])
                event = True
            gone += 1
        if gone:
            w = 0
            for i in range(n):
                if flag[i] == 0:
                    if w != i:
                        S[:, w] = S[:, i]
                    w += 1
                else:
                    flag[i] = 0
            n = w
        steps += 1
        if steps == ckpt:
            S_ck[:, :n] = S[:, :n]
            if ckpt >= late_at:
                st_ck[N], st_ck[FREE], st_ck[DEMAND], st_ck[LATE] = n, free + late, demand, 0
            else:
                st_ck[N], st_ck[FREE], st_ck[DEMAND], st_ck[LATE] = n, free, demand, late
            st_ck[EVICT] = evict
            F_ck[:, :nf] = F[:, :nf]
            res[R_CK_LOG], res[R_CK_CONSUMED], res[R_CK_FRONT] = lp, consumed, nf
        if event:
            stop = STOP_EVENT
            break
    if steps >= late_at:
        free += late
        late = 0
    _observe(obs, steps, n, nf + q_tail - q_head - consumed, total - free - evict, demand, 0)
    obs[O_NEXT, steps] = -1
    for j in range(steps - 1, -1, -1):
        if obs[O_RUNNING, j + 1] + obs[O_WAITING, j + 1] != obs[O_RUNNING, j] + obs[O_WAITING, j]:
            obs[O_NEXT, j] = j
        else:
            obs[O_NEXT, j] = obs[O_NEXT, j + 1]
    st[N], st[FREE], st[DEMAND], st[LATE], st[EVICT] = n, free, demand, late, evict
    res[R_STEPS], res[R_STOP], res[R_LOG], res[R_CONSUMED], res[R_FRONT] = steps, stop, lp, consumed, nf
    return steps


@njit(cache=True, inline="always")
def itl_bin(gap):
    """The histogram bin of an inter-token gap (s); the first and last bins take what falls outside."""
    if gap <= ITL_LO:
        return 0
    b = int(np.log10(gap / ITL_LO) * ITL_PER_DECADE)
    return b if b < ITL_BINS else ITL_BINS - 1


def itl_bins(gaps: np.ndarray) -> np.ndarray:
    """`itl_bin` of many gaps at once."""
    b = np.floor(np.log10(np.maximum(gaps, ITL_LO) / ITL_LO) * ITL_PER_DECADE)
    return np.clip(b, 0, ITL_BINS - 1).astype(np.int64)


def itl_edges() -> np.ndarray:
    """The histogram's bin edges (s)."""
    return ITL_LO * 10.0 ** (np.arange(ITL_BINS + 1) / ITL_PER_DECADE)


@njit(cache=True)
def apply_log(log, lo, hi, it0, t0, ends, output, admitted, first_token, finished, state, generated,
              preemptions, kv_ready, completed_state, counts, stall, itl, since):
    """Write events log[lo:hi] into the request table. Iteration j of the run (numbered from
    it0) started at t0 (j == it0) or ends[j - 1] and ended at ends[j]. Returns how many
    sequences left (finished or handed off); counts[0] = preemptions. Tokens that come at or
    after `since` count in the inter-token histogram `itl`; a completion sets its request's
    longest stall."""
    pre = 0
    leaving = 0
    for e in range(lo, hi):
        kind, j, r, v = log[e, 0], log[e, 1], log[e, 2], log[e, 3]
        if kind == EV_ADMIT:
            if np.isnan(admitted[r]):
                admitted[r] = t0 if j == it0 else ends[j - 1]
        elif kind == EV_FIRST:
            if np.isnan(first_token[r]):
                first_token[r] = ends[j]
        elif kind == EV_DONE:
            state[r] = completed_state
            finished[r] = ends[j]
            generated[r] = output[r]
            stall[r] = v / NS
            leaving += 1
        elif kind == EV_TOKENS:   # r tokens one iteration after their last
            if ends[j] >= since:
                start = t0 if j == it0 else ends[j - 1]
                itl[itl_bin((np.int64(ends[j] * NS) - np.int64(start * NS)) / NS)] += r
        elif kind == EV_GAP:
            if ends[j] >= since:
                itl[itl_bin(v / NS)] += 1
        elif kind == EV_PREEMPT:
            preemptions[r] += 1
            generated[r] = v
            kv_ready[r] = False
            pre += 1
        else:  # EV_HANDOFF
            generated[r] = 1
            leaving += 1
    counts[0] = pre
    return leaving
