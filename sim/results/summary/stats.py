"""Percentiles and means of latencies, from values or from a histogram."""
from __future__ import annotations

import numpy as np

LATENCIES = ("ttft", "tpot", "e2e", "queue_wait")


STATS = {"p50": 50, "p90": 90, "p99": 99}


def stats(values: np.ndarray) -> dict:
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return {k: None for k in (*STATS, "mean")}
    out = {k: float(np.percentile(v, q)) for k, q in STATS.items()}
    out["mean"] = float(v.mean())
    return out


def histogram_stats(counts: np.ndarray, edges: np.ndarray) -> dict:
    """`stats` of values given as a histogram over log-spaced bins: a quantile interpolated
    geometrically inside its bin, the mean at the bins' geometric centres."""
    total = counts.sum()
    if total == 0:
        return {k: None for k in (*STATS, "mean")}
    cum = np.cumsum(counts)
    out = {}
    for k, q in STATS.items():
        target = q / 100 * total
        b = int(np.searchsorted(cum, target))
        below = cum[b - 1] if b else 0
        share = (target - below) / counts[b] if counts[b] else 0.0
        out[k] = float(edges[b] * (edges[b + 1] / edges[b]) ** share)
    out["mean"] = float((counts * np.sqrt(edges[:-1] * edges[1:])).sum() / total)
    return out
