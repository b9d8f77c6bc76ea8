"""The headline figures of a run, computed from its columnar records.

Latency statistics cover requests that arrived in the measurement window
[warmup, duration); throughput and goodput count completions inside that window.
"""
from __future__ import annotations

import numpy as np

from . import capacity as capacity_mod, economics, intervals, kernels, media, sharing
from .column_store import in_chunks
from .metrics import COMPLETED, FAILED, IN_FLIGHT, REASONS, REJECTED, SHED, unserved
from .ops.lifecycle import POWERED
from .serving.scheduler import itl_edges
from .sessions import CALL
from .simulation import RunResult

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


def summarize(result: RunResult) -> dict:
    spec = result.scenario.spec
    table = result.table
    cols = table.columns()
    w0 = spec.warmup
    # throughput, utilization and power cover [warmup, duration], or up to the run's end
    # when it ended sooner (a closed-loop stream that ran out of requests)
    w1 = min(spec.duration, max(result.end_time, w0))
    window = max(w1 - w0, 1e-12)
    state = table.state

    # every request that arrived is in exactly one of these
    ends = (("completed", COMPLETED), ("rejected", REJECTED), ("shed", SHED), ("failed", FAILED),
            ("in_flight", IN_FLIGHT))
    counts = {name: int(np.sum(state == code)) for name, code in ends}
    by_reason = {}
    for name, code in ends[1:4]:
        reasons = table.reason[state == code]
        by_reason[f"{name}_by_reason"] = {REASONS[int(c)]: int(np.sum(reasons == c)) for c in np.unique(reasons)}
    requests = {"arrived": int(table.n), **counts, **by_reason, "preemptions": int(table.preemptions.sum()),
                "retries": int(table.retries.sum())}

    measured = (table.arrival >= w0) & (table.arrival < spec.duration)
    done = measured & (state == COMPLETED)
    latency = {k: stats(cols[k][done]) for k in LATENCIES}
    # TTFT = waiting for admission + from admission to the first token (prefill, delivery)
    latency["ttft_service"] = stats((table.first_token - table.admitted)[done])
    # every gap between two tokens of a sequence after the warm-up, and each request's longest
    itl = [r.itl for r in result.replicas if r.itl is not None]
    latency["itl"] = histogram_stats(np.sum(itl, axis=0), itl_edges()) if itl else stats(np.zeros(0))
    latency["longest_stall"] = stats(cols["longest_stall"][done])
    table.let_go()    # a long run's columns leave memory between sections (sim.column_store)

    finished_in = (state == COMPLETED) & (table.finished >= w0) & (table.finished <= w1)
    in_tok = float(table.prompt[finished_in].sum())
    out_tok = float(table.output[finished_in].sum())
    throughput = {
        "requests_per_s": float(finished_in.sum()) / window,
        "input_tokens_per_s": in_tok / window,
        "output_tokens_per_s": out_tok / window,
    }

    makespan = _makespan(table)
    slo = _slo(spec.slo.targets, cols, measured, done, finished_in, latency, table, window)

    busy, kv_seconds, host_seconds, dyn_seconds = busy_in_window(result, w0, w1)
    eco = spec.economics
    pool_index = pool_of_requests(result)
    pools = []
    it_watts = 0.0
    power_notes: list[str] = []
    devices_usd, energy_usd = 0.0, 0.0       # per hour
    cost_notes = []
    weights = []                              # (output-token weight, tokens/s) per pool
    token_prices = np.full((len(result.scenario.pools) + 1, 2), np.nan)   # per pool: $ per input, output token
    for k, pool in enumerate(result.scenario.pools):
        idx = np.array([r.index for r in result.replicas if r.pool == pool.name])
        dep = pool.deployment
        util = busy[idx] / window
        active = (busy[idx] - host_seconds[idx]) / window  # the devices wait during host work
        kv_occ = kv_seconds[idx] / (window * dep.total_blocks)
        # each engine stands for tp devices (a pipeline's pp engines share its tp x pp devices)
        # an autoscaled pool's stopped replicas draw nothing and, rented, cost nothing
        on = powered_share(result, pool, w0, w1)
        drawing = on * (1.0 - unpowered_share(result, idx, w0, w1))
        draws = [engine_watts(dep.device, d, a, p, dep.tp) for d, a, p in zip(dyn_seconds[idx] / window, active, drawing)]
        watts = None if any(w is None for w in draws) else float(sum(draws))
        if watts is None:
            power_notes.append(f"{pool.device_key} has no TDP in the catalog; power and energy not computed")
        else:
            it_watts += watts
        cost = economics.device_cost_per_hour(dep.device, result.scenario.pricing.name, eco.amortize_years,
                                              eco.cost_of_capital)
        pool_usd = None if cost.usd_per_hour is None else cost.usd_per_hour * pool.spec.count
        if pool_usd is not None:
            pool_usd *= devices_paid(result, pool, on, cost.pays_for_power, w0, w1)
        pool_energy_usd = 0.0     # per hour, when the hardware pays for its own power
        if cost.usd_per_hour is None:
            cost_notes.append(cost.note)
        else:
            devices_usd += pool_usd
            if cost.pays_for_power:
                if watts is None:
                    cost_notes.append(f"{pool.device_key}: owned hardware pays for its power, which is unknown "
                                      f"(no TDP); cost not computed")
                else:
                    pool_energy_usd = watts * eco.pue / 1000.0 * eco.usd_per_kwh
                    energy_usd += pool_energy_usd
        served = (pool_index == k) & done
        served_in = (pool_index == k) & finished_in
        pool_tps = float((table.prompt + table.output)[served_in].sum()) / window
        w = _output_weight(result, pool, table, served_in, idx)
        if w is not None:
            weights.append((w, pool_tps))
            if pool_usd is not None and not (cost.pays_for_power and watts is None):
                hour = pool_usd + pool_energy_usd
                tin = float(table.prompt[served_in].sum()) / window
                tout = float(table.output[served_in].sum()) / window
                usd_in, usd_out = economics.split_input_output(hour, tin, tout, w)
                if usd_in is not None:
                    token_prices[k] = usd_in / 1e6, usd_out / 1e6
        pools.append({
            "pool": pool.name, "device": pool.device_key, "device_kind": dep.device.kind, "model": pool.model_key,
            "precision": dep.precision, "kv_precision": dep.kv_precision, "engine": dep.engine, "timing": dep.timing,
            "tp": dep.tp, "pp": dep.pp, "replicas": pool.replicas,
            "engines": pool.replicas * dep.pp, "devices": pool.spec.count, "shares_devices_with": pool.spec.share_devices_with,
            "swaps_devices_with": pool.spec.swap_devices_with,
            "busy_fraction": float(util.mean()), "busy_fraction_max": float(util.max()),
            "accelerator_active": float(active.mean()),
            "iteration_overhead_s": float(np.mean([result.replicas[i].iteration_overhead for i in idx])),
            "kv_occupancy": float(kv_occ.mean()), "kv_blocks_per_replica": dep.total_blocks,
            "kv_tokens_per_replica": dep.max_tokens_in_cache,
            "weights_per_device_bytes": dep.weight_bytes,
            "preemptions": int(sum(r.preemptions for r in result.replicas if r.pool == pool.name)),
            "requests_completed": int(served.sum()),
            "latency_s": {m: {q: v for q, v in stats(cols[m][served]).items() if q in ("p50", "p99", "mean")}
                          for m in ("ttft", "tpot", "e2e")},
            "tokens_per_s": pool_tps,
            "it_watts": watts,
            "pricing": cost.pricing,
            "usd_per_hour": pool_usd,
            "usd_per_m_input_tokens": None if np.isnan(token_prices[k, 0]) else float(token_prices[k, 0] * 1e6),
            "usd_per_m_output_tokens": None if np.isnan(token_prices[k, 1]) else float(token_prices[k, 1] * 1e6),
        })
        table.let_go()
    if power_notes:
        power = {"it_watts": None, "pue": eco.pue, "facility_watts": None, "energy_kwh": None,
                 "joules_per_output_token": None, "joules_per_token": None, "notes": power_notes}
    else:
        facility_watts = it_watts * eco.pue
        energy_j = facility_watts * window
        power = {
            "it_watts": it_watts, "pue": eco.pue, "facility_watts": facility_watts,
            "energy_kwh": energy_j / 3.6e6,
            "joules_per_output_token": energy_j / out_tok if out_tok else None,
            "joules_per_token": energy_j / (in_tok + out_tok) if in_tok + out_tok else None,
            "notes": [],
        }
    power["cap"] = result.power_cap.summary(w0, w1) if result.power_cap is not None else None
    head_nodes = [h.summary(w0, w1) for h in result.head_nodes] or None
    if result.scenario.pricing.name is None and result.scenario.pricing.missing:
        cost_notes = [f"no pricing basis covers every device: {result.scenario.pricing.problem()}"]
    # the fleet's capacity, for a break-even price at a share of it (one more, saturated run)
    capacity, capacity_note = capacity_mod.measure(result.scenario) if eco.utilization is not None else (None, "")
    cost = _cost(devices_usd, energy_usd, list(dict.fromkeys(cost_notes)), result.scenario.pricing, throughput, slo,
                 weights, float(np.mean(busy / window)) if len(busy) else 0.0, eco, capacity, capacity_note)
    network = _network(result, cols, done, w0, w1)
    table.let_go()
    usd = request_costs(table, pool_index, token_prices)
    tenants = _tenants(spec, table, cols, measured, done, finished_in, usd, window)
    table.let_go()
    sessions = _sessions(result, usd, pool_index, w0, spec.duration) if result.sessions is not None else None
    table.let_go()
    prefix_cache = _prefix_cache(result, pool_index, done) if result.prefix_reusable is not None else None
    modalities = _modalities(result, cols, measured, done, finished_in, window, usd, pool_index)
    table.let_go()
    failures = _failures(result, cols, done, w0, w1)
    table.let_go()
    autoscaling = _autoscaling(result, measured, pool_index, w0, w1)
    replicas = [{"replica": r.index, "pool": r.pool, "devices": r.tp, "role": r.role,
                 "busy_fraction": float(busy[r.index] / window),
                 "accelerator_active": float((busy[r.index] - host_seconds[r.index]) / window),
                 "kv_occupancy": float(kv_seconds[r.index] / (window * r.total_blocks)),
                 "preemptions": r.preemptions, "weight_load_s": r.weight_load_s} for r in result.replicas]
    assumptions = sorted({a for p in result.scenario.pools for a in p.deployment.assumptions})
    for key in sorted({p.device_key for p in result.scenario.pools}):
        dev = next(p.deployment.device for p in result.scenario.pools if p.device_key == key)
        if dev.tdp is not None and dev.idle_power is None:
            assumptions.append(f"{key}: idle power not in the catalog; taken as 20% of TDP")
        if dev.tdp is not None and (dev.node is None or dev.node.power is None):
            assumptions.append(f"{key}: no server overhead power in the catalog; only accelerator power counted")
        # catalog figures taken from another device or reasoning, not measured on this one
        assumptions += [f"{key}: {field} assumed, not measured on this device (its source in the device catalog says how)"
                        for field, note in sorted(dev.sources.items()) if "assumed" in note.lower()]
        if dev.node is not None:     # the server's figures too
            assumptions += [f"{key}: node.{field} assumed (its source in the device catalog says how)"
                            for field, note in sorted(dev.node.sources.items()) if "assumed" in note.lower()]
    out = {
        "scenario": spec.name,
        "source": result.scenario.path,
        "seed": result.seed,
        "window_s": [w0, w1],
        "requests": requests,
        "measured_requests": int(measured.sum()),
        "latency_s": latency,
        "throughput": throughput,
        "makespan": makespan,
        "slo": slo,
        "tenants": tenants,
        "sessions": sessions,
        "prefix_cache": prefix_cache,
        "modalities": modalities,
        "failures": failures,
        "autoscaling": autoscaling,
        "pools": pools,
        "replicas": replicas,
        "network": network,
        "power": power,
        "head_nodes": head_nodes,
        "cost": cost,
        "assumptions": assumptions,
        "run": {"simulated_seconds": result.end_time, "wall_seconds": result.wall_seconds,
                "events": result.events,
                "streams": result.stream_names},
    }
    out["steady_state"] = steady_state(table, w0, w1)
    table.let_go()
    out["intervals"] = intervals.section(result, out)
    table.let_go()
    return out


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


