"""`dcsim report`: one HTML page of a run's or a sweep's results that opens anywhere.

The page is self-contained so that it can be mailed or archived with the results: plots are
PNGs inside the page as base64 data URIs, the style sheet is inline, and there are no
scripts, web fonts or links to fetch. Every piece of text from the results is escaped.
"""
from __future__ import annotations

import os

import pandas as pd

from ..spec.units import duration_or_dash, format_bytes
from . import analysis, intervals, provenance, sweep_analysis, tables
from .analysis import ResultsError, Run
from .html_blocks import Raw, cards, escape, figure, html_page, html_table, number, verdict

# the figures a sweep's table and plots show, in order: column, heading, format
SWEEP_FIGURES = [
    ("latency_s.ttft.p99", "TTFT p99", "duration"),
    ("latency_s.tpot.p99", "TPOT p99", "duration"),
    ("latency_s.e2e.p99", "E2E p99", "duration"),
    ("throughput.requests_per_s", "req/s", "{:,.2f}"),
    ("throughput.output_tokens_per_s", "output tok/s", "{:,.0f}"),
    ("slo.attainment", "SLO attainment", "percent"),
    ("cost.usd_per_hour", "$/h", "{:,.2f}"),
    ("cost.usd_per_m_tokens", "$/M tokens", "{:.3f}"),
    ("power.facility_watts", "facility kW", "kW"),
]


# ---- a run -----------------------------------------------------------------------------


def run_page(run: Run) -> str:
    """The page of one run: fleet, summary, plots, and the sections its summary has."""
    s = run.summary
    w = s.get("window_s") or [None, None]
    info = s.get("run") or {}
    meta = [f"seed {s.get('seed', '-')}", f"measurement window {duration_or_dash(w[0])} to {duration_or_dash(w[1])}",
            f"simulated {duration_or_dash(info.get('simulated_seconds'))} in {number(info.get('wall_seconds'))} s wall"]
    if s.get("source"):
        meta.append(f"scenario file {s['source']}")
    body = [f"<h1>{escape(run.name)}</h1>", f'<p class=meta>{escape("; ".join(meta))}</p>',
            _headline(s), "<h2>Fleet</h2>", _pools(s.get("pools") or []),
            "<h2>Requests</h2>", _requests(s.get("requests") or {}, s.get("measured_requests")),
            "<h2>Latency</h2>", _latency(s.get("latency_s") or {}, _bounds(s)), _interval_note(s),
            figure(lambda ax: analysis.latency_cdf(run, ax=ax), alt="latency distributions"),
            "<h2>Throughput</h2>", _throughput(s), "<h2>SLO</h2>", _slo(s.get("slo") or {})]
    tenants = s.get("tenants") or []
    if tenants:
        body += ["<h2>Tenants</h2>", _tenants(tenants)]
    # the sections a run has only when its scenario uses the feature
    for key, heading, rows in (("modalities", "Request kinds", tables.modalities_rows),
                               ("sessions", "Sessions", tables.sessions_rows),
                               ("prefix_cache", "Prefix cache", tables.prefix_cache_rows)):
        if s.get(key):
            body += [f"<h2>{heading}</h2>", _rows(*rows(s[key]))]
    if s.get("sessions") and any(st.get("steps") for st in s["sessions"]["streams"]):
        body += ["<h2>Pipeline steps</h2>", _rows(*tables.pipeline_step_rows(s["sessions"]))]
    body += ["<h2>Utilization and power</h2>",
             figure(lambda ax: analysis.utilization_over_time(run, ax=ax), alt="utilization over time"),
             figure(lambda ax: analysis.power_over_time(run, ax=ax), (9.0, 3.4), alt="power over time"),
             _power(s.get("power") or {})]
    if (s.get("power") or {}).get("cap"):
        body += ["<h2>Power cap</h2>", _rows(*tables.power_cap_rows(s["power"]["cap"]))]
    if tables.head_nodes_busy(s.get("head_nodes")):
        body += ["<h2>Head nodes</h2>", _rows(*tables.head_node_rows(s["head_nodes"]))]
    body += ["<h2>Cost</h2>", _cost(s.get("cost") or {}),
             figure(lambda ax: analysis.cost_breakdown(run, ax=ax), (8.0, 2.0), alt="cost breakdown")]
    if s.get("autoscaling"):
        body += ["<h2>Autoscaling</h2>", _autoscaling(s["autoscaling"]),
                 figure(lambda ax: analysis.autoscaling_timeline(run, ax=ax), (9.0, 3.0), alt="replicas over time")]
    if s.get("failures"):
        body += ["<h2>Failures</h2>", _failures(s["failures"])]
    if run.links is not None and not run.links.empty:
        body += ["<h2>Network</h2>", _network(s.get("network") or {}), _link_heatmap(run),
                 figure(lambda ax: analysis.link_utilization_over_time(run, ax=ax),
                         (9.0, 1.2 + 0.22 * min(30, run.links[["src", "dst"]].drop_duplicates().shape[0])),
                         alt="link utilization over time")]
    notes = list(s.get("assumptions") or [])
    for part in ("power", "cost"):
        notes += [f"{part}: {n}" for n in (s.get(part) or {}).get("notes") or []]
    if notes:
        body += ["<h2>Assumptions and notes</h2>", "<ul class=notes>" + "".join(f"<li>{escape(n)}</li>" for n in notes)
                 + "</ul>"]
    body.append(_footer(provenance.text(s.get("provenance"))))
    return html_page(f"dcsim report: {run.name}", body)


