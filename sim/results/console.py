"""A run's summary on the console (`dcsim run`): a printer per group of sections, in the order
they are printed, each a rich table or a line of text."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from ..spec.units import duration_or_dash, format_duration
from . import intervals
from .tables import (
    head_node_rows,
    head_nodes_busy,
    modalities_rows,
    or_dash,
    pipeline_step_rows,
    power_cap_rows,
    prefix_cache_rows,
    sessions_rows,
)


def make_console() -> Console:
    """A console that keeps tables whole when output goes to a file or pipe (rich assumes 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=180)


def _tenants_table(tenants: list[dict]) -> Table:
    """One row per tenant: its requests, latency, SLO and cost."""
    table = Table(title="tenants", title_justify="left")
    for col in ("tenant", "class", "requests", "turned away", "TTFT p99", "TPOT p99", "SLO", "attainment",
                "$/h", "$/M tok"):
        table.add_column(col, justify="left" if col == "tenant" else "right")
    for t in tenants:
        slo, lat = t["slo"], t["latency_s"]
        met = "-" if not slo.get("results") else ("met" if slo["met"] else "MISSED")
        att = slo.get("attainment")
        table.add_row(t["tenant"], ",".join(str(p) for p in t["priority"]), f"{t['measured_requests']:,}",
                      f"{t['turned_away']:,}", duration_or_dash(lat["ttft"]["p99"]),
                      duration_or_dash(lat["tpot"]["p99"]),
                      met, "-" if att is None else f"{att * 100:.1f}%", or_dash(t["usd_per_hour"], "{:,.2f}"),
                      or_dash(t["usd_per_m_tokens"], "{:.3f}"))
    return table


def _rich(title: str, headers: list[str], rows: list[list[str]], text_columns=("stream", "pool", "kind", "figures",
                                                                                "scope")) -> Table:
    """A (title, headers, rows) table of sim.results.tables as a rich table."""
    table = Table(title=title, title_justify="left")
    for col in headers:
        table.add_column(col, justify="left" if col in text_columns else "right")
    for r in rows:
        table.add_row(*r)
    return table


def print_summary(summary: dict, console: Console | None = None) -> None:
    """The run's summary, section by section (on a console made here if none is given)."""
    console = console or make_console()
    bounds = (summary.get("intervals") or {}).get("figures", {})
    _print_run_and_requests(summary, console)
    _print_latency(summary, bounds, console)
    _print_throughput_and_slo(summary, bounds, console)
    _print_demand_tables(summary, console)
    _print_pools(summary["pools"], console)
    _print_power(summary, bounds, console)
    _print_cost(summary["cost"], bounds, console)
    _print_autoscaling(summary.get("autoscaling") or [], console)
    _print_failures(summary.get("failures"), console)
    _print_caveats(summary, console)


def _print_run_and_requests(summary: dict, console: Console) -> None:
    """The run's name, seed, window and times; then where its requests went."""
    req = summary["requests"]
    w0, w1 = summary["window_s"]
    console.print(f"[bold]{summary['scenario']}[/bold]  seed {summary['seed']}  "
                  f"window {format_duration(w0)}-{format_duration(w1)}  "
                  f"simulated {format_duration(summary['run']['simulated_seconds'])} "
                  f"in {summary['run']['wall_seconds']:.2f}s wall")
    parts = [f"{req['completed']:,} completed"]
    for name in ("rejected", "shed", "failed"):
        why = ", ".join(f"{k} {v}" for k, v in req[f"{name}_by_reason"].items())
        parts.append(f"{req[name]:,} {name}" + (f" ({why})" if why else ""))
    parts.append(f"{req['in_flight']:,} in flight")
    retried = f", {req['retries']:,} retries" if req["retries"] else ""
    console.print(f"requests: {req['arrived']:,} arrived = {' + '.join(parts)}; "
                  f"{req['preemptions']:,} preemptions{retried}")