def request_costs(table, pool_index: np.ndarray, token_prices: np.ndarray, rows=slice(None)) -> np.ndarray:
    """Each completed request's share of the fleet's cost: its input and output tokens at its
    pool's split prices (which share the pool's hour, idle time included, over the tokens it
    finished in the window); NaN where no price is known or it did not complete."""
    prices = token_prices[pool_index]
    usd = table.prompt[rows] * prices[:, 0] + table.output[rows] * prices[:, 1]
    return np.where(table.state[rows] == COMPLETED, usd, np.nan)


def _tenants(spec, table, cols, measured, done, finished_in, usd, window) -> list[dict]:
    """Per tenant: its traffic, what became of it, its latency, its SLO attainment against
    its own targets (or the scenario's), and its cost."""
    tenant_of = [s.tenant or s.name for s in spec.workload]
    out = []
    for tenant in dict.fromkeys(tenant_of):
        streams = [i for i, t in enumerate(tenant_of) if t == tenant]
        mine = np.isin(table.stream, streams)
        own = next((spec.workload[i].slo for i in streams if spec.workload[i].slo is not None), None)
        targets = (own or spec.slo).targets
        rows = slice(None) if mine.all() else np.flatnonzero(mine)   # all: views, not copies
        sub = table.columns(rows)
        m, d, f = measured[rows], done[rows], finished_in[rows]
        latency = {k: stats(sub[k][d]) for k in LATENCIES}
        tokens = float((table.prompt + table.output)[mine & finished_in].sum())
        spent = usd[mine & finished_in]
        known = not np.isnan(spent).any()
        table.let_go()
        out.append({
            "tenant": tenant,
            "streams": [spec.workload[i].name for i in streams],
            "priority": sorted({spec.workload[i].priority for i in streams}),
            "measured_requests": int(m.sum()),
            "completed": int(d.sum()),
            "turned_away": int((m & unserved(table.state[rows])).sum()),
            **{name: int((m & (table.state[rows] == code)).sum())
               for name, code in (("rejected", REJECTED), ("shed", SHED), ("failed", FAILED))},
            "latency_s": latency,
            "slo": _slo(targets, sub, m, d, f, latency, _Rows(table, rows), window),
            "tokens_per_s": tokens / window,
            "usd_per_hour": float(spent.sum()) / window * 3600.0 if known else None,
            "usd_per_m_tokens": float(spent.sum()) / tokens * 1e6 if known and tokens else None,
        })
    return out


