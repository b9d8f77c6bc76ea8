"""A run's state in and out: what `scheduler.engine_run` does once a call.

It copies the start state into the arrays it will end in (`begin`), makes its working
lists (`scratch`), writes its counters back (`store`), copies the state after its
checkpoint iteration aside (`copy_checkpoint`), and links each iteration of its record to
the next change in who is there (`link_changes`). Each is inlined into the compiled
scheduler and runs once a call.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .engine_state import B_NEXT, B_RUNNING, B_WAITING, DEMAND, EVICT, FREE, LATE, PREEMPTED, RATIO, RUNNING
from .output_estimate import RATIO_INIT


@njit(cache=True, inline="always")
def begin(start, end):
    """The start state's running sequences and preempted stack copied into `end`'s arrays;
    returns its counters n, free, demand, late, evict, nf and ratio (0: a fresh replica's)."""
    seqs0, counters0, stack0 = start
    seqs, _, stack = end
    n, nf = counters0[RUNNING], counters0[PREEMPTED]
    seqs[:, :n] = seqs0[:, :n]
    stack[:, :nf] = stack0[:, :nf]
    ratio = counters0[RATIO] if counters0[RATIO] > 0 else np.int64(RATIO_INIT)
    return n, counters0[FREE], counters0[DEMAND], counters0[LATE], counters0[EVICT], nf, ratio


@njit(cache=True, inline="always")
def scratch(cap):
    """An iteration's working lists, for up to `cap` sequences: dec (those that decode), pf_i,
    pf_len, pf_off, pf_tgt (those that prefill: chunk, cached tokens, target), dec_ctx (the
    decodes' contexts), flag (1: finished, 2: to hand off)."""
    return (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64),
            np.empty(cap, np.int64), np.empty(cap, np.int64), np.zeros(cap, np.int64))


@njit(cache=True, inline="always")
def store(counters, numbers):
    """Write n, free, demand, late, evict, nf and ratio into an EngineState's counters."""
    (counters[RUNNING], counters[FREE], counters[DEMAND], counters[LATE], counters[EVICT], counters[PREEMPTED],
     counters[RATIO]) = numbers


@njit(cache=True, inline="always")
def copy_checkpoint(checkpoint, seqs, stack, numbers, late_freed):
    """The state after this iteration, copied aside: `numbers` are n, free, demand, late,
    evict, nf, ratio; blocks freed late are free by then when `late_freed`."""
    seqs_ck, counters_ck, stack_ck = checkpoint
    n, free, demand, late, evict, nf, ratio = numbers
    seqs_ck[:, :n] = seqs[:, :n]
    stack_ck[:, :nf] = stack[:, :nf]
    if late_freed:
        free, late = free + late, 0
    store(counters_ck, (n, free, demand, late, evict, nf, ratio))


@njit(cache=True, inline="always")
def link_changes(batch, steps):
    """For each iteration, the one at whose end the number of running and waiting requests
    next changes (B_NEXT; -1: not in this run)."""
    batch[B_NEXT, steps] = -1
    for j in range(steps - 1, -1, -1):
        if batch[B_RUNNING, j + 1] + batch[B_WAITING, j + 1] != batch[B_RUNNING, j] + batch[B_WAITING, j]:
            batch[B_NEXT, j] = j
        else:
            batch[B_NEXT, j] = batch[B_NEXT, j + 1]
