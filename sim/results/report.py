"""Results on screen and on disk.

A run's folder holds `summary.json` (every headline figure and the scenario it came from),
`scenario.yaml` (the fully resolved scenario), `requests.parquet` (one row per request) and
`devices.parquet` (per replica and time bin: busy fraction, KV occupancy, power).
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table

from . import intervals
from ..core import column_store
from ..core.column_store import in_chunks
from ..core.metrics import REASONS, STATE_NAMES
from ..demand.media import KINDS
from ..simulation import RunResult
from ..spec.units import duration_or_dash, format_duration
from .folder import staged
from .summary.money import request_costs
from .summary.usage import engine_watts, pool_of_requests, powered_share, unpowered_share


def requests_frame(result: RunResult, summary: dict | None = None, rows: slice = slice(None)) -> pd.DataFrame:
    """One row per request (of `rows`); with the run's summary, each completed request's cost
    too (its tokens at its pool's input and output prices)."""
    t = result.table
    cols = t.columns(rows)
    frame = pd.DataFrame(dict(cols))
    frame["state"] = pd.Categorical.from_codes(cols["state"], categories=list(STATE_NAMES.values()))
    frame["reason"] = _names(list(REASONS.values()), cols["reason"])
    frame["stream"] = _names(result.stream_names, cols["stream"])
    frame["pool"] = _names([r.pool for r in result.replicas] + [""], cols["replica"])   # -1: none
    spec = result.scenario.spec
    # the requests the summary's latency figures describe: arrived in [warmup, duration)
    frame["measured"] = (frame["arrival"] >= spec.warmup) & (frame["arrival"] < spec.duration)
    frame["tenant"] = _names([s.tenant or s.name for s in spec.workload], cols["stream"])
    frame["priority"] = t.priority[rows]
    if t.modality.any():   # requests beyond chat text (sim.demand.media)
        frame["modality"] = pd.Categorical.from_codes(t.modality[rows], categories=list(KINDS))
        frame["clip"] = t.clip[rows]
        frame["media_seconds"] = t.media_seconds[rows]
        frame["samples"] = t.samples[rows]
        frame["pixels"] = t.pixels[rows]
    if summary is not None:
        prices = np.array([[np.nan if p[k] is None else p[k] / 1e6 for k in
                            ("usd_per_m_input_tokens", "usd_per_m_output_tokens")] for p in summary["pools"]]
                          + [[np.nan, np.nan]])
        frame["usd"] = request_costs(t, pool_of_requests(result, rows), prices, rows)
    return frame


def _names(names: list[str], codes: np.ndarray) -> np.ndarray:
    """Each code's name (code -1 is the last name)."""
    return np.array(names, dtype=object)[codes]


def write_requests(result: RunResult, summary: dict, path: str) -> None:
    """requests.parquet; a table kept in scratch files goes out a row group at a time."""
    t = result.table
    if not t.store.spill:
        requests_frame(result, summary).to_parquet(path, index=False)
        return
    writer = None
    try:
        step = column_store.WRITE_ROWS
        for a in range(0, t.n, step):
            part = pa.Table.from_pandas(requests_frame(result, summary, slice(a, a + step)), preserve_index=False)
            writer = writer or pq.ParquetWriter(path, part.schema)
            writer.write_table(part)
            t.let_go()
    finally:
        if writer is not None:
            writer.close()


def devices_frame(result: RunResult, bins: int = 200) -> pd.DataFrame:
    """Per replica and time bin (`time` is the bin's start): busy fraction (share of the bin
    spent running iterations), GPU active fraction (busy minus the host's per-iteration work,
    while the devices wait), KV occupancy, tokens processed per second, power (its devices'
    draw from the active fraction and clock, plus their share of server overhead)."""
    end = max(result.end_time, result.scenario.spec.duration)
    width = max(end / bins, 1e-3)
    nbins = int(math.ceil(end / width))
    n = len(result.replicas)
    busy = np.zeros((n, nbins))
    kv = np.zeros((n, nbins))
    tokens = np.zeros((n, nbins))
    host = np.zeros((n, nbins))
    dyn = np.zeros((n, nbins))       # computing seconds weighted by clock^3
    for rep, s, e, blocks, tok, its, clock, wait in _stretches(result.log):
        host_share = min(its * wait / max(e - s, 1e-300), 1.0)
        b0, b1 = int(s // width), min(int(e // width), nbins - 1)
        for b in range(b0, b1 + 1):
            ov = min(e, (b + 1) * width) - max(s, b * width)
            if ov > 0:
                share = ov / (e - s)
                busy[rep, b] += ov
                kv[rep, b] += ov * blocks
                tokens[rep, b] += tok * share
                host[rep, b] += host_share * ov
                dyn[rep, b] += (1.0 - host_share) * ov * clock ** 3
    active = np.maximum(busy - host, 0.0) / width
    dyn /= width
    busy /= width
    drawing = _drawing_by_bin(result, nbins, width)
    rows = []
    pools = {p.name: p for p in result.scenario.pools}
    for info in result.replicas:
        dep = pools[info.pool].deployment
        u = np.clip(busy[info.index], 0.0, 1.0)
        a = np.clip(active[info.index], 0.0, 1.0)
        d = np.clip(dyn[info.index], 0.0, 1.0)
        watts = [engine_watts(dep.device, x, y, z, info.tp) for x, y, z in zip(d, a, drawing[info.index])]
        rows.append(pd.DataFrame({
            "time": np.arange(nbins) * width,
            "replica": info.index,
            "pool": info.pool,
            "busy_fraction": u,
            "gpu_active": a,
            "kv_occupancy": kv[info.index] / (width * info.total_blocks),
            "tokens_per_s": tokens[info.index] / width,
            # its devices' draw (clock^3-weighted while capped) plus their share of server
            # overhead, none while its server is down or its replica stopped
            "power_w": np.array([np.nan if w is None else w for w in watts]),
        }))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _stretches(log):
    """The busy log's rows as tuples, a chunk at a time."""
    for _, c in in_chunks(log.columns(), log.store):
        yield from zip(c["replica"].tolist(), c["start"].tolist(), c["end"].tolist(), c["kv_blocks"].tolist(),
                       c["tokens"].tolist(), c["iterations"].tolist(), c["clock"].tolist(), c["host_wait"].tolist())


def _drawing_by_bin(result: RunResult, nbins: int, width: float) -> np.ndarray:
    """Per engine and bin: the share of the bin its server had power and its replica ran."""
    out = np.ones((len(result.replicas), nbins))
    autoscaled = [p for p in result.scenario.pools if p.spec.autoscale is not None]
    if result.failures is None and not autoscaled:
        return out
    for pool in result.scenario.pools:
        idx = np.array([r.index for r in result.replicas if r.pool == pool.name])
        for b in range(nbins):
            w0 = b * width
            out[idx, b] = powered_share(result, pool, w0, w0 + width) * (1.0 - unpowered_share(result, idx, w0,
                                                                                                w0 + width))
    return out


def write_results(result: RunResult, summary: dict, out_dir: str, also=None) -> str:
    """Write the run's results folder whole (sim.results.folder): it replaces an earlier one
    only once every file, and the manifest after them, is written. `also(folder)` writes
    further files into it (a trace)."""
    with staged(out_dir) as folder:
        with open(os.path.join(folder, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2, default=_jsonable)
        with open(os.path.join(folder, "scenario.yaml"), "w") as fh:
            yaml.safe_dump(result.scenario.resolved_dict(), fh, sort_keys=False)
        write_requests(result, summary, os.path.join(folder, "requests.parquet"))
        devices_frame(result).to_parquet(os.path.join(folder, "devices.parquet"), index=False)
        if result.fabric is not None:
            result.fabric.link_frame().to_parquet(os.path.join(folder, "links.parquet"), index=False)
        if also is not None:
            also(folder)
    return out_dir


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    raise TypeError(f"not serializable: {type(x)}")


def _n(x, fmt="{:,.1f}"):
    return "-" if x is None else fmt.format(x)


def make_console() -> Console:
    """A console that keeps tables whole when output goes to a file or pipe (rich assumes 80 columns)."""
    return Console() if sys.stdout.isatty() else Console(width=180)


def _tenants_table(tenants: list[dict]) -> Table:
    table = Table(title="tenants", title_justify="left")
    for col in ("tenant", "class", "requests", "turned away", "TTFT p99", "TPOT p99", "SLO", "attainment",
                "$/h", "$/M tok"):
        table.add_column(col, justify="left" if col == "tenant" else "right")
    for t in tenants:
        slo, lat = t["slo"], t["latency_s"]
        met = "-" if not slo.get("results") else ("met" if slo["met"] else "MISSED")
        att = slo.get("attainment")
        table.add_row(t["tenant"], ",".join(str(p) for p in t["priority"]), f"{t['measured_requests']:,}",
                      f"{t['turned_away']:,}", duration_or_dash(lat["ttft"]["p99"]), duration_or_dash(lat["tpot"]["p99"]),
                      met, "-" if att is None else f"{att * 100:.1f}%", _n(t["usd_per_hour"], "{:,.2f}"),
                      _n(t["usd_per_m_tokens"], "{:.3f}"))
    return table


def sessions_rows(sessions: dict) -> tuple[str, list[str], list[list[str]]]:
    """(title, headers, rows) of the sessions table, for the console and the HTML report."""
    headers = ["stream", "started", "completed", "failed", "latency p50", "latency p99", "calls", "tokens",
               "PFLOP", "$ each"]
    rows = []
    for s in sessions["streams"]:
        lat = s["latency_s"]
        rows.append([s["stream"], f"{s['started']:,}", f"{s['completed']:,}", f"{s['failed']:,}",
                     duration_or_dash(lat["p50"]), duration_or_dash(lat["p99"]), _n(s["calls_per_session"]),
                     _n(s["tokens_per_session"], "{:,.0f}"), _n(s["pflop_per_session"], "{:.3g}"),
                     _n(s["usd_per_session"], "{:.4f}")])
    return "sessions (started in the window; latency from start to answer)", headers, rows


def pipeline_step_rows(sessions: dict) -> tuple[str, list[str], list[list[str]]]:
    """Each pipeline stream's steps and its answer's first token, each with its own latency."""
    headers = ["stream", "step", "what", "p50", "p90", "p99"]
    rows = []
    for s in sessions["streams"]:
        for step in s.get("steps") or []:
            lat = step["latency_s"]
            rows.append([s["stream"], str(step["step"]), step["what"],
                         *(duration_or_dash(lat[q]) for q in ("p50", "p90", "p99"))])
            if "of_which_before_answer_s" in step:
                before = step["of_which_before_answer_s"]
                rows.append([s["stream"], "", "  of which the steps before the answering call",
                             *(duration_or_dash(before[q]) for q in ("p50", "p90", "p99"))])
    return "pipeline steps (sessions started in the window and answered)", headers, rows


def prefix_cache_rows(pools: list[dict]) -> tuple[str, list[str], list[list[str]]]:
    headers = ["pool", "requests", "could reuse", "hits", "hit rate", "tokens cached", "prefill saved",
               "evicted blocks"]
    rows = []
    for p in pools:
        rate = p["hit_rate"]
        tok = p["token_hit_rate"]
        rows.append([p["pool"], f"{p['requests']:,}", f"{p['reusable_requests']:,}", f"{p['hits']:,}",
                     "-" if rate is None else f"{rate * 100:.1f}%",
                     f"{p['cached_tokens']:,}" + ("" if tok is None else f" ({tok * 100:.0f}%)"),
                     f"{format_duration(p['prefill_seconds_saved'])}, {p['prefill_pflop_saved']:.3g} PFLOP",
                     f"{p['evicted_blocks']:,}"])
    return "prefix cache (completed requests in the window)", headers, rows


def power_cap_rows(cap: dict) -> tuple[str, list[str], list[list[str]]]:
    headers = ["budget", "scope", "capped", "mean clock capped", "lowest clock", "peak drawn IT", "peak wanted IT"]
    kw = lambda w: "-" if w is None else f"{w / 1000:,.1f} kW"     # noqa: E731
    rows = [[kw(cap["budget_w"]), f"{cap['scope']} ({cap['scopes']})", f"{cap['capped_fraction'] * 100:.0f}%",
             _n(cap["mean_clock_when_capped"], "{:.0%}"), f"{cap['min_clock']:.0%}", kw(cap["peak_drawn_it_w"]),
             kw(cap["peak_wanted_it_w"])]]
    return "power cap (share of intervals the clock was lowered)", headers, rows


def head_nodes_busy(nodes: list[dict] | None) -> bool:
    """Whether any server's head node stretched host work or did more than run engine threads."""
    return bool(nodes) and any(n["host_stretch_max"] > 1.0 or n["cores_wanted_total"] > n["cores_wanted"]["engines"]
                               for n in nodes)


def head_node_rows(nodes: list[dict], most: int = 8) -> tuple[str, list[str], list[list[str]]]:
    """The servers whose host work stretched (the most stretched first), or all if none did."""
    stretched = sorted((n for n in nodes if n["host_stretch_max"] > 1.0), key=lambda n: -n["host_stretch_mean"])
    shown = (stretched or nodes)[:most]
    headers = ["server", "cores", "wanted", "engines", "front ends", "staging", "host work x", "peak x"]
    rows = [[n["server"], f"{n['cores']:,}", f"{n['cores_wanted_total']:.2f}", f"{n['cores_wanted']['engines']:.2f}",
             f"{n['cores_wanted']['frontend']:.2f}", f"{n['cores_wanted']['staging']:.2f}",
             f"{n['host_stretch_mean']:.2f}", f"{n['host_stretch_max']:.2f}"] for n in shown]
    more = len(stretched or nodes) - len(shown)
    title = "head nodes (CPU cores wanted on average; host work per iteration stretched by)"
    return title + (f", {more} more not shown" if more > 0 else ""), headers, rows


def _rich(title: str, headers: list[str], rows: list[list[str]], text_columns=("stream", "pool", "kind", "figures",
                                                                                "scope")) -> Table:
    table = Table(title=title, title_justify="left")
    for col in headers:
        table.add_column(col, justify="left" if col in text_columns else "right")
    for r in rows:
        table.add_row(*r)
    return table


def _stat_pair(s: dict, fmt=duration_or_dash) -> str:
    return f"{fmt(s['p50'])} / {fmt(s['p99'])}"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def modalities_rows(modalities: dict) -> tuple[str, list[str], list[list[str]]]:
    """One row per request kind beyond chat text, each with the figures that apply to it."""
    headers = ["kind", "requests", "completed", "latency", "queue wait", "figures"]
    rows = []
    for kind, f in modalities.items():
        requests, completed, latency = f["requests"], f["completed"], f["latency_s"]
        if kind == "embedding":
            figures = f"{f['tokens_per_s']:,.0f} tok/s; ${_n(f['usd_per_m_tokens'], '{:.3f}')} per M tokens"
        elif kind == "image":
            figures = (f"{_stat_pair(f['time_per_step_s'])} per step, {_n(f['steps_mean'], '{:.0f}')} steps; "
                       f"{f['images_per_s']:.3g} images/s; ${_n(f['usd_per_image'], '{:.4f}')} per image")
        elif kind == "video":
            figures = (f"{_stat_pair(f['time_per_step_s'])} per step, {_n(f['steps_mean'], '{:.0f}')} steps; "
                       f"{f['videos_per_s']:.3g} videos/s, {f['video_seconds_per_s']:.3g} video s/s; "
                       f"${_n(f['usd_per_video'], '{:.3f}')} per video")
        elif kind == "speech_to_text":
            requests, completed, latency = f["clips"], f["clips_completed"], f["clip_latency_s"]
            figures = (f"clips of {_n(f['windows_per_clip'], '{:.2f}')} windows; real-time factor "
                       f"{_stat_pair(f['real_time_factor'], _ratio)}; {f['audio_seconds_per_s']:,.1f} audio s/s; "
                       f"${_n(f['usd_per_audio_hour'], '{:.3f}')} per audio hour")
        else:   # text_to_speech
            figures = (f"first audio {_stat_pair(f['time_to_first_audio_s'])}; real-time factor "
                       f"{_stat_pair(f['real_time_factor'], _ratio)}; {f['audio_seconds_per_s']:,.1f} audio s/s; "
                       f"${_n(f['usd_per_audio_hour'], '{:.3f}')} per audio hour")
        label = kind + (" (clips)" if kind == "speech_to_text" else "")
        rows.append([label, f"{requests:,}", f"{completed:,}", _stat_pair(latency),
                     duration_or_dash(f["queue_wait_s"]["p99"]), figures])
    return "request kinds (arriving in the window; p50 / p99)", headers, rows


def print_summary(summary: dict, console: Console | None = None) -> None:
    console = console or make_console()
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

    bounds = (summary.get("intervals") or {}).get("figures", {})
    steady = summary.get("steady_state")
    lat = Table(title="latency (requests arriving in the window)"
                + ("" if not steady else f"; steady state: {'yes' if steady['steady'] else 'NO'}"), title_justify="left")
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

    tp = summary["throughput"]
    rps = intervals.text(tp["requests_per_s"], bounds.get("throughput.requests_per_s"), "{:.2f}".format)
    otps = intervals.text(tp["output_tokens_per_s"], bounds.get("throughput.output_tokens_per_s"), "{:,.0f}".format)
    console.print(f"throughput: {rps} req/s, {tp['input_tokens_per_s']:,.0f} input tok/s, {otps} output tok/s")
    slo = summary["slo"]
    if slo.get("results"):
        parts = [f"{k} {duration_or_dash(r['value'])} / {duration_or_dash(r['target'])} {'ok' if r['met'] else 'MISSED'}"
                 for k, r in slo["results"].items()]
        att = slo["attainment"]
        away = f"; {slo['turned_away']:,} requests rejected, shed or failed" if slo.get("turned_away") else ""
        console.print(f"SLO: {'met' if slo['met'] else 'NOT met'} ({'; '.join(parts)}{away}); "
                      f"attainment {_n(att * 100 if att is not None else None)}%, "
                      f"goodput {slo['goodput_requests_per_s']:.2f} req/s")

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

    pools = Table(title="pools", title_justify="left")
    gpus = all(p.get("device_kind", "gpu") == "gpu" for p in summary["pools"])
    for col in ("pool", "device x count", "model", "tp", "replicas", "busy", "GPU active" if gpus else "accel. active",
                "KV used", "preempt",
                "IT power"):
        pools.add_column(col, justify="left" if col in ("pool", "device x count", "model") else "right")
    for p in summary["pools"]:
        pools.add_row(p["pool"], f"{p['device']} x {p['devices']}", f"{p['model']} {p['precision']}",
                      str(p["tp"]) + (f" x pp {p['pp']}" if p["pp"] > 1 else ""),
                      str(p["replicas"]), f"{p['busy_fraction'] * 100:.0f}%", f"{p['accelerator_active'] * 100:.0f}%",
                      f"{p['kv_occupancy'] * 100:.0f}%",
                      f"{p['preemptions']:,}", "-" if p["it_watts"] is None else f"{p['it_watts'] / 1000:.1f} kW")
    console.print(pools)
    for p in summary["pools"]:
        console.print(f"{p['pool']}: engine {p.get('engine') or '-'}; timing: {p.get('timing') or '-'}")

    pw, cost = summary["power"], summary["cost"]
    if pw["it_watts"] is not None:
        jpt = intervals.text(pw["joules_per_output_token"], bounds.get("power.joules_per_output_token"), "{:.2f}".format)
        console.print(f"power: {pw['it_watts'] / 1000:.1f} kW IT, {pw['facility_watts'] / 1000:.1f} kW facility "
                      f"(PUE {pw['pue']}); {jpt} J per output token")
    for note in pw["notes"]:
        console.print(f"power: {note}")
    if pw.get("cap"):
        console.print(_rich(*power_cap_rows(pw["cap"])))
    if head_nodes_busy(summary.get("head_nodes")):
        console.print(_rich(*head_node_rows(summary["head_nodes"]), text_columns=("server",)))
    if cost["usd_per_hour"] is not None:
        usd = "${:.3f}".format
        console.print(f"cost ({cost['pricing']}): ${cost['usd_per_hour']:,.2f}/h; "
                      f"{intervals.text(cost['usd_per_m_tokens'], bounds.get('cost.usd_per_m_tokens'), usd)} per M tokens, "
                      f"{intervals.text(cost['usd_per_m_output_tokens'], bounds.get('cost.usd_per_m_output_tokens'), usd)}"
                      f" per M output tokens")
    if cost.get("pricing_basis"):
        console.print(f"pricing: {cost['pricing_basis']}")
    for note in cost["notes"]:
        console.print(f"cost: {note}")
    for a in summary.get("autoscaling") or []:
        wait = a["start_wait_s"]["p99"]
        console.print(f"autoscaling {a['pool']} ({a['policy']}, target {a['target']:g}): {a['replicas_min']}-"
                      f"{a['replicas_max']} replicas, mean {_n(a['replicas_mean'], '{:.2f}')}, "
                      f"{a['replica_hours']:,.1f} replica-hours; {a['cold_starts']} cold starts "
                      f"(p50 {duration_or_dash(a['cold_start_s']['p50'])}); {a['requests_waiting_for_start']:,} "
                      f"requests waited for one (p99 {duration_or_dash(wait)})")
        sw = a.get("swaps")
        if sw:
            console.print(f"  swapping with {', '.join(sw['with'])}: onto their devices {sw['swaps_in']} times "
                          f"({sw['direct']} claimed while held; p50 {duration_or_dash(sw['swap_s']['p50'])} until "
                          f"live, the drain p50 {duration_or_dash(sw['drain_s']['p50'])}), off them "
                          f"{sw['swaps_out']} times")
    f = summary.get("failures")
    if f:
        console.print(f"failures: {len(f['events'])}; replica availability "
                      f"{_n(f['replica_availability'], '{:.1%}')}; {f['requests_retried']:,} requests retried, "
                      f"{f['requests_failed']:,} failed")
        shown = f["events"][:5]
        for e in shown:
            dip = ""
            if "goodput_min_rps" in e:
                dip = (f"; goodput {e['goodput_before_rps']:.1f} -> {_n(e['goodput_min_rps'], '{:.1f}')} req/s, "
                       f"TTFT p99 {duration_or_dash(e['ttft_p99_before_s'])} -> {duration_or_dash(e['ttft_p99_worst_s'])}"
                       f", recovered after {duration_or_dash(e['recovery_s'])}")
            console.print(f"  {e['component']} {e['target']} at {duration_or_dash(e['time'])}: {e['replicas_down']} "
                          f"replicas down, {e['requests_lost']} requests lost{dip}")
        if len(f["events"]) > len(shown):
            console.print(f"  ... and {len(f['events']) - len(shown)} more (every one in summary.json, failures.events)")
    steady = summary.get("steady_state")
    if steady and not steady["steady"]:
        console.print(f"[bold]not in steady state:[/bold] {steady['why']}; the figures describe a transient, not the "
                      f"load's long-run behaviour")
    iv = summary.get("intervals")
    if iv:
        console.print(f"interval: {iv['basis']}; throughput set by {iv['throughput_set_by']}")
    for a in summary["assumptions"]:
        console.print(f"[dim]assumed: {a}[/dim]")