def request_flops(result: RunResult, pool_index: np.ndarray) -> np.ndarray:
    """Model FLOPs each request took: 2 x active parameters x tokens computed (its prompt,
    less what the prefix cache held, plus its output); attention is not counted. Requests to
    speech-to-text and diffusion models by their own formulas (`sim.media.request_flops`:
    a window's encoder and decoder tokens; steps x passes x samples x a transformer pass,
    attention included, plus text encoders and VAE)."""
    active = np.array([p.deployment.model.computed_active_params() for p in result.scenario.pools] + [np.nan])
    t = result.table
    flops = 2.0 * active[pool_index] * (t.prompt - t.cached + t.output)
    for k, pool in enumerate(result.scenario.pools):
        model = pool.deployment.model
        if model.diffusion is not None or model.modality == "speech_to_text":
            mine = pool_index == k
            flops[mine] = media.request_flops(model, t.prompt[mine], t.output[mine], t.samples[mine], t.pixels[mine])
    return flops


def _modalities(result: RunResult, cols: dict, measured, done, finished_in, window: float,
                usd: np.ndarray, pool_index: np.ndarray) -> dict:
    """Figures of each request kind beyond chat text that the run holds, in its own terms
    (`sim.media`), and what a unit of it costs (its requests' share of their pools' hour, as
    for tenants, over the units finished in the window). The fleet-level latency section keeps
    every request; there a request to which a figure does not apply has none (an image has no
    first token: no TTFT or TPOT)."""
    t = result.table
    out = {}

    def per(finished, units: float, scale: float = 1.0):
        """Dollars per unit (x scale) of the requests finished in the window."""
        spent = usd[finished]
        return None if np.isnan(spent).any() or units <= 0 else float(spent.sum()) / units * scale

    for code in np.unique(t.modality).tolist():
        kind = media.KINDS[code]
        if kind == "text":
            continue
        mine = t.modality == code
        m, d, f = measured & mine, done & mine, finished_in & mine
        fig = {"requests": int(m.sum()), "completed": int(d.sum()),
               "turned_away": int((m & unserved(t.state)).sum()),
               "latency_s": stats(cols["e2e"][d]), "queue_wait_s": stats(cols["queue_wait"][d])}
        if kind == "embedding":
            fig["tokens_per_s"] = float(t.prompt[f].sum()) / window
            fig["usd_per_m_tokens"] = per(f, float(t.prompt[f].sum()), 1e6)
        elif kind in ("image", "video"):
            with np.errstate(invalid="ignore", divide="ignore"):
                per_step = (t.finished - t.admitted) / t.output
            fig["steps_mean"] = float(t.output[d].mean()) if d.any() else None
            fig["time_per_step_s"] = stats(per_step[d])
            if kind == "image":
                fig["images_per_s"] = float(t.samples[f].sum()) / window
                fig["usd_per_image"] = per(f, float(t.samples[f].sum()))
            else:
                fig["videos_per_s"] = float(f.sum()) / window
                fig["video_seconds_per_s"] = float(np.nansum(t.media_seconds[f])) / window
                fig["usd_per_video"] = per(f, float(f.sum()))
        elif kind == "speech_to_text":
            fig.update(_clips(t, mine, measured, finished_in, window))
        elif kind == "text_to_speech":
            fig.update(_speech_out(result, t, cols, d, f, window, pool_index))
        if kind in ("speech_to_text", "text_to_speech"):
            fig["usd_per_audio_hour"] = per(f, float(np.nansum(t.media_seconds[f])), 3600.0)
        out[kind] = fig
    return out