def _footer(line: str) -> str:
    """Which dcsim, catalog and timing sources made the results: a page read apart from its
    folder still says what produced its figures."""
    return f"<footer><p class=meta>{escape(line)}</p></footer>"


def _bounds(s: dict) -> dict:
    return (s.get("intervals") or {}).get("figures") or {}


def _rows(title: str, headers: list[str], rows: list[list[str]]) -> str:
    """A table the console prints too (one of sim.results.tables' *_rows), with its title."""
    return f"<p class=meta>{escape(title)}</p>" + html_table(headers, rows)


def _headline(s: dict) -> str:
    lat, tp, cost, slo = s.get("latency_s") or {}, s.get("throughput") or {}, s.get("cost") or {}, s.get("slo") or {}
    b = _bounds(s)
    items = [("TTFT p99", intervals.text((lat.get("ttft") or {}).get("p99"), b.get("latency_s.ttft.p99"),
                                         duration_or_dash)),
             ("TPOT p99", intervals.text((lat.get("tpot") or {}).get("p99"), b.get("latency_s.tpot.p99"),
                                         duration_or_dash)),
             ("requests per second", intervals.text(tp.get("requests_per_s"), b.get("throughput.requests_per_s"),
                                                    lambda v: number(v))),
             ("output tokens per second", intervals.text(tp.get("output_tokens_per_s"),
                                                         b.get("throughput.output_tokens_per_s"),
                                                         lambda v: number(v, "{:,.0f}"))),
             ("$ per hour", number(cost.get("usd_per_hour"))),
             ("$ per M tokens", intervals.text(cost.get("usd_per_m_tokens"), b.get("cost.usd_per_m_tokens"),
                                               lambda v: number(v, "{:.3f}")))]
    if slo.get("results"):
        items.append(("SLO", "met" if slo.get("met") else "missed"))
    return cards(items)


