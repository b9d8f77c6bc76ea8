"""Commands that run scenarios: run, compare, report."""
from __future__ import annotations

import json
import os
import sys

from rich.table import Table

from ..spec.units import duration_or_dash
from .arguments import EXIT_SCENARIO, SCENARIO_HELP, add_overrides, at_least, command, writable


def add_run(sub) -> None:
    run = command(sub, "run", "simulate a scenario and write its results", [
        "dcsim run quickstart # the example scenario; results in results/quickstart",
        "dcsim run quickstart --set workload.0.rate=80/s --out results/quickstart-80 # twice the load",
        "dcsim run gpu-vs-asic --variant tpu-v6e --json # one variant; summary.json on stdout",
        "dcsim run quickstart --trace-window 30s:40s # also trace.json for ui.perfetto.dev",
    ])
    run.add_argument("scenario", help=SCENARIO_HELP)
    add_overrides(run)
    run.add_argument("--seed", type=at_least(0), help="random seed (overrides the scenario's seed)")
    run.add_argument("--out", help="results folder (default: results/<scenario name>)")
    run.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    run.add_argument("--variant", help="run this variant of the scenario (its variants: section)")
    run.add_argument("--trace", action="store_true",
                     help="also write trace.json: a timeline for ui.perfetto.dev or chrome://tracing")
    run.add_argument("--trace-window", metavar="START:END",
                     help="trace only this stretch of simulated time, e.g. 10s:40s or 1min:2min (implies --trace)")
    run.add_argument("--trace-requests", type=int, metavar="N",
                     help="trace at most N requests, every k-th by id (implies --trace)")
    run.set_defaults(handler=_run)


def add_compare(sub) -> None:
    cmp_ = command(sub, "compare", "run several fleets on the same workload and seed, side by side", [
        "dcsim compare gpu-vs-asic # its base fleet and each variant",
        "dcsim compare quickstart static-baseline # continuous against static batching",
        "dcsim compare colocated-llama70b disagg-llama70b --seeds 1",
    ])
    cmp_.add_argument("scenarios", nargs="+", help="scenario files or example names; each adds its base and its "
                                                   "variants")
    add_overrides(cmp_)
    cmp_.add_argument("--out", help="folder for compare.json/.csv and the plot (default: results/compare-<name>)")
    cmp_.add_argument("--json", action="store_true", help="print the comparison rows as JSON")
    cmp_.add_argument("--seeds", type=at_least(1), default=3,
                      help="seeds a fleet runs when an SLO target lies inside its figure's interval (default 3)")
    cmp_.set_defaults(handler=_compare)


def add_report(sub) -> None:
    rep = command(sub, "report", "write a self-contained HTML page of a run's or a sweep's results", [
        "dcsim run quickstart # first, a run: results/quickstart",
        "dcsim report results/quickstart # writes results/quickstart/report.html",
        "dcsim report results/quickstart --out quickstart.html",
    ])
    rep.add_argument("results", help="results folder of `dcsim run` or `dcsim sweep`")
    rep.add_argument("--out", help="HTML file to write (default: RESULTS/report.html)")
    rep.set_defaults(handler=_report)


def _run(args) -> int:
    from ..results import trace
    from ..results.console import make_console, print_summary
    from ..results.report import write_results
    from ..results.summary import summarize
    from ..scenario import load_scenario
    from ..simulation import simulate

    tracing = args.trace or args.trace_window is not None or args.trace_requests is not None
    window = trace.parse_window(args.trace_window) if args.trace_window is not None else None  # before the run
    trace.check_max_requests(args.trace_requests)
    scenario = load_scenario(args.scenario, args.overrides, args.variant)
    out = writable(args.out or os.path.join("results", scenario.name))
    result = simulate(scenario, seed=args.seed, trace=tracing)
    summary = summarize(result)
    traced = []

    def write_trace(folder):
        traced.append(trace.write_trace(result, os.path.join(folder, "trace.json"), window, args.trace_requests))
    write_results(result, summary, out, also=write_trace if tracing else None)
    written = traced[0] if traced else None
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
        make_console().print(f"results: {out}/ (summary.json, requests.parquet, devices.parquet, scenario.yaml"
                             + (", trace.json" if tracing else "") + ")")
    if written is not None:   # on stderr with --json, so stdout stays JSON
        print(f"trace: {os.path.join(out, 'trace.json')}: {written.events:,} events, "
              f"{written.bytes / 1e6:.1f} MB; open it in ui.perfetto.dev"
              + (f"\ntrace: {written.note}" if written.note else ""),
              file=sys.stderr if args.json else sys.stdout)
    return 0