def _clips(t, mine, measured, finished_in, window: float) -> dict:
    """Speech to text, per clip (its windows share `t.clip`): latency until its last window is
    done, real-time factor (that latency / the clip's audio seconds), audio seconds
    transcribed per second of the window."""
    rows = np.flatnonzero(mine)
    firsts, index = np.unique(t.clip[rows], return_inverse=True)
    n = len(firsts)
    windows = np.bincount(index, minlength=n)
    completed = np.bincount(index, weights=t.state[rows] == COMPLETED, minlength=n)
    seconds = np.bincount(index, weights=t.media_seconds[rows], minlength=n)
    end = np.full(n, -np.inf)
    np.maximum.at(end, index, np.nan_to_num(t.finished[rows], nan=np.inf))
    counted = measured[firsts]
    whole = (completed == windows) & counted
    latency = (end - t.arrival[firsts])[whole]
    return {"clips": int(counted.sum()), "clips_completed": int(whole.sum()),
            "windows_per_clip": float(windows[counted].mean()) if counted.any() else None,
            "clip_latency_s": stats(latency), "real_time_factor": stats(latency / seconds[whole]),
            "audio_seconds_per_s": float(t.media_seconds[finished_in & mine].sum()) / window}


def _speech_out(result: RunResult, t, cols: dict, done, finished_in, window: float,
                pool_index: np.ndarray) -> dict:
    """Text to speech: time to first audio (TTFT + (first_chunk_tokens - 1) x the request's
    TPOT: the codec's first chunk generated; a reply shorter than one chunk plays when it
    ends), the real-time factor of generation (decode time / audio seconds; below 1 it is
    written faster than it plays), audio seconds produced per second."""
    chunk = np.zeros(len(result.scenario.pools) + 1, np.int64)
    for k, pool in enumerate(result.scenario.pools):
        if pool.deployment.model.modality == "text_to_speech":
            chunk[k] = pool.deployment.model.speech.first_chunk_tokens
    first = chunk[pool_index]
    audio = np.where(t.output >= first, cols["ttft"] + (first - 1) * np.nan_to_num(cols["tpot"]), cols["e2e"])
    with np.errstate(invalid="ignore", divide="ignore"):
        rtf = (t.finished - t.first_token) / t.media_seconds
    return {"time_to_first_audio_s": stats(audio[done]), "real_time_factor": stats(rtf[done]),
            "audio_seconds_per_s": float(np.nansum(t.media_seconds[finished_in])) / window}