def _pools(pools: list[dict]) -> str:
    rows = [[p.get("pool"), p.get("device"), p.get("devices"), f"{p.get('model')} {p.get('precision', '')}".strip(),
             f"{p.get('tp')}" + (f" x pp {p['pp']}" if (p.get("pp") or 1) > 1 else ""), p.get("replicas"),
             number(p.get("busy_fraction"), "percent"), number(p.get("accelerator_active"), "percent"),
             number(p.get("kv_occupancy"), "percent"), number(p.get("it_watts"), "kW"), number(p.get("usd_per_hour"))]
            for p in pools]
    gpus = all(p.get("device_kind", "gpu") == "gpu" for p in pools)
    table = html_table(["pool", "device", "count", "model", "tp", "replicas", "busy",
                        "GPU active" if gpus else "accel. active", "KV used", "IT kW", "devices $/h"],
                       rows, text_columns=2)
    sources = [f"{p.get('pool')}: engine {p.get('engine') or '-'}; timing: {p.get('timing') or '-'}" for p in pools]
    return table + "".join(f"<p class=meta>{escape(line)}</p>" for line in sources)


def _requests(r: dict, measured) -> str:
    names = ("arrived", "completed", "rejected", "shed", "failed", "in_flight", "preemptions", "retries")
    table = html_table([n.replace("_", " ") for n in names], [[f"{r.get(n, 0):,}" for n in names]], text_columns=0)
    why = [f"{name} {k}: {v:,}" for name in ("rejected", "shed", "failed")
           for k, v in (r.get(f"{name}_by_reason") or {}).items()]
    note = f"{measured:,} arrived in the measurement window; latency figures describe those completed." \
        if measured is not None else ""
    return (table + (f"<p>{escape('; '.join(why))}</p>" if why else "")
            + (f"<p class=meta>{escape(note)}</p>" if note else ""))


def _latency(lat: dict, bounds: dict | None = None) -> str:
    bounds = bounds or {}
    rows = [[label] + [intervals.text((lat.get(m) or {}).get(q), bounds.get(f"latency_s.{m}.{q}"), duration_or_dash)
                       for q in ("p50", "p90", "p99", "mean")]
            for m, label in analysis.LATENCY_LABELS.items()]
    return html_table(["metric", "p50", "p90", "p99", "mean"], rows)


def _interval_note(s: dict) -> str:
    iv = s.get("intervals")
    if not iv:
        return ""
    return (f"<p class=meta>{escape('(in brackets) ' + iv['basis'] + '; throughput set by ' + iv['throughput_set_by'])}"
            f"</p>")


def _throughput(s: dict) -> str:
    tp, mk = s.get("throughput") or {}, s.get("makespan") or {}
    rows = [["measurement window", number(tp.get("requests_per_s")), number(tp.get("input_tokens_per_s"), "{:,.0f}"),
             number(tp.get("output_tokens_per_s"), "{:,.0f}")],
            ["makespan (first arrival to last completion)", number(mk.get("requests_per_s")), "-",
             number(mk.get("output_tokens_per_s"), "{:,.0f}")]]
    return html_table(["over", "requests/s", "input tokens/s", "output tokens/s"], rows)


def _slo(slo: dict) -> str:
    results = slo.get("results") or {}
    if not results:
        return "<p>No SLO targets in the scenario.</p>"
    rows = [[k, duration_or_dash(r.get("target")), duration_or_dash(r.get("value")), verdict(r.get("met"))]
            for k, r in results.items()]
    away = slo.get("turned_away") or 0
    line = (f"SLO {'met' if slo.get('met') else 'missed'}: attainment {number(slo.get('attainment'), 'percent')} "
            f"of requests within every target; goodput {number(slo.get('goodput_requests_per_s'))} requests/s, "
            f"{number(slo.get('goodput_tokens_per_s'), '{:,.0f}')} tokens/s"
            + (f"; {away:,} requests rejected, shed or failed" if away else ""))
    return html_table(["target", "limit", "value", "verdict"], rows) + f"<p>{escape(line)}</p>"


