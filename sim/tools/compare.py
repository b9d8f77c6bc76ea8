"""Several fleets on one workload: `dcsim compare A.yaml B.yaml ...`.

Each file contributes its base scenario and each of its `variants:`. All of them run on the
workload, duration, warm-up, drain, SLO, seed and economics of the first one, so the rows
differ only in the fleet (and whatever else a variant changes), and every fleet is priced on
one basis (`sim.catalog.economics.basis`). The table lists per fleet: devices, latency
percentiles, throughput, goodput, power, cost per million tokens, and whether the SLO held,
each figure with its 90 % interval (`sim.results.intervals`); a verdict whose target lies inside its
figure's interval, and a cheapest fleet whose lead is inside the error, are flagged. A plot
puts cost per million tokens against p99 time to first token, with the intervals as bars.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..catalog import economics
from ..results.provenance import timing_text
from ..scenario import Scenario, scenario_from_source
from ..spec import source

SHARED = ("workload", "duration", "warmup", "drain", "slo", "seed", "economics")


@dataclass
class Entry:
    path: str
    variant: str | None


def entries(paths: list[str]) -> list[Entry]:
    """Each file's base scenario, then each of its variants."""
    out = []
    for path in paths:
        out.append(Entry(path, None))
        out.extend(Entry(path, v) for v in source.load(path).variants())
    return out


def load_entries(items: list[Entry], overrides=()) -> list[Scenario]:
    """The scenarios, each given the first one's workload, window, SLO and seed."""
    scenarios = []
    reference = None
    for e in items:
        src = source.load(e.path)
        src.select_variant(e.variant)
        for assignment in overrides:
            src.override(assignment)
        if reference is None:
            reference = src
        else:
            for key in SHARED:
                for p in [p for p in src.locs if p[:1] == (key,)]:
                    del src.locs[p]
                src.data.pop(key, None)
                if key in reference.data:
                    src.data[key] = reference.data[key]
                    src.locs.update({p: loc for p, loc in reference.locs.items() if p[:1] == (key,)})
        scenarios.append(scenario_from_source(src, (), e.path))
    one_basis(scenarios, reference)
    return scenarios


def one_basis(scenarios: list[Scenario], reference) -> None:
    """Every fleet priced on one basis: the first scenario's, or with `auto` the one that
    prices every device of every fleet. A device without that price is an error naming it."""
    devices = {}
    for sc in scenarios:
        for p in sc.pools:
            devices.setdefault(p.device_key, p.deployment.device)
    chosen = economics.one_basis(devices, scenarios[0].spec.economics.pricing,
                                 reference.loc_of(("economics", "pricing")), "a comparison prices every fleet alike")
    for sc in scenarios:
        sc.pricing = chosen


def row(summary: dict) -> dict:
    """One fleet's line of the comparison."""
    lat = summary["latency_s"]
    tp = summary["throughput"]
    slo = summary["slo"]
    pools = "; ".join(f"{p['devices']} x {p['device']} ({p['model']} {p['precision']} tp{p['tp']}"
                      + (f" pp{p['pp']}" if p["pp"] > 1 else "")
                      + (f", on {p['shares_devices_with']}'s devices" if p.get("shares_devices_with") else "")
                      + (f", swapping {p['swaps_devices_with']}'s devices" if p.get("swaps_devices_with") else "")
                      + ")" for p in summary["pools"])
    power = summary["power"]
    bounds = (summary.get("intervals") or {}).get("figures", {})

    def band(key):
        b = bounds.get(key)
        return (None, None) if b is None else tuple(b)
    ttft_lo, ttft_hi = band("latency_s.ttft.p99")
    tpot_lo, tpot_hi = band("latency_s.tpot.p99")
    usd_lo, usd_hi = band("cost.usd_per_m_tokens")
    return {
        "scenario": summary["scenario"],
        "fleet": pools,
        "devices": sum(p["devices"] for p in summary["pools"]
                       if not p.get("shares_devices_with") and not p.get("swaps_devices_with")),
        "ttft_p50_s": lat["ttft"]["p50"], "ttft_p99_s": lat["ttft"]["p99"],
        "tpot_p50_s": lat["tpot"]["p50"], "tpot_p99_s": lat["tpot"]["p99"],
        "tokens_per_s": tp["input_tokens_per_s"] + tp["output_tokens_per_s"],
        "output_tokens_per_s": tp["output_tokens_per_s"],
        "goodput_tokens_per_s": slo.get("goodput_tokens_per_s"),
        "facility_kw": None if power["facility_watts"] is None else power["facility_watts"] / 1000,
        "joules_per_output_token": power.get("joules_per_output_token"),
        "pricing": summary["cost"]["pricing"],
        "pricing_basis": summary["cost"].get("pricing_basis"),
        "usd_per_hour": summary["cost"]["usd_per_hour"],
        "usd_per_m_tokens": summary["cost"]["usd_per_m_tokens"],
        "usd_per_m_tokens_at_slo": summary["cost"]["usd_per_m_tokens_at_slo"],
        "slo_met": slo.get("met"),
        "slo_within_error": within_error(summary),
        "ttft_p99_lo_s": ttft_lo, "ttft_p99_hi_s": ttft_hi, "tpot_p99_lo_s": tpot_lo, "tpot_p99_hi_s": tpot_hi,
        "usd_per_m_tokens_lo": usd_lo, "usd_per_m_tokens_hi": usd_hi,
        "interval": (summary.get("intervals") or {}).get("basis"),
        "completed": summary["requests"]["completed"],
        "rejected": summary["requests"]["rejected"],
        "timing": timing_text(summary),
        "dcsim_version": summary["provenance"]["dcsim_version"],
        "catalog_sha256": summary["provenance"]["catalog_sha256"],
    }