def _sessions(result: RunResult, usd: np.ndarray, pool_index: np.ndarray, w0: float, w1: float) -> list[dict]:
    """Per session stream, the sessions that started in [w0, w1): what became of them, their
    latency (start to the answering call's end), calls, tokens, compute and cost per session
    (the sum of its calls'); and the tool services' queues."""
    runner, t = result.sessions, result.table
    plan = runner.plan
    n = len(plan.start)
    mine = t.session >= 0
    sid = t.session[mine]
    calls = np.bincount(sid, minlength=n)
    tokens = np.bincount(sid, weights=(t.prompt + t.output)[mine], minlength=n)
    flops = np.bincount(sid, weights=request_flops(result, pool_index)[mine], minlength=n)
    spent = np.bincount(sid, weights=np.nan_to_num(usd[mine]), minlength=n)
    priced = np.bincount(sid, weights=np.isnan(usd[mine]) & (t.state[mine] == COMPLETED), minlength=n) == 0
    end = np.full(n, np.nan)
    answered = mine & t.final & (t.state == COMPLETED)
    end[t.session[answered]] = t.finished[answered]
    failed = runner.failed.copy()
    failed[t.session[mine & unserved(t.state)]] = True
    out = []
    for k, stream in enumerate(result.scenario.spec.workload):
        if stream.session is None:
            continue
        started = (plan.stream == k) & (plan.start >= w0) & (plan.start < w1)
        ok = started & ~np.isnan(end)
        out.append({
            "stream": stream.name,
            "started": int(started.sum()),
            "completed": int(ok.sum()),
            "failed": int((started & failed).sum()),
            "in_flight": int((started & np.isnan(end) & ~failed).sum()),
            "latency_s": stats((end - plan.start)[ok]),
            "calls_per_session": float(calls[ok].mean()) if ok.any() else None,
            "tokens_per_session": float(tokens[ok].mean()) if ok.any() else None,
            "pflop_per_session": float(flops[ok].mean()) / 1e15 if ok.any() else None,
            "usd_per_session": float(spent[ok].mean()) if ok.any() and priced[ok].all() else None,
            "steps": _pipeline_steps(result, stream, ok) if stream.session.steps is not None else None,
        })
    services = [{"service": s.name, "servers": s.servers, "calls": len(s.waits),
                 "wait_s": stats(np.array(s.waits)), "utilization": s.busy / (s.servers * max(result.end_time, 1e-12))}
                for s in runner.services.values()]
    return {"streams": out, "services": services}


