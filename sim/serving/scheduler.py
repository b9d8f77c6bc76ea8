"""The continuous-batching rules, compiled: many iterations of one replica in one call.

`engine_run` plays a replica forward iteration by iteration from a given state, with the
rules of a vLLM-style scheduler (see `replica.py`), and stops after `max_steps` iterations,
when nothing is schedulable, after an iteration whose results someone must act on at their
time (a completion when the rules say so, a prefill hand-off), or when its buffers run
short. It touches no simulation state: what happened goes to an event log (`event_log.py`
writes it into the request table later, when simulated time has caught up), and the state
it ends in goes to `end`. A state after `ckpt` iterations is copied aside, so a replica
interrupted mid-plan can keep the iterations that have ended and plan again from there in
one call. The data it works on is laid out and named in `engine_state.py`.

One iteration, in order:
  1. with PREEMPT_LOWER, a waiting head of a higher class than the last running sequence
     preempts lower classes for a slot and KV space (`admission.py`, as are step 3's helpers);
  2. decoding sequences each take one token's KV (with RESERVE = TO_COMPLETION they joined
     holding it all; with ESTIMATED the iteration moves the share of their remaining output
     held back from admissions, `output_estimate.py`);
  3. partially prefilled prompts continue (`continue_prefills`), then waiting requests
     join while slots, KV (less that share) and the token budget allow (`next_waiting` says
     who is next, `fits` whether it fits);
  4. the iteration takes `batch_time` of its prefill chunks and decode contexts;
  5. its results: a token per decoding sequence, prefill progress, first tokens (`_advance`);
  6. finished and handed-off sequences leave (`_depart`).
An engine that does not mix prefill and decode (MIXED = 0) runs an iteration of prefill
when a prefill can run, else one of decode.

Inter-token gaps: a sequence decoding in consecutive iterations gets its tokens one
iteration apart, so each iteration logs one EV_TOKENS event (how many such tokens) and the
event log counts them at the iteration's duration; a token after any other gap (the first
decode token after a KV hand-off, the first after a preemption or an idle spell) is logged
alone with its gap (EV_GAP). A completion carries the sequence's longest gap.

Priorities (CLASSES): the replica keeps its queue in priority order (highest first, arrival
order within a class), running sequences are kept in the same order so that the sequence
preempted for KV space is the lowest class's latest admitted, and a waiting head of a
higher class goes before preempted sequences of a lower one, and before the prefill chunks
of lower classes' prompts (which keep their KV and take what budget is left: a long
low-class prompt in chunks would otherwise hold the prefill budget for seconds). With
PREEMPT_LOWER, a head that finds no slot or KV space preempts running sequences of lower
classes to make room.

Prefix caching (the engine's half; `prefix_cache.py` decides what is cached): `cached[r]`
tokens of request r's prompt are already in the KV cache, so its prefill starts after them
and its blocks exclude them; when it completes, `keep_blocks[r]` of its blocks stay cached
(evictable) instead of freeing. With STOP_EVICT a run stops after an iteration that took
blocks back from the cache, so that the cache learns which entries lost them at that
iteration's end.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..timing.kernels import batch_time
from . import run_state
from .admission import (
    arrived_head,
    blocks_to_join,
    continue_prefills,
    fits,
    make_room_for_head,
    next_waiting,
    preempt_last,
    prefill_ready,
    ready_blocks,
    sort_by_priority,
)
from .engine_state import (
    B_DEMAND,
    B_RUNNING,
    B_TOKENS,
    B_USED,
    B_WAITING,
    BLK,
    CK_CONSUMED,
    CK_LOGGED,
    CONSUMED,
    ESTIMATED,
    EV_ADMIT,
    EV_DONE,
    EV_FIRST,
    EV_GAP,
    EV_HANDOFF,
    EV_TOKENS,
    EVENT,
    GAP,
    GEN,
    HORIZON,
    IDLE,
    KV,
    LAST,
    LOGGED,
    NS,
    REQ,
    ROOM,
    S_REQ,
    STEPS,
    STOPPED,
    TGT,
    TO_COMPLETION,
    blocks_for,
    log_event,
)
from .output_estimate import RATIO_INIT, held_back, next_ratio, output_blocks

LOWEST_CLASS = -(1 << 62)


@njit(cache=True)
def engine_run(t0, start, end, checkpoint, queue, requests, rules, params, max_steps, ckpt, late_at, record):
    """Run up to `max_steps` iterations from time t0 (see the module docstring, and
    `engine_state.py` for what each bundle holds). Returns the iterations run.

    start       the EngineState arrays at t0 (not changed)
    end         out: the EngineState after the last iteration
    checkpoint  out: the EngineState after `ckpt` iterations (when 0 < ckpt <= steps run)
    queue       the waiting queue; an entry is admissible from the first iteration that
                starts at or after it joined
    requests    the request table's columns the rules read
    rules       engine_state.rules()
    params      the replica's timing (`timing.kernels.batch_time`)
    late_at     the iteration from which counters[LATE] blocks (freed while an iteration
                ran) are free
    record      out: ends, batch, events, outcome

    One function on purpose: its counters (n running, free blocks, ...) live in locals,
    which the compiler keeps in registers. Kept in an array and shared with helper
    functions, the same rules ran 35 % slower (measured on bench-1m's fleet); the helpers
    here and in `admission.py` take and return them as plain numbers and are inlined.
    """
    seqs, counters, stack = end
    q_head, q_tail = queue[2], queue[3]
    prompt, output, generated, kv_ready, prio, cached, keep, first_token = requests
    ends, batch, events, outcome = record
    (bs, max_seqs, max_tokens, chunk_limit, chunked, kv_grows, per_seq, total, stop_done, prefill_only, classes,
     preempt_lower, stop_evict, mixed, reserve, _) = rules
    n, free, demand, late, evict, nf, ratio = run_state.begin(start, end)
    cap = seqs.shape[1]
    dec, pf_i, pf_len, pf_off, pf_tgt, dec_ctx, flag = run_state.scratch(cap)
    consumed = lp = steps = 0           # queue entries taken, events logged, iterations run
    stop = HORIZON
    t = t0
    outcome[:] = 0
    decode_turn = False
    while steps < max_steps:
        if lp + 5 * cap + 5 > events.shape[0] or nf + cap > stack.shape[1]:
            stop = ROOM
            break
        if steps == late_at:
            free += late
            late = 0
        head = arrived_head(queue, consumed, t)
        if n == 0:   # an empty engine starts its estimate afresh (SGLang's, whenever it idles)
            ratio = RATIO_INIT
        if preempt_lower and n > 0 and head >= 0:
            n, free, demand, nf, lp = make_room_for_head(head, seqs, n, free, demand, evict, stack, nf, events, lp,
                                                          steps, ratio, requests, rules)
        evict_before = evict
        held = held_back(seqs, n, ratio, requests, rules)
        # an engine that does not mix runs all prefill (when a prefill can run) or all decode
        prefill_turn = mixed == 0 and not decode_turn and prefill_ready(seqs, n, stack, nf, head, free + evict - held,
                                                                         requests, rules)
        # -- decoding sequences each take one token; a new block comes from the free pool, then
        #    from the prefix cache, or by preempting the latest-admitted sequence (of the lowest
        #    class); one that joined with its whole output reserved already holds it. With
        #    ESTIMATED a decode iteration moves the share of their output held back from admissions
        #    (kept here, not in a helper: the loop as an inlined function ran bench-1m 12% slower)
        nd = 0
        running = n
        i = 0
        while i < n and not prefill_turn:
            if seqs[KV, i] >= seqs[TGT, i]:
                need = 1 if (kv_grows and reserve != TO_COMPLETION and seqs[KV, i] % bs == 0) else 0
                if need > free and evict > 0:
                    evict -= 1
                    free += 1
                gave_up = False
                while need > free:
                    victim = n - 1
                    n, free, demand, nf, lp = preempt_last(seqs, n, free, demand, stack, nf, events, lp, steps,
                                                            requests, rules)
                    if victim == i:
                        gave_up = True
                        break
                if not gave_up:
                    free -= need
                    seqs[BLK, i] += need
                    dec[nd] = i
                    nd += 1
            i += 1
        if reserve == ESTIMATED and not prefill_turn and (nd > 0 or n < running):
            ratio = next_ratio(seqs, n, ratio, n < running, requests)
        # -- partially prefilled prompts continue, in admission order (with classes, those of
        #    a class below the waiting head's wait until the head has had its share)
        pb = min(max_tokens - nd, chunk_limit)
        if mixed == 0 and not prefill_turn:
            pb = 0
        waiting_class = LOWEST_CLASS
        if classes:
            if nf > 0:
                waiting_class = prio[stack[S_REQ, nf - 1]]
            if head >= 0 and prio[head] > waiting_class:
                waiting_class = prio[head]
        n_before = n
        npf, pb, resume = continue_prefills(seqs, 0, n, prio, waiting_class, pf_i, pf_len, 0, pb)
        # -- waiting requests join in order while slots, KV and the token budget allow
        admitted = 0
        while n < max_seqs:
            r, g, ready, last, gap, from_stack = next_waiting(arrived_head(queue, consumed, t), stack, nf, requests,
                                                               classes)
            if r < 0 or not (pb > 0 or ready):
                break
            if ready:  # its prompt was prefilled elsewhere and the KV cache is here: decode now
                tgt = kv0 = prompt[r]
                need = ready_blocks(r, requests, rules)
                if nd >= max_tokens:
                    break
            else:
                tgt, kv0 = prompt[r] + g, cached[r]
                need = blocks_to_join(r, g, requests, rules)
                if not chunked and min(tgt - kv0, max_tokens) > pb:
                    break
            if need > free + evict or not (ready or fits(need, r, g, free + evict - held, requests, rules)):
                break
            if reserve == ESTIMATED and not ready:
                held += output_blocks(r, g, requests, rules)
            if need > free:
                evict -= need - free
                free = need
            if from_stack:
                nf -= 1
            else:
                consumed += 1
            free -= need
            demand -= blocks_for(prompt[r] + g, rules) - (0 if ready else cached[r] // bs)
            seqs[REQ, n], seqs[TGT, n], seqs[KV, n], seqs[BLK, n], seqs[GEN, n] = r, tgt, kv0, need, g
            seqs[LAST, n], seqs[GAP, n] = last, gap
            lp = log_event(events, lp, EV_ADMIT, steps, r, 0)
            if ready:
                dec[nd] = n
                nd += 1
            else:
                chunk = min(tgt - kv0, pb)
                pf_i[npf] = n
                pf_len[npf] = chunk
                npf += 1
                pb -= chunk
            n += 1
            admitted += 1
        # -- the lower classes' prefills that waited for the head take what budget is left
        npf, pb, _ = continue_prefills(seqs, resume, n_before, prio, LOWEST_CLASS, pf_i, pf_len, npf, pb)
        if classes and admitted and n > 1:
            sort_by_priority(seqs, n, prio, dec, nd, pf_i, npf)
        if free < 0 or free + evict > total:
            raise RuntimeError("KV block accounting broken")
        if nd == 0 and npf == 0:
            if prefill_turn:   # the waiting prefill could not start after all: decode instead
                decode_turn = True
                continue
            stop = IDLE
            break
        decode_turn = False
        # -- how long the iteration takes
        tokens = nd
        for q in range(npf):
            pf_off[q] = seqs[KV, pf_i[q]]
            pf_tgt[q] = seqs[TGT, pf_i[q]]
            tokens += pf_len[q]
        for d in range(nd):
            dec_ctx[d] = seqs[KV, dec[d]] + 1
        _observe(batch, steps, n, nf + q_tail - q_head - consumed, total - free - evict, demand, tokens)
        start_ns = np.int64(t * NS)
        t = t + batch_time(pf_len[:npf], pf_off[:npf], pf_tgt[:npf], dec_ctx[:nd], params)
        ends[steps] = t
        lp = _advance(np.int64(t * NS), start_ns, seqs, dec, nd, pf_i, pf_len, npf, flag, events, lp, steps, output,
                      prefill_only)
        # the prefix cache learns which entries lost blocks when the plan is committed: whoever
        # reads it (a cache-aware router) sees that at this iteration's end, as when stepping
        event = stop_evict != 0 and evict < evict_before
        n, free, evict, lp, leaving_event = _depart(seqs, n, free, evict, flag, events, lp, steps, keep, stop_done)
        event = event or leaving_event
        steps += 1
        if steps == ckpt:
            run_state.copy_checkpoint(checkpoint, seqs, stack, (n, free, demand, late, evict, nf, ratio),
                                      ckpt >= late_at)
            outcome[CK_LOGGED], outcome[CK_CONSUMED] = lp, consumed
        if event:
            stop = EVENT
            break
    if steps >= late_at:
        free += late
        late = 0
    _observe(batch, steps, n, nf + q_tail - q_head - consumed, total - free - evict, demand, 0)
    run_state.link_changes(batch, steps)
    run_state.store(counters, (n, free, demand, late, evict, nf, ratio))
    outcome[STEPS], outcome[STOPPED], outcome[LOGGED], outcome[CONSUMED] = steps, stop, lp, consumed
    return steps


# ---- the phases of an iteration: counters in, counters out -----------------------------------
@njit(cache=True, inline="always")
def _observe(batch, j, n, waiting, used, demand, tokens):
    """Column j of the batch record: the batch as it stands."""
    batch[B_RUNNING, j], batch[B_WAITING, j], batch[B_USED, j], batch[B_DEMAND, j], batch[B_TOKENS, j] = \
        n, waiting, used, demand, tokens


@njit(cache=True, inline="always")
def _token(seqs, i, t_ns, start_ns, events, lp, steps):
    """Sequence i gets a token at t_ns, the end of an iteration that began at start_ns: its
    gap since its last token goes into its longest gap, and is logged alone (EV_GAP) unless
    it is that one iteration. Returns lp and 1 for a token one iteration apart, else 0."""
    last = seqs[LAST, i]
    seqs[LAST, i] = t_ns
    if last == 0:              # its first token
        return lp, 0
    seqs[GAP, i] = max(seqs[GAP, i], t_ns - last)
    if last == start_ns:       # counted in bulk by the iteration's EV_TOKENS
        return lp, 1
    return log_event(events, lp, EV_GAP, steps, seqs[REQ, i], t_ns - last), 0


@njit(cache=True, inline="always")
def _advance(t_ns, start_ns, seqs, dec, nd, pf_i, pf_len, npf, flag, events, lp, steps, output, prefill_only):
    """The iteration's results at t_ns: a token per decoding sequence, prefill progress, and
    a first token for each prompt it finished. flag[i] = 1 marks a sequence that has all its
    tokens, 2 one to hand off to a decoding replica. Returns lp."""
    steady = 0
    for d in range(nd):
        i = dec[d]
        seqs[KV, i] += 1
        seqs[GEN, i] += 1
        lp, one = _token(seqs, i, t_ns, start_ns, events, lp, steps)
        steady += one
        if seqs[GEN, i] >= output[seqs[REQ, i]]:
            flag[i] = 1
    for q in range(npf):
        i = pf_i[q]
        seqs[KV, i] += pf_len[q]
        if seqs[KV, i] == seqs[TGT, i]:
            r = seqs[REQ, i]
            seqs[GEN, i] += 1
            # after a preemption's recompute this is the token after a stall
            lp, one = _token(seqs, i, t_ns, start_ns, events, lp, steps)
            steady += one
            lp = log_event(events, lp, EV_FIRST, steps, r, 0)
            if seqs[GEN, i] >= output[r]:
                flag[i] = 1
            elif prefill_only:
                flag[i] = 2
    if steady:
        lp = log_event(events, lp, EV_TOKENS, steps, steady, 0)
    return lp


@njit(cache=True, inline="always")
def _depart(seqs, n, free, evict, flag, events, lp, steps, keep, stop_done):
    """Flagged sequences leave, reported latest-admitted first: a finished one frees its
    blocks (or leaves `keep` of them to the prefix cache), one handed off holds them until
    its KV cache has been sent. Returns n, free, evict, lp and whether anyone must act on
    this at the iteration's end."""
    event = False
    gone = 0
    for i in range(n - 1, -1, -1):
        if flag[i] == 0:
            continue
        r = seqs[REQ, i]
        if flag[i] == 1:
            kept = min(keep[r], seqs[BLK, i])
            free += seqs[BLK, i] - kept
            evict += kept
            lp = log_event(events, lp, EV_DONE, steps, r, seqs[GAP, i])
            if stop_done:
                event = True
        else:
            lp = log_event(events, lp, EV_HANDOFF, steps, r, seqs[BLK, i])
            event = True
        gone += 1
    if gone:
        w = 0
        for i in range(n):
            if flag[i] == 0:
                if w != i:
                    seqs[:, w] = seqs[:, i]
                w += 1
            else:
                flag[i] = 0
        n = w
    return n, free, evict, lp, event
