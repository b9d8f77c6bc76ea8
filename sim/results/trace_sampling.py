"""Keeping a trace (`trace.py`) within its size: which items reach into the window, every
k-th request under `--trace-requests`, and above `max_events` a stride per big category
(batch stretches, flows, requests) that fits its fair share of the event budget.
"""
from __future__ import annotations

import math

import numpy as np


def _stride(n: int, budget: int, cost=None) -> int:
    """Smallest k such that every k-th of n items (each costing `cost[i]` events, 1 when None)
    fits in `budget` events."""
    if n == 0:
        return 1
    total = n if cost is None else int(cost.sum())
    if total <= budget:
        return 1
    if budget <= 0:
        return n + 1                      # keeps nothing
    k = max(1, math.ceil(total / budget))
    while k <= n:
        kept = (n + k - 1) // k if cost is None else int(cost[::k].sum())
        if kept <= budget:
            return k
        k += 1
    return n + 1


def _fair_shares(budget: int, demands: dict[str, int]) -> dict[str, int]:
    """Split `budget` max-min fairly: a category needing less than an equal share keeps all
    it needs and leaves the rest to the others."""
    out, left = {}, dict(demands)
    while left:
        share = budget // len(left)
        small = {k: d for k, d in left.items() if d <= share}
        if not small:
            out.update({k: share for k in left})
            break
        for k, d in small.items():
            out[k] = d
            budget -= d
            del left[k]
    return out


def _nth(k: int) -> str:
    """2nd, 3rd, 11th, 21st: the ordinal of k."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _overlaps(a: np.ndarray, b: np.ndarray, w0: int, w1: int | None) -> np.ndarray:
    """Items [a, b] that reach inside the window; a zero-length one may sit on its edge."""
    point = a == b
    keep = (b > w0) | (point & (b >= w0))
    if w1 is not None:
        keep &= (a < w1) | (point & (a <= w1))
    return keep


def _every_kth_request(rows: np.ndarray, max_requests: int | None, notes: list[str]) -> tuple[np.ndarray, int]:
    """`--trace-requests`: at most `max_requests` of the requests in the window, every k-th of
    them (k is 0 when none is kept, 1 when all are); `notes` says what was dropped."""
    in_window = len(rows)
    k = 1
    if max_requests is not None and len(rows) > max_requests:
        k = math.ceil(len(rows) / max_requests) if max_requests else 0
        rows = rows[::k][:max_requests] if k else rows[:0]
        notes.append(f"--trace-requests {max_requests}: kept {len(rows):,} of {in_window:,} requests"
                     + (f", every {_nth(k)}" if k else ""))
    return rows, k


def _budget_strides(budget: int, max_events: int, batch_rows: np.ndarray, flow_rows: np.ndarray,
                    req_rows: np.ndarray, req_cost: np.ndarray, notes: list[str]) -> dict[str, int]:
    """Every how many batch stretches, flows (2 events each) and requests (`req_cost` events
    each) to keep so that each fits its fair share of `budget`; `notes` says which were thinned."""
    shares = _fair_shares(budget, {"batches": len(batch_rows), "flows": 2 * len(flow_rows),
                                   "requests": int(req_cost.sum())})
    strides = {"batches": _stride(len(batch_rows), shares["batches"]),
               "flows": _stride(len(flow_rows), shares["flows"] // 2),
               "requests": _stride(len(req_rows), shares["requests"], req_cost)}
    capped = []
    for what, rows in (("batch stretches", batch_rows), ("flows", flow_rows), ("requests", req_rows)):
        k = strides["batches" if what == "batch stretches" else what]
        if k > 1:
            capped.append(f"every {_nth(k)} of {len(rows):,} {what}")
    if capped:
        notes.append(f"over {max_events:,} events: kept " + ", ".join(capped)
                     + "; narrow it with --trace-window or --trace-requests")
    return strides
