"""Figures of the network, autoscaling and failures."""
from __future__ import annotations

import numpy as np

from ...core.metrics import COMPLETED, FAILED
from ...ops.lifecycle import POWERED
from ...simulation import RunResult
from .stats import stats


def network_section(result: RunResult, cols: dict, done, w0: float, w1: float) -> dict | None:
    """Fabric figures: flows and bytes, KV-cache transfers, the busiest link in the window."""
    fabric = result.fabric
    if fabric is None:
        return None
    seconds = cols["kv_transfer_s"][done]
    moved = ~np.isnan(seconds)
    w = fabric.log.bin_width
    bins, links, carried = fabric.link_usage()
    inside = (bins * w >= w0) & (bins * w < w1)
    util = carried[inside] / (fabric.capacity[links[inside]] * w)
    top = int(np.argmax(util)) if util.size else None
    busiest = None if top is None or util[top] <= 0 else (top, int(links[inside][top]))
    return {
        "flows": fabric.flows_done,
        "bytes": fabric.bytes_delivered,
        "kv_transfers": int(moved.sum()),
        "kv_transfer_bytes_mean": float(cols["kv_transfer_bytes"][done][moved].mean()) if moved.any() else None,
        "kv_transfer_s": stats(seconds[moved]),
        "max_link_utilization": None if busiest is None else float(util[busiest[0]]),
        "busiest_link": None if busiest is None else f"{fabric.src[busiest[1]]}->{fabric.dst[busiest[1]]}",
    }


def autoscaling_section(result: RunResult, measured: np.ndarray, pool_index: np.ndarray, w0: float,
                 w1: float) -> list[dict] | None:
    """Per autoscaled pool: replicas over time, replica-hours in the window, cold starts and
    what they cost the requests that waited for them."""
    if not result.autoscalers:
        return None
    life, table = result.lifecycle, result.table
    out = []
    for a in result.autoscalers:
        k = result.scenario.pools.index(a.pool)
        hours = sum(life.seconds_in(g, POWERED, w0, w1) for g in a.groups) / 3600.0
        counts = [n for _, n in a.history] or [a.current()]
        starts = [s for s in life.starts if s.group in a.groups]
        live = [s for s in starts if not np.isnan(s.live)]
        waited = measured & (table.start_wait > 0) & (pool_index == k)
        swaps = _swaps(a)
        out.append({
            "pool": a.pool.name, "policy": a.spec.policy, "target": a.spec.target,
            "min": a.spec.min, "max": a.max,
            "replicas_min": int(min(counts)), "replicas_max": int(max(counts)),
            "replicas_mean": hours * 3600.0 / (w1 - w0) if w1 > w0 else None,
            "replica_hours": hours,
            "cold_starts": len(starts),
            "cold_start_s": stats(np.array([s.live - s.requested for s in live])),
            "provision_s": a.pool.spec.serve.provision,
            "weight_load_s": stats(np.array([s.live - s.provisioned for s in live])),
            "requests_waiting_for_start": int(waited.sum()),
            "start_wait_s": stats(table.start_wait[waited]),
            "timeline": [(float(t), int(n)) for t, n in a.history],
            **({} if swaps is None else {"swaps": swaps}),
        })
    return out


def _swaps(scaler) -> dict | None:
    """For a pool whose devices models swap: the times its model came onto devices another
    model held last (`direct`: claimed from it, waiting for its drain; else the other had
    released them) and went off devices another model claimed. `swap_s` runs from the claim
    to the incoming replica live (a direct swap: the drain, then the start)."""
    if scaler.swap is None:
        return None
    name = scaler.pool.name
    came = [s for s in scaler.swap.swaps if s.in_pool == name]
    done = [s for s in came if s.start is not None and not np.isnan(s.start.live)]
    direct = [s for s in done if s.direct]
    return {
        "with": [s.pool.name for s in scaler.swap.scalers if s is not scaler],
        "swaps_in": len(came),
        "direct": sum(s.direct for s in came),
        "swaps_out": sum(s.out_pool == name for s in scaler.swap.swaps),
        "swap_s": stats(np.array([s.start.live - s.claimed for s in done])),
        "drain_s": stats(np.array([s.drained - s.claimed for s in direct])),
        "timeline": [(float(s.claimed), s.out_pool, bool(s.direct)) for s in came],
    }