def _pipeline_steps(result: RunResult, stream, ok: np.ndarray) -> list[dict]:
    """A pipeline stream's sessions `ok` (started in the window, answered) step by step: each
    step's latency (its first invocation's start to its last one's end), then the answer's
    first token counted from the session's start, and how much of that the steps before the
    answering call took (retrieval, in a RAG pipeline)."""
    runner, t, plan = result.sessions, result.table, result.sessions.plan
    n = len(plan.start)
    calls = (t.session >= 0) & (t.step >= 0)
    tools = (plan.kind != CALL) & (plan.step >= 0)
    sid = np.concatenate([t.session[calls], plan.session[tools]])
    step = np.concatenate([t.step[calls], plan.step[tools]])
    begin = np.concatenate([t.arrival[calls], runner.tool_start[tools]])
    end = np.concatenate([t.finished[calls], runner.tool_done[tools]])
    out = []
    for k, spec in enumerate(stream.session.steps):
        mine = (step == k) & ok[sid]
        first, last = np.full(n, np.inf), np.full(n, -np.inf)
        np.minimum.at(first, sid[mine], begin[mine])
        np.maximum.at(last, sid[mine], end[mine])
        has = np.isfinite(first) & np.isfinite(last)
        what = (f"tool {spec.tool.service or spec.tool.name}" if spec.tool is not None else
                f"call {spec.call.model or stream.session.model or stream.model or 'the served model'}")
        out.append({"step": k, "what": what, "latency_s": stats((last - first)[has])})
    answers = t.final & (t.session >= 0) & (t.state == COMPLETED)
    answers &= ok[np.maximum(t.session, 0)]
    begun = plan.start[t.session[answers]]
    out.append({"step": "answer", "what": "first token of the answer, from the session's start",
                "latency_s": stats(t.first_token[answers] - begun),
                "of_which_before_answer_s": stats(t.arrival[answers] - begun)})
    return out


