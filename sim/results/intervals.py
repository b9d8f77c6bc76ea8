"""An interval on every headline figure of a run: the model's error and the run's own spread.

Two uncertainties, combined in quadrature in log space:

- **The model's**: how far runs of this kind have been from measurements (`sim.catalog.accuracy`: the
  held-out validation errors of the class of the run's pools; for a pool calibrated to the
  user's cluster, the calibration's own held-out error, `sim.timing.calibration`; with several pools,
  the widest).
- **The run's own**: batch means. The measurement window is cut into ten stretches and each
  figure is computed in each; the spread of the ten, at Student's t with 9 degrees of freedom,
  says how much a longer run could move it. (Neighbouring stretches are correlated under heavy
  load, so this is a lower bound on that spread.)

What the model's error acts on depends on what set the figure. Latencies, energy per token
and, when the fleet limits the throughput, throughput and cost per token all follow the
simulated speed. When the offered load sets the throughput (an open-loop run that keeps up),
throughput and cost per token are the load's, not the model's: they get the run's spread only.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..catalog import accuracy
from ..core.metrics import COMPLETED, REJECTED, SHED
from ..timing import calibration

STRETCHES = 10
T90 = 1.833            # Student's t, two-sided 90 %, 9 degrees of freedom
MIN_PER_STRETCH = 10   # fewer completed requests in a stretch: no batch means
SATURATED = 0.95       # finishing under 95 % of arrivals: the fleet, not the load, sets throughput

LATENCY = [(m, q) for m in ("ttft", "tpot", "e2e") for q in ("p50", "p90", "p99")]


def model_interval(pools, entries=None) -> accuracy.Interval:
    """The widest interval among the run's pools: a calibrated pool's from its calibration's
    held-out error, any other's from its class's held-out validation errors (serving level)."""
    entries = accuracy.load() if entries is None else entries
    best = None
    for p in pools:
        dep = p.deployment
        iv = calibration.interval(*dep.calibration) if dep.calibration is not None else None
        if iv is None:
            iv = accuracy.interval(entries, "serving", *accuracy.class_of([dep]))
        if best is None or iv.half_width > best.half_width:
            best = iv
    return best


def _spread(values: list[float]) -> float | None:
    """90 % half-width in log space of the mean of the stretches' values."""
    v = np.asarray(values, float)
    if len(v) < STRETCHES or not np.all(v > 0):
        return None
    return T90 * float(np.std(np.log(v), ddof=1)) / math.sqrt(len(v))


def section(result, summary: dict) -> dict:
    """summary.json's `intervals`: each headline figure's [low, high], and what they rest on."""
    spec = result.scenario.spec
    t = result.table
    w0, w1 = summary["window_s"]
    edges = np.linspace(w0, w1, STRETCHES + 1)
    measured = (t.arrival >= w0) & (t.arrival < spec.duration)
    done = measured & (t.state == COMPLETED)
    cols = t.columns()
    stretch = np.clip(np.searchsorted(edges, t.arrival, side="right") - 1, 0, STRETCHES - 1)
    in_stretch = [done & (stretch == s) for s in range(STRETCHES)]
    enough = all(np.sum(m) >= MIN_PER_STRETCH for m in in_stretch)

    model = model_interval(result.scenario.pools)
    finished = (t.state == COMPLETED) & (t.finished >= w0) & (t.finished <= w1)
    saturated = _fleet_sets_throughput(spec, t, w0, w1, measured, finished)

    figures = {}
    put = functools.partial(_put, figures, model)
    for metric, q in LATENCY:
        if q == LATENCY[0][1]:
            values = cols[metric]     # made once per metric (sim.core.metrics.Columns makes it when asked)
        spread = _spread([np.percentile(values[m], int(q[1:])) for m in in_stretch]) if enough else None
        put(f"latency_s.{metric}.{q}", summary["latency_s"][metric][q], "time", spread)

    # throughput by finishing time in each stretch
    req_spread, tok_spread = _throughput_spreads(t, edges, finished, (w1 - w0) / STRETCHES, enough)
    tp = summary["throughput"]
    put("throughput.requests_per_s", tp["requests_per_s"], "rate", req_spread, saturated)
    put("throughput.output_tokens_per_s", tp["output_tokens_per_s"], "rate", tok_spread, saturated)
    cost = summary["cost"]
    for key in ("usd_per_m_tokens", "usd_per_m_output_tokens"):
        put(f"cost.{key}", cost.get(key), "time", tok_spread, saturated)
    put("power.joules_per_output_token", summary["power"].get("joules_per_output_token"), "time", tok_spread)
    return _described(model, enough, saturated, figures)


def _fleet_sets_throughput(spec, t, w0: float, w1: float, measured, finished) -> bool:
    """Whether the fleet, not the offered load, set the throughput: a closed loop, a window that
    finished under SATURATED of its arrivals, or more than 1 % of requests turned away."""
    closed = any(s.closed_loop for s in spec.workload)
    arrived_in = int(np.sum((t.arrival >= w0) & (t.arrival < w1)))
    turned_away = int(np.sum(measured & ((t.state == SHED) | (t.state == REJECTED))))
    return closed or finished.sum() < SATURATED * arrived_in or turned_away > 0.01 * max(measured.sum(), 1)


def _put(figures: dict, model: accuracy.Interval, key: str, value, kind: str, spread, with_model=True) -> None:
    """figures[key] = the figure's [low, high]: the model's interval (or none) widened by the
    run's spread; nothing for a figure the run has not got."""
    if value is None:
        return
    iv = model if with_model else accuracy.Interval(0.0, 0.0, 0, "")
    if spread is not None:
        iv = iv.with_spread(spread)
    lo, hi = iv.time(value) if kind == "time" else iv.rate(value)
    figures[key] = [lo, hi]


def _throughput_spreads(t, edges, finished, width: float, enough: bool) -> tuple[float | None, float | None]:
    """The spread of requests and of output tokens per second over the stretches (none without
    `enough` completed requests in each)."""
    fin = np.clip(np.searchsorted(edges, t.finished, side="right") - 1, 0, STRETCHES - 1)
    by_stretch = [finished & (fin == s) for s in range(STRETCHES)]
    tok_spread = _spread([float(t.output[m].sum()) / width for m in by_stretch]) if enough else None
    req_spread = _spread([float(np.sum(m)) / width for m in by_stretch]) if enough else None
    return req_spread, tok_spread


def _described(model: accuracy.Interval, enough: bool, saturated: bool, figures: dict) -> dict:
    """The section: the intervals' basis (the model's error, the run's spread) and the figures."""
    run = (f"batch means over {STRETCHES} stretches of the window" if enough else
           f"no batch means: fewer than {MIN_PER_STRETCH} completed requests in some of the window's "
           f"{STRETCHES} stretches")
    return {
        "confidence": accuracy.CONFIDENCE,
        "model": {"basis": model.basis, "cases": model.cases, "widened": model.widened or None,
                  "median_optimism": model.center, "half_width": model.half_width},
        "run_spread": run,
        "throughput_set_by": "the fleet" if saturated else "the offered load",
        "basis": f"{model.describe()}; {run}",
        "figures": figures,
    }


def text(value: float | None, bounds, fmt) -> str:
    """'204 ms (180-250 ms)' style: the figure, then its interval."""
    if value is None:
        return "-"
    if bounds is None:
        return fmt(value)
    return f"{fmt(value)} ({fmt(bounds[0])}-{fmt(bounds[1])})"