def failures_section(result: RunResult, cols: dict, done: np.ndarray, w0: float, w1: float) -> dict | None:
    """What failed, how much of the fleet was up, and what it cost the requests: retries,
    failures, and for each failure in the window the dip in goodput and latency and the time
    until both were back (`recovery_s`, see `_dip`)."""
    if result.failures is None:
        return None
    life, table = result.lifecycle, result.table
    wanted = live = 0.0
    for g in range(len(life.groups)):
        wanted += (w1 - w0) - life.seconds_in(g, ("off",), w0, w1)
        live += life.seconds_in(g, ("live", "draining"), w0, w1)
    retried = table.retries > 0
    events = []
    for e in result.failures.log:
        entry = {k: v for k, v in e.items() if k != "lost" and not k.startswith("_")}
        entry["requests_lost"] = len(e["lost"])
        if w0 <= e["time"] < w1:
            entry.update(_dip(table, cols, e["time"], w0, w1))
        events.append(entry)
    return {
        "events": events,
        "replica_availability": live / wanted if wanted > 0 else None,
        "requests_retried": int(retried.sum()),
        "requests_failed": int((table.state == FAILED).sum()),
        "retried_e2e_s": stats(cols["e2e"][done & retried]),
        "others_e2e_s": stats(cols["e2e"][done & ~retried]),
        "cold_starts": len([s for s in life.starts if s.reason == "repair"]),
    }


def _dip(table, cols: dict, t: float, w0: float, w1: float) -> dict:
    """Around a failure at t: goodput (completions per second) and TTFT p99 (of requests
    arriving) before it (from w0 or 60 s before, whichever is later), the worst of each in
    bins after it (1/50 of the window, at least 1 s), and `recovery_s`: from t to the end of
    the last bin where either was more than 10% worse, after which both stayed within 10%
    to the end of the window (0: no bin was; None: still worse in the last bin)."""
    before = (max(w0, t - 60.0), t)
    width = max(1.0, (w1 - w0) / 50)
    done = table.state == COMPLETED
    span = before[1] - before[0]
    if span <= 0:
        return {}
    good0 = float(((table.finished >= before[0]) & (table.finished < before[1]) & done).sum()) / span
    # served before the failure (those it caught are the failure's cost, not the baseline)
    arrived0 = (table.arrival >= before[0]) & (table.finished < t) & done
    first_token = cols["ttft"]
    ttft0 = float(np.nanpercentile(first_token[arrived0], 99)) if arrived0.any() else np.nan
    edges = np.arange(t, w1 + width * 0.5, width)
    good, ttft = [], []
    for a, b in zip(edges, edges[1:], strict=False):
        good.append(float(((table.finished >= a) & (table.finished < b) & done).sum()) / width)
        mine = (table.arrival >= a) & (table.arrival < b) & done
        ttft.append(float(np.nanpercentile(first_token[mine], 99)) if mine.any() else np.nan)
    ok = [g >= 0.9 * good0 and (np.isnan(tt) or np.isnan(ttft0) or tt <= 1.1 * ttft0)
          for g, tt in zip(good, ttft, strict=True)]
    bad = [k for k, fine in enumerate(ok) if not fine]
    recovery = 0.0 if not bad else (None if bad[-1] == len(ok) - 1 else float(edges[bad[-1] + 1] - t))
    worst = [x for x in ttft if not np.isnan(x)]
    return {"goodput_before_rps": good0, "goodput_min_rps": min(good) if good else None,
            "ttft_p99_before_s": None if np.isnan(ttft0) else ttft0, "ttft_p99_worst_s": max(worst) if worst else None,
            "recovery_s": recovery}