def _print_latency(summary: dict, bounds: dict, console: Console) -> None:
    """The latency table, each figure with its interval where it has one."""
    steady = summary.get("steady_state")
    lat = Table(title="latency (requests arriving in the window)"
                + ("" if not steady else f"; steady state: {'yes' if steady['steady'] else 'NO'}"),
                title_justify="left")
    lat.add_column("metric")
    for k in ("p50", "p90", "p99", "mean"):
        lat.add_column(k, justify="right")
    for metric, label in (("ttft", "time to first token"), ("queue_wait", "  of which queue wait"),
                          ("ttft_service", "  of which prefill and first token"), ("tpot", "time per output token"),
                          ("itl", "inter-token gap (every token)"), ("longest_stall", "longest gap per request"),
                          ("e2e", "end to end")):
        s = summary["latency_s"].get(metric)
        if s is None:
            continue
        lat.add_row(label, *(intervals.text(s[k], bounds.get(f"latency_s.{metric}.{k}"), duration_or_dash)
                             for k in ("p50", "p90", "p99", "mean")))
    console.print(lat)


def _print_throughput_and_slo(summary: dict, bounds: dict, console: Console) -> None:
    """Throughput, then the SLO's verdict where the scenario sets targets."""
    tp = summary["throughput"]
    rps = intervals.text(tp["requests_per_s"], bounds.get("throughput.requests_per_s"), "{:.2f}".format)
    otps = intervals.text(tp["output_tokens_per_s"], bounds.get("throughput.output_tokens_per_s"), "{:,.0f}".format)
    console.print(f"throughput: {rps} req/s, {tp['input_tokens_per_s']:,.0f} input tok/s, {otps} output tok/s")
    slo = summary["slo"]
    if slo.get("results"):
        parts = [f"{k} {duration_or_dash(r['value'])} / {duration_or_dash(r['target'])} "
                 f"{'ok' if r['met'] else 'MISSED'}" for k, r in slo["results"].items()]
        att = slo["attainment"]
        away = f"; {slo['turned_away']:,} requests rejected, shed or failed" if slo.get("turned_away") else ""
        console.print(f"SLO: {'met' if slo['met'] else 'NOT met'} ({'; '.join(parts)}{away}); "
                      f"attainment {or_dash(att * 100 if att is not None else None)}%, "
                      f"goodput {slo['goodput_requests_per_s']:.2f} req/s")


def _print_demand_tables(summary: dict, console: Console) -> None:
    """The tables a run has only when its demand calls for them: tenants, sessions and their
    pipeline steps, request kinds, the prefix cache."""
    if len(summary.get("tenants", [])) > 1:
        console.print(_tenants_table(summary["tenants"]))

    if summary.get("sessions"):
        console.print(_rich(*sessions_rows(summary["sessions"])))
        if any(st.get("steps") for st in summary["sessions"]["streams"]):
            console.print(_rich(*pipeline_step_rows(summary["sessions"]), text_columns=("stream", "step", "what")))

    if summary.get("modalities"):
        console.print(_rich(*modalities_rows(summary["modalities"])))

    if summary.get("prefix_cache"):
        console.print(_rich(*prefix_cache_rows(summary["prefix_cache"])))


def _print_pools(pool_list: list[dict], console: Console) -> None:
    """One row per pool, then each pool's engine and timing source."""
    pools = Table(title="pools", title_justify="left")
    gpus = all(p.get("device_kind", "gpu") == "gpu" for p in pool_list)
    for col in ("pool", "device x count", "model", "tp", "replicas", "busy", "GPU active" if gpus else "accel. active",
                "KV used", "preempt",
                "IT power"):
        pools.add_column(col, justify="left" if col in ("pool", "device x count", "model") else "right")
    for p in pool_list:
        pools.add_row(p["pool"], f"{p['device']} x {p['devices']}", f"{p['model']} {p['precision']}",
                      str(p["tp"]) + (f" x pp {p['pp']}" if p["pp"] > 1 else ""),
                      str(p["replicas"]), f"{p['busy_fraction'] * 100:.0f}%", f"{p['accelerator_active'] * 100:.0f}%",
                      f"{p['kv_occupancy'] * 100:.0f}%",
                      f"{p['preemptions']:,}", "-" if p["it_watts"] is None else f"{p['it_watts'] / 1000:.1f} kW")
    console.print(pools)
    for p in pool_list:
        console.print(f"{p['pool']}: engine {p.get('engine') or '-'}; timing: {p.get('timing') or '-'}")