def _tenants(tenants: list[dict]) -> str:
    rows = []
    for t in tenants:
        lat, slo = t.get("latency_s") or {}, t.get("slo") or {}
        rows.append([t.get("tenant"), ",".join(str(p) for p in t.get("priority") or []),
                     f"{t.get('measured_requests', 0):,}", f"{t.get('turned_away', 0):,}",
                     duration_or_dash((lat.get("ttft") or {}).get("p99")),
                     duration_or_dash((lat.get("tpot") or {}).get("p99")),
                     verdict(slo.get("met")) if slo.get("results") else "-", number(slo.get("attainment"), "percent"),
                     number(t.get("usd_per_hour")), number(t.get("usd_per_m_tokens"), "{:.3f}")])
    return html_table(["tenant", "class", "requests", "turned away", "TTFT p99", "TPOT p99", "SLO", "attainment", "$/h",
                   "$/M tokens"], rows)


def _power(p: dict) -> str:
    if p.get("it_watts") is None:
        return ""
    line = (f"In the window: {number(p['it_watts'], 'kW')} kW IT, {number(p.get('facility_watts'), 'kW')} kW facility "
            f"(PUE {p.get('pue')}); {number(p.get('energy_kwh'), '{:,.2f}')} kWh; "
            f"{number(p.get('joules_per_output_token'))} J per output token")
    cap = p.get("cap")
    if cap:
        line += (f". Power cap held in {number(cap.get('capped_fraction'), 'percent')} of intervals, mean clock "
                 f"{number(cap.get('mean_clock_when_capped'))} while capped")
    return f"<p>{escape(line)}</p>"


def _cost(c: dict) -> str:
    if c.get("usd_per_hour") is None:
        return "<p>No cost: the catalog has no price for a device.</p>"
    rows = [["devices", number(c.get("devices_usd_per_hour"))], ["energy", number(c.get("energy_usd_per_hour"))],
            ["total", number(c.get("usd_per_hour"))]]
    per = [["all tokens", number(c.get("usd_per_m_tokens"), "{:.4f}")],
           ["output tokens", number(c.get("usd_per_m_output_tokens"), "{:.4f}")],
           ["input tokens (split by accelerator time)", number(c.get("usd_per_m_input_tokens_split"), "{:.4f}")],
           ["output tokens (split by accelerator time)", number(c.get("usd_per_m_output_tokens_split"), "{:.4f}")],
           ["tokens of goodput (at the SLO)", number(c.get("usd_per_m_tokens_at_slo"), "{:.4f}")]]
    return (f"<p>Pricing: {escape(c.get('pricing_basis') or c.get('pricing'))}; "
            f"${escape(number(c.get('usd_per_day'), '{:,.0f}'))} per day.</p>"
            '<div class="figures">' + html_table(["$ per hour", ""], rows) + html_table(["$ per million", ""], per)
            + "</div>")


def _autoscaling(scalers: list[dict]) -> str:
    rows = [[a.get("pool"), a.get("policy"), number(a.get("target"), "{:g}"),
             f"{a.get('replicas_min')}-{a.get('replicas_max')}", number(a.get("replicas_mean")),
             number(a.get("replica_hours"), "{:,.1f}"), a.get("cold_starts"),
             duration_or_dash((a.get("cold_start_s") or {}).get("p50")), f"{a.get('requests_waiting_for_start', 0):,}",
             duration_or_dash((a.get("start_wait_s") or {}).get("p99"))] for a in scalers]
    return html_table(["pool", "policy", "target", "replicas", "mean", "replica-hours", "cold starts", "cold start p50",
                   "requests waited", "wait p99"], rows, text_columns=2)


