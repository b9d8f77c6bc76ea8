"""The fleet's capacity: the tokens per second it completes when it never waits for work.

Break-even prices are quoted at a share of this capacity (`economics.utilization`), not at a
share of busy time: under continuous batching an engine is busy nearly all the time at any
load, so busy time says nothing about how much more it could take.

The probe reruns the scenario with each open-loop stream turned closed-loop: its requests keep
coming back as soon as one finishes, `SATURATE` times the fleet's batch slots outstanding in
all, shared among the streams by their rates, with the same models, tenants and token lengths.
Its throughput over the measurement window is the capacity. Streams that are sessions, traces
or media requests keep their own form: a workload made only of those is not probed.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from ..core.metrics import COMPLETED

SATURATE = 2.0     # outstanding requests per batch slot: every engine always has a full batch to run


def probe_scenario(scenario, requests_per_stream_scale: float = 4.0):
    """The scenario saturated, or None when none of its streams can be closed. Each closed
    stream may send `requests_per_stream_scale` x what it sent open-loop (and at least 20 per
    outstanding request); `measure` raises that when a probe runs out."""
    from ..scenario import scenario_from_source
    src = copy.deepcopy(scenario.source)
    data = src.data
    streams = data.get("workload") or []
    rates = [_rate(s) for s in scenario.spec.workload]
    open_ones = [i for i, s in enumerate(scenario.spec.workload)
                 if rates[i] and s.trace is None and s.session is None and not s.closed_loop
                 and s.audio_seconds is None and s.image is None and s.video is None]
    if not open_ones:
        return None
    slots = sum(p.replicas * p.spec.serve.engine.max_batch_seqs for p in scenario.pools)
    outstanding = max(1, int(math.ceil(SATURATE * slots)))
    total = sum(rates[i] for i in open_ones)
    probe = []
    for i in open_ones:
        s = copy.deepcopy(streams[i])
        for key in ("rate", "arrival", "requests"):
            s.pop(key, None)
        s["concurrency"] = max(1, int(round(outstanding * rates[i] / total)))
        s["requests"] = int(max(20 * s["concurrency"],
                                math.ceil(requests_per_stream_scale * rates[i] * scenario.spec.duration)))
        probe.append(s)
    data["workload"] = probe
    for pool in data.get("fleet", []):
        pool.pop("autoscale", None)
    data.pop("failures", None)
    data.pop("admission", None)
    data["drain"] = 0.0             # the window is what counts; what is in flight at its end is left
    src.locs = {k: v for k, v in src.locs.items() if k[:1] != ("workload",)}
    return scenario_from_source(src, (), scenario.path)


def _rate(stream) -> float:
    return float(stream.rate) if stream.rate else 0.0


def measure(scenario) -> tuple[float | None, str]:
    """(input + output tokens per second at saturation, how it was measured)."""
    from ..simulation import simulate
    scale = 4.0
    while True:
        probe = probe_scenario(scenario, scale)
        if probe is None:
            return None, "capacity not measured: no open-loop token stream to saturate"
        result = simulate(probe)
        sent = int(np.sum(~np.isnan(result.table.arrival)))
        if sent < sum(s.requests for s in probe.spec.workload) or scale >= 1024:
            break
        scale *= 4.0                # the streams ran out of requests before the window ended
    spec = probe.spec
    w0, w1 = spec.warmup, min(spec.duration, result.end_time)
    t = result.table
    done = (t.state == COMPLETED) & (t.finished >= w0) & (t.finished <= w1)
    if w1 <= w0 or not done.any():
        return None, "capacity not measured: the saturated probe completed nothing in the window"
    tokens = float((t.prompt[done] + t.output[done]).sum())
    return tokens / (w1 - w0), (f"capacity: a rerun with every stream closed-loop, {SATURATE:g} x the fleet's "
                                f"batch slots outstanding")
