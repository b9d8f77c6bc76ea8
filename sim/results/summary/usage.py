"""What the devices did in the window: busy, KV held, host waits, powered, paid for."""
from __future__ import annotations

import numpy as np

from ...catalog import economics
from ...core.column_store import in_chunks
from ...ops.lifecycle import POWERED
from ...serving import sharing
from ...simulation import RunResult


def busy_in_window(result: RunResult, w0: float, w1: float) -> tuple[np.ndarray, ...]:
    """Per replica inside [w0, w1]: seconds busy, KV-block-seconds in use, seconds the devices
    wait for the host, and seconds computing weighted by clock^3 (what dynamic power follows)."""
    n = len(result.replicas)
    busy, kv, host, dynamic = (np.zeros(n) for _ in range(4))
    for _, log in in_chunks(result.log.columns(), result.log.store):
        overlap = np.clip(np.minimum(log["end"], w1) - np.maximum(log["start"], w0), 0.0, None)
        busy += np.bincount(log["replica"], weights=overlap, minlength=n)
        kv += np.bincount(log["replica"], weights=overlap * log["kv_blocks"], minlength=n)
        # host time inside those stretches: iterations x overhead, prorated to the window
        span = np.maximum(log["end"] - log["start"], 1e-300)
        host_share = np.minimum(log["iterations"] * log["host_wait"] / span, 1.0)
        host += np.bincount(log["replica"], weights=host_share * overlap, minlength=n)
        dynamic += np.bincount(log["replica"], weights=(1.0 - host_share) * overlap * log["clock"] ** 3, minlength=n)
    return busy, kv, np.minimum(host, busy), dynamic


def pool_of_requests(result: RunResult, rows=slice(None)) -> np.ndarray:
    """Each request's (of `rows`) pool index (-1: never reached a replica)."""
    index = {p.name: i for i, p in enumerate(result.scenario.pools)}
    engine_pool = np.array([index[r.pool] for r in result.replicas] + [-1], np.int64)
    return engine_pool[result.table.replica[rows]]


def devices_paid(result: RunResult, pool, on: np.ndarray, owned: bool, w0: float, w1: float) -> float:
    """The share of the pool's devices' hourly price it pays. Rented, the time they are
    powered (`on`). Owned, all of it; of devices models swap, each pool the time it holds
    them, and the host also the time none does."""
    if not owned:
        return float(np.mean(on))
    group = next((g for g in sharing.swap_groups(result.scenario) if pool in g), None)
    if group is None:
        return 1.0
    if pool is not group[0]:
        return float(np.mean(on))
    return 1.0 - sum(float(np.mean(powered_share(result, p, w0, w1))) for p in group[1:])


def engine_watts(device, dynamic: float, active: float, drawing: float, tp: int) -> float | None:
    """An engine's tp devices' draw and their share of server overhead: `dynamic` is the
    clock^3-weighted computing share, `active` the share its devices compute, `drawing` the
    share of the time their server had power (an autoscaled replica that is stopped, or a
    server or rack that failed, draws nothing while it is down); None without a TDP."""
    device_w = economics.device_power(device, dynamic)
    if device_w is None:
        return None
    device_w -= (1.0 - drawing) * (device.idle_watts() or 0.0)
    node_w = economics.node_power_per_device(device, active) - (1.0 - drawing) * economics.node_power_per_device(
        device, 0.0)
    return (device_w + node_w) * tp


def unpowered_share(result: RunResult, engines, w0: float, w1: float) -> np.ndarray:
    """Per engine (replica index): the share of [w0, w1] its devices' server had no power."""
    f = result.failures
    if f is None or w1 <= w0:
        return np.zeros(len(engines))
    # an outage not repaired by the run's end lasts past it (the time series reaches the duration)
    end = max(result.end_time, w1)
    return np.array([f.unpowered_seconds(f.c.devices_of_engine[int(e)], w0, w1, end) / (w1 - w0) for e in engines])


def powered_share(result: RunResult, pool, w0: float, w1: float) -> np.ndarray:
    """Per engine of the pool: the share of [w0, w1] its replica was powered (starting,
    running or draining); 1 unless the pool is autoscaled."""
    life = result.lifecycle
    n = sum(1 for r in result.replicas if r.pool == pool.name)
    if pool.spec.autoscale is None or life is None or w1 <= w0:
        return np.ones(n)
    return np.array([life.seconds_in(g, POWERED, w0, w1) / (w1 - w0)
                     for g, p in enumerate(life.pool_of) if p is pool for _ in life.groups[g]])