def _print_power(summary: dict, bounds: dict, console: Console) -> None:
    """Power drawn, its notes, the power cap and the head nodes where they mattered."""
    pw = summary["power"]
    if pw["it_watts"] is not None:
        jpt = intervals.text(pw["joules_per_output_token"], bounds.get("power.joules_per_output_token"),
                             "{:.2f}".format)
        console.print(f"power: {pw['it_watts'] / 1000:.1f} kW IT, {pw['facility_watts'] / 1000:.1f} kW facility "
                      f"(PUE {pw['pue']}); {jpt} J per output token")
    for note in pw["notes"]:
        console.print(f"power: {note}")
    if pw.get("cap"):
        console.print(_rich(*power_cap_rows(pw["cap"])))
    if head_nodes_busy(summary.get("head_nodes")):
        console.print(_rich(*head_node_rows(summary["head_nodes"]), text_columns=("server",)))


def _print_cost(cost: dict, bounds: dict, console: Console) -> None:
    """Cost per hour and per million tokens, its pricing and notes."""
    if cost["usd_per_hour"] is not None:
        usd = "${:.3f}".format
        per_m = intervals.text(cost["usd_per_m_tokens"], bounds.get("cost.usd_per_m_tokens"), usd)
        per_m_out = intervals.text(cost["usd_per_m_output_tokens"], bounds.get("cost.usd_per_m_output_tokens"), usd)
        console.print(f"cost ({cost['pricing']}): ${cost['usd_per_hour']:,.2f}/h; "
                      f"{per_m} per M tokens, {per_m_out} per M output tokens")
    if cost.get("pricing_basis"):
        console.print(f"pricing: {cost['pricing_basis']}")
    for note in cost["notes"]:
        console.print(f"cost: {note}")


def _print_autoscaling(scalers: list[dict], console: Console) -> None:
    """A line per autoscaled pool, and one for its model swaps if it has them."""
    for a in scalers:
        wait = a["start_wait_s"]["p99"]
        console.print(f"autoscaling {a['pool']} ({a['policy']}, target {a['target']:g}): {a['replicas_min']}-"
                      f"{a['replicas_max']} replicas, mean {or_dash(a['replicas_mean'], '{:.2f}')}, "
                      f"{a['replica_hours']:,.1f} replica-hours; {a['cold_starts']} cold starts "
                      f"(p50 {duration_or_dash(a['cold_start_s']['p50'])}); {a['requests_waiting_for_start']:,} "
                      f"requests waited for one (p99 {duration_or_dash(wait)})")
        sw = a.get("swaps")
        if sw:
            console.print(f"  swapping with {', '.join(sw['with'])}: onto their devices {sw['swaps_in']} times "
                          f"({sw['direct']} claimed while held; p50 {duration_or_dash(sw['swap_s']['p50'])} until "
                          f"live, the drain p50 {duration_or_dash(sw['drain_s']['p50'])}), off them "
                          f"{sw['swaps_out']} times")


def _print_failures(f: dict | None, console: Console) -> None:
    """The failures' toll, then the first five events."""
    if f:
        console.print(f"failures: {len(f['events'])}; replica availability "
                      f"{or_dash(f['replica_availability'], '{:.1%}')}; {f['requests_retried']:,} requests retried, "
                      f"{f['requests_failed']:,} failed")
        shown = f["events"][:5]
        for e in shown:
            dip = ""
            if "goodput_min_rps" in e:
                dip = (f"; goodput {e['goodput_before_rps']:.1f} -> {or_dash(e['goodput_min_rps'], '{:.1f}')} req/s, "
                       f"TTFT p99 {duration_or_dash(e['ttft_p99_before_s'])} -> "
                       f"{duration_or_dash(e['ttft_p99_worst_s'])}, "
                       f"recovered after {duration_or_dash(e['recovery_s'])}")
            console.print(f"  {e['component']} {e['target']} at {duration_or_dash(e['time'])}: {e['replicas_down']} "
                          f"replicas down, {e['requests_lost']} requests lost{dip}")
        if len(f["events"]) > len(shown):
            console.print(f"  ... and {len(f['events']) - len(shown)} more "
                          "(every one in summary.json, failures.events)")


def _print_caveats(summary: dict, console: Console) -> None:
    """What to keep in mind reading the figures: steady state, the intervals' basis, assumptions."""
    steady = summary.get("steady_state")
    if steady and not steady["steady"]:
        console.print(f"[bold]not in steady state:[/bold] {steady['why']}; the figures describe a transient, not the "
                      f"load's long-run behaviour")
    iv = summary.get("intervals")
    if iv:
        console.print(f"interval: {iv['basis']}; throughput set by {iv['throughput_set_by']}")
    for a in summary["assumptions"]:
        console.print(f"[dim]assumed: {a}[/dim]")