def within_error(summary: dict) -> bool | None:
    """Whether an SLO target lies inside its figure's interval: the verdict could go either way
    on a real system (None without SLO targets)."""
    results = (summary.get("slo") or {}).get("results") or {}
    bounds = (summary.get("intervals") or {}).get("figures", {})
    if not results:
        return None
    for key, r in results.items():
        metric, _, stat = key.rpartition("_")
        b = bounds.get(f"latency_s.{metric}.{stat}")
        if b is not None and r.get("target") is not None and b[0] <= r["target"] <= b[1]:
            return True
    return False


def cheapest(rows: list[dict]) -> tuple[dict | None, list[dict]]:
    """The fleet meeting the SLO at the lowest cost per token, and the others that meet it
    whose cost interval reaches below the cheapest's upper bound (the ranking is inside the error)."""
    ok = [r for r in rows if r["slo_met"] is not False and r["usd_per_m_tokens"] is not None]
    if not ok:
        return None, []
    best = min(ok, key=lambda r: r["usd_per_m_tokens"])
    top = best["usd_per_m_tokens_hi"] if best["usd_per_m_tokens_hi"] is not None else best["usd_per_m_tokens"]
    close = [r for r in ok if r is not best
             and (r["usd_per_m_tokens_lo"] if r["usd_per_m_tokens_lo"] is not None else r["usd_per_m_tokens"]) <= top]
    return best, close


def write(rows: list[dict], out_dir: str) -> list[str]:
    """compare.json, compare.csv and cost_vs_ttft_p99.png in out_dir."""
    import pandas as pd
    from matplotlib.figure import Figure

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "compare.json"), "w") as fh:
        json.dump(rows, fh, indent=2)
    pd.DataFrame(rows).to_csv(os.path.join(out_dir, "compare.csv"), index=False)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for r in rows:
        if r["usd_per_m_tokens"] is None or r["ttft_p99_s"] is None:
            continue
        err = None
        if r["ttft_p99_lo_s"] is not None and r["usd_per_m_tokens_lo"] is not None:
            err = ([[r["ttft_p99_s"] - r["ttft_p99_lo_s"]], [r["ttft_p99_hi_s"] - r["ttft_p99_s"]]],
                   [[r["usd_per_m_tokens"] - r["usd_per_m_tokens_lo"]],
                    [r["usd_per_m_tokens_hi"] - r["usd_per_m_tokens"]]])
        if err is not None:
            ax.errorbar(r["ttft_p99_s"], r["usd_per_m_tokens"], xerr=err[0], yerr=err[1], fmt="none",
                        ecolor="0.6", elinewidth=0.8, capsize=2)
        ax.scatter(r["ttft_p99_s"], r["usd_per_m_tokens"], marker="o" if r["slo_met"] is not False else "x")
        ax.annotate(r["scenario"], (r["ttft_p99_s"], r["usd_per_m_tokens"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    ax.set_xlabel("p99 time to first token (s)")
    ax.set_ylabel("cost per million tokens ($)")
    ax.set_title("cost against tail latency (x: SLO missed; bars: 90% intervals)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = os.path.join(out_dir, "cost_vs_ttft_p99.png")
    fig.savefig(png, dpi=120)
    return [os.path.join(out_dir, "compare.json"), os.path.join(out_dir, "compare.csv"), png]