class _Rows:
    """The columns `_slo` reads, for a subset of the requests."""

    def __init__(self, table, rows):
        self.prompt, self.output, self.state = table.prompt[rows], table.output[rows], table.state[rows]


def _output_weight(result: RunResult, pool, table, served_in, idx) -> float | None:
    """Accelerator time of one output token over that of one input token on this pool, at
    the run's operating point (its mean prompt, and its mean decode batch: output tokens
    per iteration), from the kernels; None when the pool served nothing."""
    if not served_in.any():
        return None
    prompt = float(table.prompt[served_in].mean())
    output = float(table.output[served_in].mean())
    iterations = sum(float(log["iterations"][np.isin(log["replica"], idx)].sum())
                     for _, log in in_chunks(result.log.columns(), result.log.store))
    batch = max(1, int(round(float(table.output[served_in].sum()) / max(iterations, 1.0))))
    p = pool.deployment.params
    P = max(1, int(round(prompt)))
    pf = kernels.prefill_time(p, P) / P
    dec = kernels.decode_time(p, batch, int(round(prompt + output / 2))) / batch
    return dec / pf if pf > 0 else None


def _cost(devices_usd, energy_usd, notes, basis, throughput, slo, weights, busy_fraction, eco,
          capacity: float | None = None, capacity_note: str = "") -> dict:
    """The hour's cost and what it makes a token cost: blended, split between input and
    output tokens by the accelerator time each takes, at the SLO, and at break-even."""
    per_hour = None if notes else devices_usd + energy_usd
    tin, tout = throughput["input_tokens_per_s"], throughput["output_tokens_per_s"]
    total_tps = tin + tout
    weight = (sum(w * t for w, t in weights) / sum(t for _, t in weights)
              if weights and sum(t for _, t in weights) > 0 else None)
    usd_in, usd_out = economics.split_input_output(per_hour, tin, tout, weight)
    per_m = economics.usd_per_million(per_hour, total_tps)
    u = eco.utilization
    even = economics.break_even(per_hour, capacity, u) if u is not None else None
    market = eco.market_usd_per_m_tokens
    return {
        "pricing": basis.name or "none",
        "pricing_basis": economics.describe(basis.name, eco.amortize_years, eco.cost_of_capital, eco.usd_per_kwh,
                                            eco.pue) + (f" ({basis.chosen_by})" if basis.chosen_by else ""),
        "devices_usd_per_hour": None if notes else devices_usd,
        "energy_usd_per_hour": None if notes else energy_usd,
        "usd_per_hour": per_hour,
        "usd_per_day": None if per_hour is None else per_hour * 24.0,
        "usd_per_m_tokens": per_m,
        "usd_per_m_output_tokens": economics.usd_per_million(per_hour, tout),
        "usd_per_m_input_tokens_split": usd_in,
        "usd_per_m_output_tokens_split": usd_out,
        "output_token_weight": weight,
        "usd_per_m_tokens_at_slo": economics.usd_per_million(per_hour, slo.get("goodput_tokens_per_s") or 0.0),
        "busy_fraction": busy_fraction,
        "capacity_tokens_per_s": capacity,
        "capacity_utilization": None if not capacity else total_tps / capacity,
        "capacity_note": capacity_note,
        "break_even_utilization": u,
        "break_even_usd_per_m_tokens": even,
        "market_usd_per_m_tokens": market,
        "margin": None if market is None or per_m is None else (market - per_m) / market,
        "margin_at_break_even_utilization": None if market is None or even is None else (market - even) / market,
        "notes": notes,
    }


