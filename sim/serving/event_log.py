"""A run's event log written into the request table, and the inter-token histogram's bins.

`scheduler.engine_run` logs what happened to each request, by iteration (`engine_state.py`
names the kinds); `apply_log` writes those events into the request table once simulated
time has reached the iterations they belong to.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .engine_state import EV_ADMIT, EV_DONE, EV_FIRST, EV_GAP, EV_PREEMPT, EV_TOKENS, NS

# inter-token latency histogram: log-spaced bins, ITL_PER_DECADE a decade from ITL_LO seconds
ITL_LO, ITL_PER_DECADE, ITL_BINS = 1e-5, 40, 320


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


def written_columns(table) -> tuple:
    """The request table's columns `apply_log` writes, in its order."""
    return (table.output, table.admitted, table.first_token, table.finished, table.state, table.generated,
            table.preemptions, table.kv_ready, table.longest_stall)


@njit(cache=True)
def apply_log(events, lo, hi, it0, t0, ends, columns, completed_state, itl, since):
    """Write events[lo:hi] into the request table's `columns` (`written_columns`).
    Iteration j of the run (numbered from it0) started at t0 (j == it0) or ends[j - 1] and
    ended at ends[j]. Tokens that come at or after `since` count in the inter-token
    histogram `itl`; a completion sets its request's longest stall. Returns how many
    sequences left (finished or handed off) and how many were preempted."""
    output, admitted, first_token, finished, state, generated, preemptions, kv_ready, stall = columns
    preempted = 0
    leaving = 0
    for e in range(lo, hi):
        kind, j, r, v = events[e, 0], events[e, 1], events[e, 2], events[e, 3]
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
            preempted += 1
        else:  # EV_HANDOFF
            generated[r] = 1
            leaving += 1
    return leaving, preempted
