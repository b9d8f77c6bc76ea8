"""Each pool's figures (utilization, KV, latency, power, cost) and the fleet's power."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...catalog import economics
from .money import output_weight
from .stats import stats
from .usage import devices_paid, engine_watts, powered_share, unpowered_share


@dataclass
class Fleet:
    """The pools' entries of summary.json and the fleet's totals they add up to."""
    token_prices: np.ndarray       # per pool (and one for no pool): $ per input token, per output token
    pools: list[dict] = field(default_factory=list)
    it_watts: float = 0.0
    power_notes: list[str] = field(default_factory=list)
    devices_usd: float = 0.0       # per hour
    energy_usd: float = 0.0        # per hour, of owned hardware that pays for its power
    cost_notes: list[str] = field(default_factory=list)
    weights: list[tuple[float, float]] = field(default_factory=list)   # (output-token weight, tokens/s) per pool


def fleet_figures(v, usage, pool_index: np.ndarray) -> Fleet:
    fleet = Fleet(np.full((len(v.result.scenario.pools) + 1, 2), np.nan))
    for k, pool in enumerate(v.result.scenario.pools):
        fleet.pools.append(_pool(v, k, pool, usage, pool_index, fleet))
        v.table.let_go()
    return fleet


def _pool(v, k: int, pool, usage, pool_index: np.ndarray, fleet: Fleet) -> dict:
    result, table, window = v.result, v.table, v.seconds
    busy, kv_seconds, host_seconds, dyn_seconds = usage
    idx = np.array([r.index for r in result.replicas if r.pool == pool.name])
    dep = pool.deployment
    util = busy[idx] / window
    active = (busy[idx] - host_seconds[idx]) / window  # the devices wait during host work
    kv_occ = kv_seconds[idx] / (window * dep.total_blocks)
    # an autoscaled pool's stopped replicas draw nothing and, rented, cost nothing
    on = powered_share(result, pool, v.w0, v.w1)
    watts = _pool_watts(v, pool, idx, active, dyn_seconds, on, fleet)
    cost, pool_usd, pool_energy_usd = _pool_cost(v, pool, on, watts, fleet)
    served = (pool_index == k) & v.done
    served_in = (pool_index == k) & v.finished_in
    pool_tps = float((table.prompt + table.output)[served_in].sum()) / window
    w = output_weight(result, pool, table, served_in, idx)
    if w is not None:
        fleet.weights.append((w, pool_tps))
        if pool_usd is not None and not (cost.pays_for_power and watts is None):
            tin = float(table.prompt[served_in].sum()) / window
            tout = float(table.output[served_in].sum()) / window
            usd_in, usd_out = economics.split_input_output(pool_usd + pool_energy_usd, tin, tout, w)
            if usd_in is not None:
                fleet.token_prices[k] = usd_in / 1e6, usd_out / 1e6
    price = fleet.token_prices[k]
    return {
        "pool": pool.name, "device": pool.device_key, "device_kind": dep.device.kind, "model": pool.model_key,
        "precision": dep.precision, "kv_precision": dep.kv_precision, "engine": dep.engine, "timing": dep.timing,
        "tp": dep.tp, "pp": dep.pp, "replicas": pool.replicas,
        "engines": pool.replicas * dep.pp, "devices": pool.spec.count,
        "shares_devices_with": pool.spec.share_devices_with,
        "swaps_devices_with": pool.spec.swap_devices_with,
        "busy_fraction": float(util.mean()), "busy_fraction_max": float(util.max()),
        "accelerator_active": float(active.mean()),
        "iteration_overhead_s": float(np.mean([result.replicas[i].iteration_overhead for i in idx])),
        "kv_occupancy": float(kv_occ.mean()), "kv_blocks_per_replica": dep.total_blocks,
        "kv_tokens_per_replica": dep.max_tokens_in_cache,
        "weights_per_device_bytes": dep.weight_bytes,
        "preemptions": int(sum(r.preemptions for r in result.replicas if r.pool == pool.name)),
        "requests_completed": int(served.sum()),
        "latency_s": {m: {q: x for q, x in stats(v.cols[m][served]).items() if q in ("p50", "p99", "mean")}
                      for m in ("ttft", "tpot", "e2e")},
        "tokens_per_s": pool_tps,
        "it_watts": watts,
        "pricing": cost.pricing,
        "usd_per_hour": pool_usd,
        "usd_per_m_input_tokens": None if np.isnan(price[0]) else float(price[0] * 1e6),
        "usd_per_m_output_tokens": None if np.isnan(price[1]) else float(price[1] * 1e6),
    }


def _pool_watts(v, pool, idx, active, dyn_seconds, on, fleet: Fleet) -> float | None:
    """The pool's accelerators' draw; each engine stands for tp devices (a pipeline's pp
    engines share its tp x pp devices)."""
    dep = pool.deployment
    drawing = on * (1.0 - unpowered_share(v.result, idx, v.w0, v.w1))
    draws = [engine_watts(dep.device, d, a, p, dep.tp)
             for d, a, p in zip(dyn_seconds[idx] / v.seconds, active, drawing, strict=True)]
    watts = None if any(w is None for w in draws) else float(sum(draws))
    if watts is None:
        fleet.power_notes.append(f"{pool.device_key} has no TDP in the catalog; power and energy not computed")
    else:
        fleet.it_watts += watts
    return watts


def _pool_cost(v, pool, on, watts, fleet: Fleet):
    """The pool's hourly price, and the hour's energy when owned hardware pays for its power."""
    eco = v.spec.economics
    cost = economics.device_cost_per_hour(pool.deployment.device, v.result.scenario.pricing.name,
                                          eco.amortize_years, eco.cost_of_capital)
    pool_usd = None if cost.usd_per_hour is None else cost.usd_per_hour * pool.spec.count
    if pool_usd is not None:
        pool_usd *= devices_paid(v.result, pool, on, cost.pays_for_power, v.w0, v.w1)
    pool_energy_usd = 0.0
    if cost.usd_per_hour is None:
        fleet.cost_notes.append(cost.note)
    else:
        fleet.devices_usd += pool_usd
        if cost.pays_for_power:
            if watts is None:
                fleet.cost_notes.append(f"{pool.device_key}: owned hardware pays for its power, which is unknown "
                                        f"(no TDP); cost not computed")
            else:
                pool_energy_usd = watts * eco.pue / 1000.0 * eco.usd_per_kwh
                fleet.energy_usd += pool_energy_usd
    return cost, pool_usd, pool_energy_usd


def power(v, fleet: Fleet) -> dict:
    """The fleet's draw at the facility, its energy over the window, and per token."""
    eco = v.spec.economics
    if fleet.power_notes:
        out = {"it_watts": None, "pue": eco.pue, "facility_watts": None, "energy_kwh": None,
               "joules_per_output_token": None, "joules_per_token": None, "notes": fleet.power_notes}
    else:
        in_tok, out_tok = v.input_tokens, v.output_tokens
        facility_watts = fleet.it_watts * eco.pue
        energy_j = facility_watts * v.seconds
        out = {
            "it_watts": fleet.it_watts, "pue": eco.pue, "facility_watts": facility_watts,
            "energy_kwh": energy_j / 3.6e6,
            "joules_per_output_token": energy_j / out_tok if out_tok else None,
            "joules_per_token": energy_j / (in_tok + out_tok) if in_tok + out_tok else None,
            "notes": [],
        }
    out["cap"] = v.result.power_cap.summary(v.w0, v.w1) if v.result.power_cap is not None else None
    return out
