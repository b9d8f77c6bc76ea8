"""Who runs in an iteration: preemption, prefill chunks and admission, compiled.

The parts of `scheduler.engine_run` that decide which sequences an iteration holds: a
waiting head of a higher class making room (`make_room_for_head`), the latest admitted
making room for the others' tokens (`preempt_last`), running prompts taking chunks of the
prefill budget (`continue_prefills`), who joins next (`next_waiting`: the preempted stack's
top, else the queue's arrived head) and whether it fits (`fits`), and the order of classes
(`sort_by_priority`). Like the scheduler's other phases they take the run's counters as
plain numbers and return them, and are inlined into it.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .engine_state import (
    BLK,
    BLOCK_SIZE,
    CACHED,
    ESTIMATED,
    EV_PREEMPT,
    FIRST_TOKEN,
    GAP,
    GEN,
    GENERATED,
    KV,
    KV_GROWS,
    KV_READY,
    LAST,
    MAX_SEQS,
    NS,
    OUTPUT,
    PRIORITY,
    PROMPT,
    REQ,
    RESERVE,
    S_GAP,
    S_GEN,
    S_LAST,
    S_REQ,
    TGT,
    TO_COMPLETION,
    WATERMARK,
    blocks_for,
    log_event,
)
from .output_estimate import held_back, output_blocks


@njit(cache=True, inline="always")
def arrived_head(queue, consumed, t):
    """The request at the queue's head (past the `consumed` entries) if it had arrived by
    time t, else -1."""
    q_req, q_time, q_head, q_tail = queue
    k = q_head + consumed
    return q_req[k] if k < q_tail and q_time[k] <= t else np.int64(-1)


@njit(cache=True, inline="always")
def with_reservation(need, r, present, requests, rules):
    """`need` blocks, or with RESERVE at least those of request r's whole output less the
    `present` blocks it finds in the cache: the KV cache holds prompt + output - 1 tokens when
    its last token is computed, so a request that joins holding them never needs another."""
    if rules[RESERVE] == TO_COMPLETION:
        whole = blocks_for(requests[PROMPT][r] + requests[OUTPUT][r] - 1, rules) - present
        return whole if whole > need else need
    return need


@njit(cache=True, inline="always")
def ready_blocks(r, requests, rules):
    """KV blocks request r takes when it joins with its prompt's KV cache already here (sent
    by a prefill replica): its prompt's, and one more when its next token starts a block."""
    tgt, bs = requests[PROMPT][r], rules[BLOCK_SIZE]
    need = blocks_for(tgt, rules) + (1 if (rules[KV_GROWS] and tgt % bs == 0) else 0)
    return with_reservation(need, r, 0, requests, rules)


@njit(cache=True, inline="always")
def blocks_to_join(r, g, requests, rules):
    """KV blocks request r takes when it joins to prefill, with g tokens generated before a
    preemption and `cached` tokens of its prompt already in the prefix cache."""
    present = requests[CACHED][r] // rules[BLOCK_SIZE]
    return with_reservation(blocks_for(requests[PROMPT][r] + g, rules) - present, r, present, requests, rules)


@njit(cache=True, inline="always")
def preempt_last(seqs, n, free, demand, stack, nf, events, lp, steps, requests, rules):
    """The latest-admitted running sequence goes onto the preempted stack: its blocks are
    freed, and what it will need again joins the waiting demand. Returns n, free, demand,
    nf, lp."""
    prompt, cached, bs = requests[PROMPT], requests[CACHED], rules[BLOCK_SIZE]
    i = n - 1
    r, gen = seqs[REQ, i], seqs[GEN, i]
    stack[S_REQ, nf], stack[S_GEN, nf], stack[S_LAST, nf], stack[S_GAP, nf] = r, gen, seqs[LAST, i], seqs[GAP, i]
    lp = log_event(events, lp, EV_PREEMPT, steps, r, gen)
    free += seqs[BLK, i]
    demand += blocks_for(prompt[r] + gen, rules) - cached[r] // bs
    return i, free, demand, nf + 1, lp


@njit(cache=True, inline="always")
def make_room_for_head(r, seqs, n, free, demand, evict, stack, nf, events, lp, steps, ratio, requests, rules):
    """Waiting head r, if of a higher class than the stack's top, preempts running sequences
    of lower classes until it has a slot and KV space: the blocks it takes when it joins
    (beside the share held back for the others' output, with ESTIMATED at `ratio`).
    Returns n, free, demand, nf, lp."""
    generated, kv_ready, prio = requests[GENERATED], requests[KV_READY], requests[PRIORITY]
    h = prio[r]
    if nf > 0 and prio[stack[S_REQ, nf - 1]] >= h:
        return n, free, demand, nf, lp
    ready, g = kv_ready[r], generated[r]
    want = ready_blocks(r, requests, rules) if ready else blocks_to_join(r, g, requests, rules)
    while n > 0 and prio[seqs[REQ, n - 1]] < h:
        room = free + evict
        if n < rules[MAX_SEQS] and (want <= room if ready else
                                    fits(want, r, g, room - held_back(seqs, n, ratio, requests, rules), requests,
                                         rules)):
            break
        n, free, demand, nf, lp = preempt_last(seqs, n, free, demand, stack, nf, events, lp, steps, requests, rules)
    return n, free, demand, nf, lp


