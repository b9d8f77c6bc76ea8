"""The headline figures of a run, computed from its columnar records.

Latency statistics cover requests that arrived in the measurement window
[warmup, duration); throughput and goodput count completions inside that window.
`summarize` builds summary.json one section at a time; every section reads the run
through a `Window`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.metrics import COMPLETED, FAILED, IN_FLIGHT, REASONS, REJECTED, SHED
from ...serving.event_log import itl_edges
from ...simulation import RunResult
from .. import capacity as capacity_mod
from .. import intervals, provenance
from .latency import makespan_section, slo_section, steady_state
from .money import cost_section, request_costs
from .operations import autoscaling_section, failures_section, network_section
from .pools import fleet_figures, power
from .stats import LATENCIES, histogram_stats, stats
from .tenants import tenants_section
from .usage import busy_in_window, pool_of_requests
from .workloads import modalities_section, prefix_cache_section, sessions_section


@dataclass
class Window:
    """The run as every section reads it: the measurement window and the requests in it."""
    result: RunResult
    cols: object              # the request table's columns, derived ones made when read
    w0: float
    w1: float
    seconds: float            # w1 - w0 (never zero)
    measured: np.ndarray      # arrived inside [warmup, duration)
    done: np.ndarray          # measured and completed
    finished_in: np.ndarray   # completed inside [w0, w1], whenever it arrived
    input_tokens: float       # prompt tokens of those requests
    output_tokens: float      # and output tokens

    @property
    def spec(self):
        return self.result.scenario.spec

    @property
    def table(self):
        return self.result.table


def window_of(result: RunResult) -> Window:
    spec, table = result.scenario.spec, result.table
    w0 = spec.warmup
    # throughput, utilization and power cover [warmup, duration], or up to the run's end
    # when it ended sooner (a closed-loop stream that ran out of requests)
    w1 = min(spec.duration, max(result.end_time, w0))
    state = table.state
    measured = (table.arrival >= w0) & (table.arrival < spec.duration)
    done = measured & (state == COMPLETED)
    finished_in = (state == COMPLETED) & (table.finished >= w0) & (table.finished <= w1)
    return Window(result, table.columns(), w0, w1, max(w1 - w0, 1e-12), measured, done, finished_in,
                  float(table.prompt[finished_in].sum()), float(table.output[finished_in].sum()))


def summarize(result: RunResult) -> dict:
    """summary.json's sections, in its order. A long run's columns leave memory between
    sections (`let_go`, sim.core.column_store)."""
    v = window_of(result)
    spec, table, scenario = v.spec, v.table, result.scenario
    requests = request_counts(table)
    latency = latencies(v)
    table.let_go()
    throughput = throughputs(v)
    makespan = makespan_section(table)
    slo = slo_section(spec.slo.targets, v.cols, v.measured, v.done, v.finished_in, latency, table, v.seconds)
    usage = busy_in_window(result, v.w0, v.w1)
    pool_index = pool_of_requests(result)
    fleet = fleet_figures(v, usage, pool_index)
    cost = fleet_cost(v, fleet, throughput, slo, usage[0])
    network = network_section(result, v.cols, v.done, v.w0, v.w1)
    table.let_go()
    usd = request_costs(table, pool_index, fleet.token_prices)
    tenants = tenants_section(spec, table, v.cols, v.measured, v.done, v.finished_in, usd, v.seconds)
    table.let_go()
    sessions = sessions_section(result, usd, pool_index, v.w0, spec.duration) if result.sessions is not None else None
    table.let_go()
    prefix_cache = prefix_cache_section(result, pool_index, v.done) if result.prefix_reusable is not None else None
    modalities = modalities_section(result, v.cols, v.measured, v.done, v.finished_in, v.seconds, usd, pool_index)
    table.let_go()
    failures = failures_section(result, v.cols, v.done, v.w0, v.w1)
    table.let_go()
    out = {
        "scenario": spec.name, "source": scenario.path, "seed": result.seed, "window_s": [v.w0, v.w1],
        "requests": requests, "measured_requests": int(v.measured.sum()), "latency_s": latency,
        "throughput": throughput, "makespan": makespan, "slo": slo, "tenants": tenants, "sessions": sessions,
        "prefix_cache": prefix_cache, "modalities": modalities, "failures": failures,
        "autoscaling": autoscaling_section(result, v.measured, pool_index, v.w0, v.w1),
        "pools": fleet.pools, "replicas": replica_figures(v, usage), "network": network,
        "power": power(v, fleet),
        "head_nodes": [h.summary(v.w0, v.w1) for h in result.head_nodes] or None,
        "cost": cost, "assumptions": assumptions(scenario),
        "run": {"simulated_seconds": result.end_time, "wall_seconds": result.wall_seconds,
                "events": result.events, "streams": result.stream_names},
    }
    out["steady_state"] = steady_state(table, v.w0, v.w1)
    table.let_go()
    out["intervals"] = intervals.section(result, out)
    table.let_go()
    # last, so the sections above keep their places (and a sweep table its first columns)
    out["provenance"] = provenance.record(scenario)
    return out


ENDS = (("completed", COMPLETED), ("rejected", REJECTED), ("shed", SHED), ("failed", FAILED),
        ("in_flight", IN_FLIGHT))


def request_counts(table) -> dict:
    """Every request that arrived is in exactly one of the ENDS; why those not completed ended."""
    state = table.state
    counts = {name: int(np.sum(state == code)) for name, code in ENDS}
    by_reason = {}
    for name, code in ENDS[1:4]:
        reasons = table.reason[state == code]
        by_reason[f"{name}_by_reason"] = {REASONS[int(c)]: int(np.sum(reasons == c)) for c in np.unique(reasons)}
    return {"arrived": int(table.n), **counts, **by_reason, "preemptions": int(table.preemptions.sum()),
            "retries": int(table.retries.sum())}


def latencies(v: Window) -> dict:
    table, done = v.table, v.done
    latency = {k: stats(v.cols[k][done]) for k in LATENCIES}
    # TTFT = waiting for admission + from admission to the first token (prefill, delivery)
    latency["ttft_service"] = stats((table.first_token - table.admitted)[done])
    # every gap between two tokens of a sequence after the warm-up, and each request's longest
    itl = [r.itl for r in v.result.replicas if r.itl is not None]
    latency["itl"] = histogram_stats(np.sum(itl, axis=0), itl_edges()) if itl else stats(np.zeros(0))
    latency["longest_stall"] = stats(v.cols["longest_stall"][done])
    return latency


def throughputs(v: Window) -> dict:
    return {
        "requests_per_s": float(v.finished_in.sum()) / v.seconds,
        "input_tokens_per_s": v.input_tokens / v.seconds,
        "output_tokens_per_s": v.output_tokens / v.seconds,
    }


def fleet_cost(v: Window, fleet, throughput: dict, slo: dict, busy: np.ndarray) -> dict:
    scenario, eco = v.result.scenario, v.spec.economics
    notes = fleet.cost_notes
    if scenario.pricing.name is None and scenario.pricing.missing:
        notes = [f"no pricing basis covers every device: {scenario.pricing.problem()}"]
    # the fleet's capacity, for a break-even price at a share of it (one more, saturated run)
    capacity, capacity_note = capacity_mod.measure(scenario) if eco.utilization is not None else (None, "")
    return cost_section(fleet.devices_usd, fleet.energy_usd, list(dict.fromkeys(notes)), scenario.pricing, throughput,
                        slo, fleet.weights, float(np.mean(busy / v.seconds)) if len(busy) else 0.0, eco, capacity,
                        capacity_note)


def replica_figures(v: Window, usage) -> list[dict]:
    busy, kv_seconds, host_seconds, _ = usage
    return [{"replica": r.index, "pool": r.pool, "devices": r.tp, "role": r.role,
             "busy_fraction": float(busy[r.index] / v.seconds),
             "accelerator_active": float((busy[r.index] - host_seconds[r.index]) / v.seconds),
             "kv_occupancy": float(kv_seconds[r.index] / (v.seconds * r.total_blocks)),
             "preemptions": r.preemptions, "weight_load_s": r.weight_load_s} for r in v.result.replicas]


def assumptions(scenario) -> list[str]:
    """What the run took without a measurement: the deployments' choices and catalog figures
    whose source says they are assumed."""
    out = sorted({a for p in scenario.pools for a in p.deployment.assumptions})
    for key in sorted({p.device_key for p in scenario.pools}):
        dev = next(p.deployment.device for p in scenario.pools if p.device_key == key)
        if dev.tdp is not None and dev.idle_power is None:
            out.append(f"{key}: idle power not in the catalog; taken as 20% of TDP")
        if dev.tdp is not None and (dev.node is None or dev.node.power is None):
            out.append(f"{key}: no server overhead power in the catalog; only accelerator power counted")
        # catalog figures taken from another device or reasoning, not measured on this one
        out += [f"{key}: {field} assumed, not measured on this device (its source in the device catalog says how)"
                for field, note in sorted(dev.sources.items()) if "assumed" in note.lower()]
        if dev.node is not None:     # the server's figures too
            out += [f"{key}: node.{field} assumed (its source in the device catalog says how)"
                    for field, note in sorted(dev.node.sources.items()) if "assumed" in note.lower()]
    return out
