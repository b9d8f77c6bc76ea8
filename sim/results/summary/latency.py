"""Requests' latencies against their targets, the makespan and whether the run was steady."""
from __future__ import annotations

import numpy as np

from ...core.metrics import COMPLETED, REJECTED, SHED, unserved

STEADY = 0.05    # in flight may grow by at most this share of the window's arrivals


def steady_state(table, w0: float, w1: float) -> dict:
    """Whether the run reached steady state over its window: completions keep up with arrivals
    and the requests in flight do not pile up from its start to its end."""
    def in_flight(t):
        return int(np.sum((table.arrival <= t) & ~(table.finished <= t) & (table.state != REJECTED)
                          & (table.state != SHED)))
    arrived = int(np.sum((table.arrival >= w0) & (table.arrival < w1)))
    completed = int(np.sum((table.state == COMPLETED) & (table.finished >= w0) & (table.finished <= w1)))
    growth = in_flight(w1) - in_flight(w0)
    steady = growth <= STEADY * max(arrived, 1) + 1
    why = "" if steady else (f"{growth:,} more requests in flight at the window's end than at its start "
                             f"({arrived:,} arrived, {completed:,} completed in it)")
    return {"steady": bool(steady), "arrived_in_window": arrived, "completed_in_window": completed,
            "in_flight_growth": growth, "why": why}


def makespan_section(table) -> dict:
    """Throughput as offline benchmarks report it: all completed work over the time from the
    first arrival to the last completion."""
    done = table.state == COMPLETED
    if not done.any():
        return {"seconds": None, "requests_per_s": None, "output_tokens_per_s": None, "total_tokens_per_s": None}
    span = float(table.finished[done].max() - table.arrival.min())
    out = float(table.output[done].sum())
    total = out + float(table.prompt[done].sum())
    rate = (lambda x: x / span) if span > 0 else (lambda x: None)
    return {"seconds": span, "requests_per_s": rate(float(done.sum())), "output_tokens_per_s": rate(out),
            "total_tokens_per_s": rate(total)}


def slo_section(targets: dict, cols: dict, measured, done, finished_in, latency: dict, table, window) -> dict:
    if not targets:
        return {"targets": {}}
    results = {}
    ok = done.copy()  # per request: completed and within every threshold
    ok_finished = finished_in.copy()
    for key, target in targets.items():
        metric, stat = key.rsplit("_", 1)  # e.g. queue_wait_p99 -> queue_wait, p99
        value = latency[metric][stat]
        results[key] = {"target": target, "value": value, "met": value is not None and value <= target}
        v = cols[metric]
        within = ~(v > target)  # NaN (e.g. tpot of a one-token reply) does not miss
        ok &= within
        ok_finished &= within
    attained = float(ok.sum()) / float(measured.sum()) if measured.sum() else None
    tokens = float((table.prompt + table.output)[ok_finished].sum())
    # percentiles describe completed requests: turning requests away does not meet an SLO
    turned_away = int((measured & unserved(table.state)).sum())
    return {
        "targets": targets,
        "results": results,
        "met": all(r["met"] for r in results.values()) and turned_away == 0,
        "turned_away": turned_away,
        "attainment": attained,
        "goodput_requests_per_s": float(ok_finished.sum()) / window,
        "goodput_tokens_per_s": tokens / window,
    }