def _failures(f: dict) -> str:
    head = (f"Replica availability {number(f.get('replica_availability'), 'percent')}; "
            f"{f.get('requests_retried', 0):,} requests retried, {f.get('requests_failed', 0):,} failed; "
            f"E2E p99 of retried requests {duration_or_dash((f.get('retried_e2e_s') or {}).get('p99'))} against "
            f"{duration_or_dash((f.get('others_e2e_s') or {}).get('p99'))} for the rest.")
    rows = [[duration_or_dash(e.get("time")), e.get("component"), e.get("target"), e.get("replicas_down"),
             e.get("requests_lost"),
             duration_or_dash(e["repaired"]) if isinstance(e.get("repaired"), (int, float)) else "-",
             f"{number(e.get('goodput_before_rps'), '{:.1f}')} -> {number(e.get('goodput_min_rps'), '{:.1f}')}",
             f"{duration_or_dash(e.get('ttft_p99_before_s'))} -> {duration_or_dash(e.get('ttft_p99_worst_s'))}",
             duration_or_dash(e.get("recovery_s"))] for e in f.get("events") or []]
    columns = ["at", "component", "target", "replicas down", "requests lost", "repaired", "goodput req/s", "TTFT p99",
               "recovered after"]
    return f"<p>{escape(head)}</p>" + html_table(columns, rows, text_columns=3)


def _network(n: dict) -> str:
    if not n:
        return ""
    items = [("flows", f"{n.get('flows', 0):,}"), ("bytes", format_bytes(n.get("bytes") or 0.0)),
             ("busiest link utilization", number(n.get("max_link_utilization"), "percent"))]
    if n.get("busiest_link"):
        items.append(("busiest link", str(n["busiest_link"])))
    if n.get("kv_transfers"):
        items.append(("KV transfers", f"{n['kv_transfers']:,}"))
    return cards(items)


def _link_heatmap(run: Run) -> str:
    try:
        return figure(lambda ax: analysis.link_heatmap(run, ax=ax), (11.0, 6.0), alt="link utilization on the topology")
    except (ResultsError, ValueError) as exc:   # no topology in the scenario, or one that no longer builds
        return f"<p class=meta>{escape(f'topology not drawn: {exc}')}</p>"


# ---- a sweep ---------------------------------------------------------------------------