def _compare(args) -> int:
    from ..results.console import make_console
    from ..scenario import examples
    from ..tools import compare

    console = make_console()
    paths = [examples.path_of(s) for s in args.scenarios]
    scenarios = compare.load_entries(compare.entries(paths), args.overrides)
    out = writable(args.out or os.path.join("results", f"compare-{scenarios[0].name}"))
    rows = [_compare_row(console, sc, args.seeds) for sc in scenarios]
    files = compare.write(rows, out)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console.print(_compare_table(scenarios[0].spec, rows))
    _print_comparison(console, rows, files)
    return 0


def _compare_row(console, sc, n_seeds: int) -> dict:
    """One fleet's row, run again on more seeds when its SLO verdict lies inside the error."""
    from ..results.summary import summarize
    from ..simulation import simulate
    from ..tools import compare

    console.print(f"running {sc.name} ...")
    r = compare.row(summarize(simulate(sc)))
    if r["slo_within_error"] and n_seeds > 1:
        # near the SLO boundary: one seed's verdict is not enough
        seeds = [sc.spec.seed + k for k in range(1, n_seeds)]
        console.print(f"  near the SLO boundary: seeds {', '.join(map(str, seeds))} too")
        met = [r["slo_met"]] + [summarize(simulate(sc, seed=k))["slo"].get("met") for k in seeds]
        r["slo_seeds_met"] = f"{sum(bool(m) for m in met)}/{len(met)}"
        r["slo_met"] = all(met)
    return r


def _compare_table(ref, rows) -> Table:
    """The fleets side by side, each figure with its interval where it has one."""
    from ..results.intervals import text as with_interval
    from ..spec.units import format_duration

    targets = ", ".join(f"{k} {format_duration(v)}" for k, v in ref.slo.targets.items()) or "none"
    table = Table(title=f"same workload and seed {ref.seed} ({len(ref.workload)} stream(s), "
                        f"{format_duration(ref.duration)}); SLO {targets}",
                  title_justify="left")
    cols = ("scenario", "fleet", "devices", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "tok/s",
            "goodput tok/s", "power kW", "J/out tok", "$/h", "$/M tok", "SLO")
    for c in cols:
        table.add_column(c, justify="left" if c in ("scenario", "fleet") else "right")
    for r in rows:
        def lat(key, r=r):
            lo = r.get(key.replace("_s", "_lo_s"))
            return with_interval(r[key], None if lo is None else (lo, r[key.replace("_s", "_hi_s")]), duration_or_dash)
        usd = None if r["usd_per_m_tokens_lo"] is None else (r["usd_per_m_tokens_lo"], r["usd_per_m_tokens_hi"])
        verdict = {True: "met", False: "MISSED", None: "-"}[r["slo_met"]]
        if r.get("slo_seeds_met"):
            verdict += f" {r['slo_seeds_met']} seeds"
        table.add_row(r["scenario"], r["fleet"], str(r["devices"]),
                      duration_or_dash(r["ttft_p50_s"]), lat("ttft_p99_s"), duration_or_dash(r["tpot_p50_s"]),
                      lat("tpot_p99_s"), f"{r['tokens_per_s']:,.0f}",
                      "-" if r["goodput_tokens_per_s"] is None else f"{r['goodput_tokens_per_s']:,.0f}",
                      "-" if r["facility_kw"] is None else f"{r['facility_kw']:,.1f}",
                      "-" if r["joules_per_output_token"] is None else f"{r['joules_per_output_token']:,.2f}",
                      "-" if r["usd_per_hour"] is None else f"{r['usd_per_hour']:,.2f}",
                      with_interval(r["usd_per_m_tokens"], usd, "{:.3f}".format),
                      verdict + (" (within error)" if r["slo_within_error"] else ""))
    return table


def _print_comparison(console, rows, files) -> None:
    """The pricing basis, each fleet's interval, the cheapest and whether it is decisive."""
    from ..tools import compare

    console.print(f"pricing: {rows[0]['pricing_basis']}" if rows else "")
    for r in rows:
        console.print(f"interval {r['scenario']}: {r['interval']}")
    best, close = compare.cheapest(rows)
    if best is not None:
        console.print(f"cheapest meeting the SLO: {best['scenario']} at ${best['usd_per_m_tokens']:.3f}/M tokens")
        for r in close:
            console.print(f"[bold]not decisive:[/bold] {r['scenario']} (${r['usd_per_m_tokens']:.3f}/M tokens) is "
                          f"inside the error of the cheapest")
    if any(r["slo_within_error"] for r in rows):
        console.print("(within error): an SLO target lies inside its figure's 90% interval; a real system could "
                      "land on either side")
    console.print(f"results: {', '.join(files)}")


def _report(args) -> int:
    from ..results.analysis import ResultsError
    from ..results.html_report import write_report

    try:
        out = write_report(args.results, args.out)
    except (ResultsError, OSError) as exc:   # a wrong folder or an unwritable --out: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SCENARIO
    print(f"report: {out} ({os.path.getsize(out) / 1e3:,.0f} kB)")
    return 0