@njit(cache=True, inline="always")
def fits(need, r, g, room, requests, rules):
    """Whether request r, g tokens generated, joins taking `need` blocks of `room` and leaving
    the WATERMARK free (vLLM V0's `can_allocate`): with ESTIMATED its whole remaining output
    must fit as well, strictly (SGLang's admission; `room` is then what the estimate leaves,
    `output_estimate.py`)."""
    if rules[RESERVE] == ESTIMATED:
        return need + output_blocks(r, g, requests, rules) + rules[WATERMARK] < room
    return need + rules[WATERMARK] <= room


@njit(cache=True, inline="always")
def prefill_ready(seqs, n, stack, nf, head, room, requests, rules):
    """Whether a prefill can run now: a running prompt has chunks left, or the next waiting
    request (the preempted stack's top, else the queue's arrived head; -1: none) fits a slot
    and `room` KV blocks. An engine that does not mix prefill and decode runs a prefill
    iteration then, and otherwise a decode iteration."""
    generated, kv_ready = requests[GENERATED], requests[KV_READY]
    for i in range(n):
        if seqs[KV, i] < seqs[TGT, i]:
            return True
    if n >= rules[MAX_SEQS]:
        return False
    if nf > 0:
        r, g = stack[S_REQ, nf - 1], stack[S_GEN, nf - 1]
        return fits(blocks_to_join(r, g, requests, rules), r, g, room, requests, rules)
    if head >= 0 and not kv_ready[head]:
        g = generated[head]
        return fits(blocks_to_join(head, g, requests, rules), head, g, room, requests, rules)
    return False


@njit(cache=True, inline="always")
def continue_prefills(seqs, lo, hi, prio, below, pf_i, pf_len, npf, pb):
    """Running sequences lo..hi-1 with prompt left to prefill take chunks of the prefill
    budget pb in order, until it is spent or a sequence of a class below `below` comes.
    Returns npf, pb and where it stopped (hi when it went through, or the budget ran out)."""
    for i in range(lo, hi):
        if pb <= 0:
            return npf, pb, hi
        if prio[seqs[REQ, i]] < below:
            return npf, pb, i
        left = seqs[TGT, i] - seqs[KV, i]
        if left > 0:
            chunk = left if left < pb else pb
            pf_i[npf] = i
            pf_len[npf] = chunk
            npf += 1
            pb -= chunk
    return npf, pb, hi


@njit(cache=True, inline="always")
def next_waiting(head, stack, nf, requests, classes):
    """Who joins next: the preempted stack's top, unless (with classes) the queue's arrived
    head (-1: none) is of a higher class; else that head. Returns its request (-1:
    none), tokens generated, whether its KV cache is here already, when its last token came,
    its longest gap, and whether it comes off the stack."""
    generated, kv_ready, prio, first_token = (requests[GENERATED], requests[KV_READY], requests[PRIORITY],
                                              requests[FIRST_TOKEN])
    if nf > 0 and not (classes and head >= 0 and prio[head] > prio[stack[S_REQ, nf - 1]]):
        top = nf - 1
        return stack[S_REQ, top], stack[S_GEN, top], False, stack[S_LAST, top], stack[S_GAP, top], True
    if head >= 0:
        ready = kv_ready[head]
        last = np.int64(first_token[head] * NS) if ready and first_token[head] == first_token[head] else np.int64(0)
        return head, generated[head], ready, last, np.int64(0), False
    return np.int64(-1), np.int64(0), False, np.int64(0), np.int64(0), False


@njit(cache=True)
def sort_by_priority(seqs, n, prio, dec, nd, pf_i, npf):
    """Stable-sort running sequences by class, highest first, and renumber dec and pf_i."""
    order = np.arange(n)
    for a in range(1, n):
        x = order[a]
        b = a
        while b > 0 and prio[seqs[REQ, order[b - 1]]] < prio[seqs[REQ, x]]:
            order[b] = order[b - 1]
            b -= 1
        order[b] = x
    inv = np.empty(n, np.int64)
    for k in range(n):
        inv[order[k]] = k
    seqs[:, :n] = seqs[:, order]
    for d in range(nd):
        dec[d] = inv[dec[d]]
    for q in range(npf):
        pf_i[q] = inv[pf_i[q]]