def sweep_page(df: pd.DataFrame, name: str | None = None) -> str:
    """The page of a sweep: its table and the comparison plots."""
    meta = df.attrs.get("sweep") or {}
    axes = list(df.attrs.get("axes") or [])
    name = meta.get("name") or name or "sweep"
    ok = df["status"] == "ok" if "status" in df else pd.Series(True, index=df.index)
    axes_text = "; ".join(f"{a.get('name')} ({a.get('path')}): {', '.join(str(v) for v in a.get('values') or [])}"
                          for a in meta.get("axes") or [] if isinstance(a, dict))
    # counted from the table: what it holds, whatever the sweep set out to run
    points = df.groupby(axes, dropna=False).ngroups if axes else df["point"].nunique() if "point" in df else len(df)
    seeds = df["seed"].nunique() if "seed" in df else 1
    line = (f"{meta.get('mode', '-')} sweep of {meta.get('base', '-')}; {points} points x {seeds} "
            f"seed{'s' * (seeds != 1)} = {len(df)} runs: {int(ok.sum())} ok, {int((~ok).sum())} failed")
    figures = [(c, label, fmt) for c, label, fmt in SWEEP_FIGURES if c in df and df[c].notna().any()]
    body = [f"<h1>{escape(name)}</h1>", f"<p class=meta>{escape(line)}</p>", f"<p>Axes: {escape(axes_text or '-')}</p>",
            "<h2>Points</h2>", _sweep_table(df, axes, figures)]
    errors = df[~ok]
    if len(errors):
        body += ["<h3>Failed runs</h3>", html_table(["point", "seed", "error"], [
            [r.get("point"), r.get("seed"), Raw(f"<span class=bad>{escape(r.get('error'))}</span>")]
            for _, r in errors.iterrows()], text_columns=3)]
    good = df[ok]
    x, y = "cost.usd_per_m_tokens", "latency_s.ttft.p99"
    if x in good and y in good and good[[x, y]].notna().all(axis=1).any():
        per_point = _per_point(good, axes, [x, y])
        body += ["<h2>Cost against latency</h2>",
                 "<p>Each point averaged over its seeds; the front holds the points no other beats on both.</p>",
                 figure(lambda ax: sweep_analysis.pareto(per_point, x, y, label="label", ax=ax), (9.0, 5.0),
                         alt="cost per M tokens against TTFT p99")]
    if len(axes) == 2 and "slo.met" in df and df["slo.met"].notna().any():
        body += ["<h2>SLO boundary</h2>",
                 f"<p>A point meets the SLO when every seed met it; the line marks, for each {escape(axes[1])}, "
                 f"the smallest {escape(axes[0])} that did.</p>",
                 figure(lambda ax: sweep_analysis.slo_boundary(df, axes[0], axes[1], ax=ax), (7.0, 4.0),
                        alt="SLO boundary")]
    metrics = [c for c, *_ in figures]
    for axis in axes:
        if not metrics:
            break
        hue = next((a for a in axes if a != axis), None)
        rows = -(-len(metrics) // 3)
        body += [f"<h2>Against {escape(axis)}</h2>",
                 "<p>Mean over seeds; the band spans their min and max"
                 + (f"; one line per {escape(hue)}" if hue else "") + ".</p>",
                 figure(lambda ax, axis=axis, hue=hue: sweep_analysis.sweep_lines(good, axis, metrics, hue=hue, ax=ax),
                         (12.6, 3.2 * rows), alt=f"key figures against {axis}", rows=rows, cols=3)]
    body.append(_footer(provenance.sweep_text(df)))
    return html_page(f"dcsim sweep report: {name}", body)


def _per_point(df: pd.DataFrame, axes: list[str], columns: list[str]) -> pd.DataFrame:
    """The mean of `columns` over the seeds of each point (its axis values), with a label."""
    if not axes:
        return df.assign(label=df.get("point", ""))
    out = df.groupby(axes, sort=False, dropna=False)[columns].mean().reset_index()
    # column by column: a row of iterrows() would turn integer axis values into floats
    out["label"] = [", ".join(f"{a}={v}" for a, v in zip(axes, values, strict=True))
                    for values in zip(*(out[a] for a in axes), strict=True)]
    return out


def _sweep_table(df: pd.DataFrame, axes: list[str], figures) -> str:
    headers = ["point", "seed", *axes, "status", "devices", "SLO", *(label for _, label, _ in figures)]
    rows = []
    for _, r in df.iterrows():
        met = r.get("slo.met")
        ok = r.get("status", "ok") == "ok"
        status = Raw("<span class=ok>ok</span>") if ok else Raw("<span class=bad>error</span>")
        rows.append([r.get("point"), r.get("seed"), *(r.get(a) for a in axes), status,
                     number(r.get("devices"), "{:,.0f}"), verdict(None if met is None or pd.isna(met) else bool(met)),
                     *(number(r.get(c), fmt) for c, _, fmt in figures)])
    return html_table(headers, rows, text_columns=1)


# ---- entry points ----------------------------------------------------------------------


def render(path: str) -> str:
    """The page for a results folder: a sweep's (it has sweep.json) or a run's."""
    if not os.path.isdir(path):
        raise ResultsError(f"{path}: no such results folder")
    try:
        if analysis.is_sweep(path):
            return sweep_page(analysis.load_sweep(path), os.path.basename(os.path.normpath(path)))
        return run_page(analysis.load_run(path))
    except KeyError as exc:   # files that read but lack a column or field this version writes
        raise ResultsError(f"{path}: results in a format this dcsim does not read (no {exc}); "
                           f"run it again to write them anew") from None


def write_report(path: str, out: str | None = None) -> str:
    """Render the folder's page and write it (default: report.html inside it); returns the file."""
    page = render(path)
    out = out or os.path.join(path, "report.html")
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    return out