def _network(result: RunResult, cols: dict, done, w0: float, w1: float) -> dict | None:
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


def _autoscaling(result: RunResult, measured: np.ndarray, pool_index: np.ndarray, w0: float,
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


def _failures(result: RunResult, cols: dict, done: np.ndarray, w0: float, w1: float) -> dict | None:
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
    for a, b in zip(edges, edges[1:]):
        good.append(float(((table.finished >= a) & (table.finished < b) & done).sum()) / width)
        mine = (table.arrival >= a) & (table.arrival < b) & done
        ttft.append(float(np.nanpercentile(first_token[mine], 99)) if mine.any() else np.nan)
    ok = [g >= 0.9 * good0 and (np.isnan(tt) or np.isnan(ttft0) or tt <= 1.1 * ttft0) for g, tt in zip(good, ttft)]
    bad = [k for k, fine in enumerate(ok) if not fine]
    recovery = 0.0 if not bad else (None if bad[-1] == len(ok) - 1 else float(edges[bad[-1] + 1] - t))
    worst = [x for x in ttft if not np.isnan(x)]
    return {"goodput_before_rps": good0, "goodput_min_rps": min(good) if good else None,
            "ttft_p99_before_s": None if np.isnan(ttft0) else ttft0, "ttft_p99_worst_s": max(worst) if worst else None,
            "recovery_s": recovery}


def _makespan(table) -> dict:
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


def _slo(targets: dict, cols: dict, measured, done, finished_in, latency: dict, table, window) -> dict:
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


def _prefix_cache(result: RunResult, pool_index: np.ndarray, done: np.ndarray) -> list[dict]:
    """Per pool that caches prefixes, over its completed measured requests: how many could
    reuse something (a call extending an earlier one, a shared system prompt), how many
    found it cached, the prompt tokens skipped, and what that saved: prefill FLOPs (2 x
    active parameters per token) and prefill time (each hit's prefill alone on its replica,
    whole prompt vs. the rest after the cached part)."""
    t = result.table
    reusable = result.prefix_reusable
    out = []
    for k, pool in enumerate(result.scenario.pools):
        if not pool.spec.serve.engine.prefix_cache:
            continue
        mine = done & (pool_index == k)
        hit = mine & (t.cached > 0)
        p = pool.deployment.params
        saved_s = 0.0
        empty = np.zeros(0, np.int64)
        for prompt, cached in zip(t.prompt[hit].tolist(), t.cached[hit].tolist()):
            rest = kernels.batch_time(np.array([prompt - cached], np.int64), np.array([cached], np.int64),
                                      np.array([prompt], np.int64), empty, p)
            saved_s += kernels.prefill_time(p, prompt) - rest
        prompt_tokens = int(t.prompt[mine].sum())
        cached_tokens = int(t.cached[mine].sum())
        could = int((mine & reusable).sum())
        reps = [r for r in result.replicas if r.pool == pool.name]
        out.append({
            "pool": pool.name,
            "requests": int(mine.sum()),
            "reusable_requests": could,
            "hits": int(hit.sum()),
            "hit_rate": int(hit.sum()) / could if could else None,
            "prompt_tokens": prompt_tokens,
            "cached_tokens": cached_tokens,
            "token_hit_rate": cached_tokens / prompt_tokens if prompt_tokens else None,
            "prefill_pflop_saved": 2.0 * pool.deployment.model.computed_active_params() * cached_tokens / 1e15,
            "prefill_seconds_saved": saved_s,
            "evicted_blocks": int(sum(r.evicted_blocks for r in reps)),
            "cached_blocks_at_end": int(sum(r.cached_blocks for r in reps)),
        })
    return out
