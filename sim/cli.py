"""The `dcsim` command: run, validate, compare, plan, sweep, report, validate-model, topology, catalog.

Scenario problems print as `file:line: field: message` and exit with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from rich.table import Table

from .core.column_store import steady_heap
from .spec.errors import ScenarioError
from .spec.units import duration_or_dash

EXIT_SCENARIO = 2
EXIT_INTERRUPTED = 130     # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)


def _at_least(low: int):
    """An argparse type: an integer >= low (a bad value exits 2 naming the flag)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def _share(text: str) -> float:
    """An argparse type: a fraction in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _degrees(text: str) -> list[int]:
    """An argparse type: comma-separated tensor-parallel degrees, each at least 1."""
    parse = _at_least(1)
    return [parse(part.strip()) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    steady_heap()    # before anything allocates: long runs' memory then stays flat
    parser = argparse.ArgumentParser(prog="dcsim", description="Capacity simulator for AI-inference datacenters.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate a scenario and write its results")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override a field, e.g. --set workload.rate=80/s (repeatable)")
    run.add_argument("--seed", type=_at_least(0), help="random seed (overrides the scenario's seed)")
    run.add_argument("--out", help="results folder (default: results/<scenario name>)")
    run.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    run.add_argument("--variant", help="run this variant of the scenario (its variants: section)")
    run.add_argument("--trace", action="store_true",
                     help="also write trace.json: a timeline for ui.perfetto.dev or chrome://tracing")
    run.add_argument("--trace-window", metavar="START:END",
                     help="trace only this stretch of simulated time, e.g. 10s:40s or 1min:2min (implies --trace)")
    run.add_argument("--trace-requests", type=int, metavar="N",
                     help="trace at most N requests, every k-th by id (implies --trace)")

    cmp_ = sub.add_parser("compare", help="run several fleets on the same workload and seed, side by side")
    cmp_.add_argument("scenarios", nargs="+", help="scenario files; each adds its base and its variants")
    cmp_.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    cmp_.add_argument("--out", help="folder for compare.json/.csv and the plot (default: results/compare-<name>)")
    cmp_.add_argument("--json", action="store_true")
    cmp_.add_argument("--seeds", type=_at_least(1), default=3,
                      help="seeds a fleet runs when an SLO target lies inside its figure's interval (default 3)")

    plan = sub.add_parser("plan", help="smallest fleet per device that meets an SLO, or the most load a fleet takes")
    plan.add_argument("scenario", help="scenario with one pool: its model, precision and engine are kept")
    plan.add_argument("--slo", help="targets, e.g. ttft_p99=2s,tpot_p99=100ms (default: the scenario's)")
    plan.add_argument("--rate", help="total request rate to size for, e.g. 40/s (default: the scenario's)")
    plan.add_argument("--devices", help="comma-separated catalog devices (default: the scenario's device)")
    plan.add_argument("--all-devices", action="store_true", help="every device in the catalog")
    plan.add_argument("--tp", type=_degrees,
                      help="comma-separated tensor-parallel degrees to try (default: 1, 2, 4, ... up to a server)")
    plan.add_argument("--max-devices", type=_at_least(1),
                      help="largest fleet to try (default: 16 x what the load needs at full batches, per layout)")
    plan.add_argument("--tolerance", type=_share, default=0.0,
                      help="stop bisecting within this share of the count (default 0: exact)")
    plan.add_argument("--seeds", type=_at_least(1), default=3,
                      help="seeds each answer must meet the SLO with (default 3: the scenario's and the next two)")
    plan.add_argument("--max-load", action="store_true",
                      help="instead: the highest rate the scenario's own fleet sustains within the SLO")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    plan.add_argument("--out", help="folder for plan.json (default: results/plan-<name>)")

    sw = sub.add_parser("sweep", help="run a scenario over axes of values and seeds, on a process pool or a Dask cluster")
    sw.add_argument("sweep", help="sweep YAML file: base scenario, axes, seeds")
    sw.add_argument("--out", help="sweep folder (default: results/sweep-<name>); a rerun skips finished points")
    sw.add_argument("--workers", type=_at_least(1), help="processes of the local pool (default: the sweep's, else all cores)")
    sw.add_argument("--cluster", help="Dask scheduler address, e.g. tcp://host:8786 ('local': a local Dask "
                                      "cluster); default: the sweep's cluster:, else a local process pool")
    sw.add_argument("--skip-failed", action="store_true", help="do not rerun points that failed before")
    sw.add_argument("--no-point-files", action="store_true",
                    help="workers write no per-request files (summary.json and point.json only)")
    sw.add_argument("--list", action="store_true", help="list the points and exit")

    val = sub.add_parser("validate", help="check a scenario without running it")
    val.add_argument("scenario")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    val.add_argument("--variant", help="check this variant of the scenario")

    vm = sub.add_parser("validate-model", help="hold the simulator's predictions against published figures")
    vm.add_argument("cases", nargs="?", default="validation/cases", help="folder of case files")
    vm.add_argument("--level", action="append", choices=["kernel", "step", "serving", "queueing"],
                    help="only these levels (repeatable)")
    vm.add_argument("--fast", action="store_true", help="skip cases marked slow")
    vm.add_argument("--report", default="validation/report.md", help="markdown report to write ('' for none)")
    vm.add_argument("--strict", action="store_true", help="exit 1 when a case misses its tolerance")
    vm.add_argument("--accuracy", default=None, metavar="JSON",
                    help="where to record the held-out errors that every run's intervals come from "
                         "(default: the catalog's accuracy.json, on a full run of the shipped cases only)")

    topo = sub.add_parser("topology", help="summarize a topology file and optionally draw it")
    topo.add_argument("file", help="topology YAML (topologies/*.yaml)")
    topo.add_argument("--png", help="draw the graph to this PNG file")
    topo.add_argument("--json", action="store_true")

    cat = sub.add_parser("catalog", help="list the devices or models in the catalog")
    cat.add_argument("what", choices=["devices", "models"])
    cat.add_argument("--json", action="store_true")

    rep = sub.add_parser("report", help="write a self-contained HTML page of a run's or a sweep's results")
    rep.add_argument("results", help="results folder of `dcsim run` or `dcsim sweep`")
    rep.add_argument("--out", help="HTML file to write (default: RESULTS/report.html)")

    cal = sub.add_parser("calibrate", help="fit device and host factors to your cluster's benchmark results",
                         description="Fit the simulator to measurements of your own cluster: vllm bench serve "
                                     "result JSON, SGLang bench_serving JSONL, or a CSV of step times (batch, "
                                     "prompt_tokens, context, step_time_ms). Half the measurements fit, half check; "
                                     "the overlay written is applied by a scenario's `calibration: FILE`.")
    cal.add_argument("scenario", help="scenario whose pool the files measured (its device, model, tp, engine)")
    cal.add_argument("files", nargs="+", help="benchmark result files (.json, .jsonl) and step-time CSVs (.csv)")
    cal.add_argument("--pool", help="the pool the files measured (when the scenario has several)")
    cal.add_argument("--out", default="calibration.yaml", help="overlay to write (default: calibration.yaml)")
    cal.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")

    args = parser.parse_args(argv)
    try:
        handler = {"run": _run, "validate": _validate, "compare": _compare, "plan": _plan,
                   "validate-model": _validate_model, "topology": _topology, "catalog": _catalog,
                   "sweep": _sweep, "report": _report, "calibrate": _calibrate}[args.command]
        return handler(args)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_SCENARIO
    except KeyboardInterrupt:
        print(f"interrupted: dcsim {args.command} stopped; nothing it was writing is marked complete",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args) -> int:
    from .results.report import make_console, print_summary, write_results
    from .scenario import load_scenario
    from .results import trace
    from .simulation import simulate
    from .results.summary import summarize

    tracing = args.trace or args.trace_window is not None or args.trace_requests is not None
    window = trace.parse_window(args.trace_window) if args.trace_window is not None else None  # before the run
    trace.check_max_requests(args.trace_requests)
    scenario = load_scenario(args.scenario, args.overrides, args.variant)
    out = _writable(args.out or os.path.join("results", scenario.name))
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
        print(f"trace: {os.path.join(out, 'trace.json')}: {written.events:,} events, {written.bytes / 1e6:.1f} MB; open it in "
              f"ui.perfetto.dev" + (f"\ntrace: {written.note}" if written.note else ""),
              file=sys.stderr if args.json else sys.stdout)
    return 0


def _compare(args) -> int:
    from .tools import compare
    from .results.report import make_console
    from .simulation import simulate
    from .results.summary import summarize
    from .spec.units import format_duration

    console = make_console()
    scenarios = compare.load_entries(compare.entries(args.scenarios), args.overrides)
    out = _writable(args.out or os.path.join("results", f"compare-{scenarios[0].name}"))
    rows = []
    for sc in scenarios:
        console.print(f"running {sc.name} ...")
        r = compare.row(summarize(simulate(sc)))
        if r["slo_within_error"] and args.seeds > 1:
            # near the SLO boundary: one seed's verdict is not enough
            seeds = [sc.spec.seed + k for k in range(1, args.seeds)]
            console.print(f"  near the SLO boundary: seeds {', '.join(map(str, seeds))} too")
            met = [r["slo_met"]] + [summarize(simulate(sc, seed=k))["slo"].get("met") for k in seeds]
            r["slo_seeds_met"] = f"{sum(bool(m) for m in met)}/{len(met)}"
            r["slo_met"] = all(met)
        rows.append(r)
    files = compare.write(rows, out)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    ref = scenarios[0].spec
    table = Table(title=f"same workload and seed {ref.seed} ({len(ref.workload)} stream(s), "
                        f"{format_duration(ref.duration)}); SLO {', '.join(f'{k} {format_duration(v)}' for k, v in ref.slo.targets.items()) or 'none'}",
                  title_justify="left")
    cols = ("scenario", "fleet", "devices", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "tok/s",
            "goodput tok/s", "power kW", "J/out tok", "$/h", "$/M tok", "SLO")
    for c in cols:
        table.add_column(c, justify="left" if c in ("scenario", "fleet") else "right")
    from .results.intervals import text as with_interval
    for r in rows:
        def lat(key):
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
    console.print(table)
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
    return 0


def _sweep(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from .tools import sweep as sw
    from .tools.executors import executor_for
    from .results.report import make_console

    console = make_console()
    if args.out:
        _writable(args.out)
    sweep = sw.load_sweep(args.sweep, args.out)
    if args.list:
        for t in sweep.tasks:
            console.print(f"{t.point}  {t.axes}  seed {t.seed}" + (f"  variant {t.variant}" if t.variant else ""))
        return 0
    executor = executor_for(args.cluster or sweep.spec.cluster, args.workers or sweep.spec.workers)
    console.print(f"sweep {sweep.spec.name}: {len(sweep.tasks)} runs ({len(sweep.tasks) // max(1, len({t.seed for t in sweep.tasks}))} "
                  f"points x {len({t.seed for t in sweep.tasks})} seeds) on {executor.where}; folder {sweep.out}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        job = bar.add_task("runs", total=len(sweep.tasks), failed=0)

        def progress(done, total, failed):
            bar.update(job, completed=done, failed=failed)
        try:
            outcome = sw.run_sweep(sweep, executor, progress, retry_failed=not args.skip_failed,
                                   write_files=not args.no_point_files)
        finally:
            executor.close()
    console.print(f"{outcome.ran} run, {outcome.skipped} already done, {outcome.failed} failed, in "
                  f"{outcome.wall_s:.1f} s; table: {outcome.table_path}")
    frame = sw.table(sweep, outcome.rows)
    shown = [c for c in ["point", "seed", *sweep.labels, "status", "latency_s.ttft.p99", "latency_s.tpot.p99",
                         "throughput.output_tokens_per_s", "cost.usd_per_m_tokens", "slo.met"] if c in frame.columns]
    table = Table(title="first rows", title_justify="left")
    for c in shown:
        table.add_column(c, justify="left" if c in ("point", "status") else "right")
    for _, r in frame.head(10).iterrows():
        table.add_row(*(_cell(r[c]) for c in shown))
    console.print(table)
    for _, r in frame[frame["status"] != sw.STATUS_OK].head(5).iterrows():
        console.print(f"[red]{r['point']}[/red]: {str(r['error']).splitlines()[0]}")
    return 0 if outcome.failed == 0 else 1


def _cell(v) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.4g}"
    return "-" if v is None else str(v)


def _plan(args) -> int:
    import time

    from . import catalog
    from .catalog import economics
    from .tools.plan import Planner, parse_slo
    from .results.report import make_console
    from .spec.units import parse_rate

    console = make_console()
    wall0 = time.perf_counter()

    def progress(t):
        # runs only once the search has started, after `planner` and `out` below are set
        _write_plan(out, planner, [], None, None, complete=False)   # every finished trial on disk
        load = f" at {t.rate:,.1f}/s" if t.rate is not None else ""
        seed = f" seed {t.seed}" if t.seed != planner.base.spec.seed else ""
        console.print(f"  {t.device} {t.precision} tp{t.tp}" + (f" pp{t.pp}" if t.pp > 1 else "")
                      + f" x {t.replicas} replicas ({t.devices} devices){load}{seed}: "
                      + ("meets" if t.met else f"misses ({t.why})") + f"  [{t.wall_s:.1f}s]")

    slo = parse_slo(args.slo) if args.slo else None
    try:
        rate = parse_rate(args.rate) if args.rate else None
    except Exception as exc:
        raise ScenarioError.one(_loc("--rate"), "rate", str(exc)) from None
    planner = Planner(args.scenario, slo, rate, args.overrides, args.tolerance, args.max_devices, progress, args.tp,
                      args.seeds)
    name = planner.base.name
    out = _writable(args.out or os.path.join("results", f"plan-{name}"))
    os.makedirs(out, exist_ok=True)
    targets = ", ".join(f"{k} {duration_or_dash(v)}" for k, v in planner.base.spec.slo.targets.items())
    load = rate or planner.rate0
    if args.max_load:
        console.print(f"[bold]{name}[/bold]: highest load within {targets} for its fleet")
        ok, fail = planner.max_rate()
        if ok is None:
            console.print(f"the fleet misses the SLO even at {fail.rate:,.3g}/s ({fail.why})")
        else:
            lo, hi = ok.rate_range()
            console.print(f"sustains {ok.rate:,.2f}/s ({lo:,.2f}-{hi:,.2f}/s on a real system; TTFT p99 "
                          f"{duration_or_dash(ok.ttft_p99)}, TPOT p99 {duration_or_dash(ok.tpot_p99)}); "
                          + (f"misses at {fail.rate:,.2f}/s ({fail.why})" if fail else "no failing load found"))
            console.print(f"interval: {ok.interval_basis}")
        _write_plan(out, planner, [], ok, fail)
        console.print(f"{len(planner.trials)} simulations in {time.perf_counter() - wall0:.1f}s; {out}/plan.json")
        return 0
    if args.all_devices:
        devices = list(catalog.device_entries())
    elif args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    else:
        devices = [planner.base.pools[0].device_key]
    console.print(f"[bold]{name}[/bold]: smallest fleet meeting {targets} at "
                  f"{'-' if load is None else f'{load:,.2f}/s'} for {planner.base.pools[0].model_key}")
    plans = planner.plan(devices)
    table = Table(title=f"smallest fleet per device meeting the SLO with {args.seeds} seed(s); one replica fewer "
                        f"misses; (range): the fleet a real system needs, from the 90% interval", title_justify="left")
    for c in ("device", "precision", "layout", "replicas", "devices", "TTFT p99", "TPOT p99", "pricing", "$/h",
              "$/M tok", "fewer misses"):
        table.add_column(c, justify="left" if c in ("device", "precision", "layout", "pricing", "fewer misses")
                         else "right")
    answers = []
    for p in plans:
        lay = p.best
        if lay is None:
            notes = list(dict.fromkeys(l.note for l in p.layouts if l.note))
            reasons = "; ".join(x for x in [p.note] + notes if x)
            table.add_row(p.device, "-", "-", "-", "-", "-", "-", "-", "-", "-", reasons or "no layout met the SLO")
            continue
        b = lay.best
        answers.append(b)
        below = lay.below
        r_lo, r_hi = b.replica_range()
        d_lo, d_hi = b.device_range()
        usd = b.usd_range()
        table.add_row(p.device, b.precision, f"tp{b.tp}" + (f" x pp{b.pp}" if b.pp > 1 else ""),
                      f"{b.replicas:,} ({r_lo:,}-{r_hi:,})", f"{b.devices:,} ({d_lo:,}-{d_hi:,})",
                      duration_or_dash(b.ttft_p99), duration_or_dash(b.tpot_p99), b.pricing or "-",
                      "-" if usd is None else f"{b.usd_per_hour:,.2f} ({usd[0]:,.2f}-{usd[1]:,.2f})",
                      "-" if b.usd_per_m_tokens is None else f"{b.usd_per_m_tokens:.3f}",
                      "-" if below is None else f"{below.devices:,}: {below.why}" + (f" [{p.note}]" if p.note else ""))
    console.print(table)
    eco = planner.base.spec.economics
    console.print(f"pricing: {economics.describe(planner.basis.name, eco.amortize_years, eco.cost_of_capital, eco.usd_per_kwh, eco.pue)}"
                  + (f" ({planner.basis.chosen_by})" if planner.basis.chosen_by else ""))
    for b in answers:
        console.print(f"interval {b.device}: {b.interval_basis}")
    best_overall = _cheapest(answers)
    if best_overall is not None:
        b = best_overall
        d_lo, d_hi = b.device_range()
        console.print(f"cheapest: {b.devices:,} x {b.device} ({d_lo:,}-{d_hi:,}; {b.precision}, tp{b.tp}"
                      + (f" x pp{b.pp}" if b.pp > 1 else "") + f", {b.replicas:,} replicas)"
                      + ("" if b.usd_per_hour is None else f" at ${b.usd_per_hour:,.2f}/h = ${b.usd_per_hour * 24:,.0f}/day"
                         f" ({b.pricing})"))
        for other in _within_error(b, answers):
            o_lo, o_hi = other.usd_range()
            lo, hi = b.usd_range()
            console.print(f"[bold]not decisive:[/bold] {other.device} costs ${other.usd_per_hour:,.2f}/h "
                          f"(${o_lo:,.2f}-{o_hi:,.2f}), inside the error of the cheapest (${lo:,.2f}-{hi:,.2f})")
    else:
        console.print("no device in the search meets the SLO")
    for note in sorted(planner.notes):
        console.print(f"note: {note}")
    _write_plan(out, planner, plans, None, None)
    console.print(f"{len(planner.trials)} simulations in {time.perf_counter() - wall0:.1f}s; {out}/plan.json")
    return 0 if best_overall is not None else 1


def _calibrate(args) -> int:
    from .tools.calibrate import Calibrator, write_overlay
    from .results.report import make_console

    console = make_console()
    _writable(args.out, folder=False)
    calibrator = Calibrator(args.scenario, args.files, args.pool, args.overrides)
    cal = calibrator.run(progress=lambda text: console.print(f"  {text}"))
    fit = cal.fit
    host = "the engine preset's" if fit.iteration_overhead is None else f"{fit.iteration_overhead * 1e3:.3f} ms"
    console.print(f"[bold]{cal.device} / {cal.model} (tp {cal.tp}, pool {cal.pool})[/bold]: device time x "
                  f"{fit.time_scale:.4f}; host time per iteration {host}; fitted on {len(cal.fitted_on)} "
                  f"measurement(s)")
    table = Table(title="held-out measurements: the simulator before (catalog) and after calibration",
                  title_justify="left")
    for c in ("measurement", "metric", "measured", "before", "error", "after", "error "):
        table.add_column(c, justify="left" if c in ("measurement", "metric") else "right")
    for c in cal.checks:
        show = duration_or_dash if c.is_time else "{:,.1f}".format
        table.add_row(c.name, c.metric, show(c.measured), show(c.before), f"{c.error(c.before):+.1%}",
                      show(c.after), f"{c.error(c.after):+.1%}")
    console.print(table)
    before, after = cal.median_abs("before"), cal.median_abs("after")
    if before is not None:
        console.print(f"held-out median |error|: {before:.1%} before, {after:.1%} after "
                      f"({len(cal.checks)} figures)")
    else:
        console.print("no held-out measurement left to check (give more files)")
    for note in cal.notes:
        console.print(note if note.startswith("assumed:") else f"note: {note}")
    write_overlay(cal, args.out, args.files)
    console.print(f"overlay: {args.out} (in a scenario: calibration: {os.path.basename(args.out)})")
    return 0


def _writable(path: str, flag: str = "--out", folder: bool = True) -> str:
    """Check, before any simulation, that results can go to `path`: a folder (or for a file
    output, a file) that exists or can be created in a writable folder."""
    from .results.folder import replaceable
    if folder and os.path.isdir(path) and not replaceable(path):
        raise ScenarioError.one(_loc(flag), "", f"{path} exists and is not a dcsim results folder (it holds other "
                                                f"files, which a run would replace); choose a new folder")
    if os.path.exists(path) and os.path.isdir(path) != folder:
        kind = "a file" if folder else "a folder"
        raise ScenarioError.one(_loc(flag), "", f"{path} is {kind}; give a {'folder' if folder else 'file'} "
                                                               f"path")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ScenarioError.one(_loc(flag), "", f"cannot create {path}: {parent} is a file")
    if not os.access(parent, os.W_OK):
        raise ScenarioError.one(_loc(flag), "", f"cannot write to {parent}")
    return path


def _loc(text):
    from .spec.errors import Loc
    return Loc(text)


def _cheapest(answers):
    """The answer with the lowest $/h (then the fewest devices)."""
    return min(answers, key=lambda b: (b.usd_per_hour if b.usd_per_hour is not None else float("inf"), b.devices),
               default=None)


def _within_error(best, answers):
    """Other devices whose cost range overlaps the cheapest's: the ranking is inside the error."""
    mine = best.usd_range()
    if mine is None:
        return []
    return [a for a in answers if a is not best and a.usd_range() is not None and a.usd_range()[0] <= mine[1]]


def _write_plan(out, planner, plans, ok, fail, complete: bool = True) -> None:
    """plan.json: every trial, and (complete) the answers; written after each trial too, with
    complete: false, so a plan stopped midway keeps what it ran."""
    from dataclasses import asdict

    doc = {"scenario": planner.path, "complete": complete, "notes": sorted(planner.notes),
           "pricing": planner.basis.name if planner.basis else None,
           "trials": [asdict(t) | {"devices": t.devices} for t in planner.trials],
           "devices": [{"device": p.device, "note": p.note,
                        "layouts": [{"tp": l.tp, "pp": l.pp, "precision": l.precision, "note": l.note,
                                     "seeds_checked": l.seeds_checked,
                                     "best": None if l.best is None else asdict(l.best) | {
                                         "replica_range": list(l.best.replica_range()),
                                         "device_range": list(l.best.device_range()),
                                         "usd_per_hour_range": l.best.usd_range()},
                                     "below": None if l.below is None else asdict(l.below)} for l in p.layouts]}
                       for p in plans]}
    if ok is not None or fail is not None:
        doc["max_load"] = {"sustained": None if ok is None else asdict(ok) | {"rate_range": ok.rate_range()},
                           "missed": None if fail is None else asdict(fail)}
    tmp = os.path.join(out, "plan.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2)
    os.replace(tmp, os.path.join(out, "plan.json"))


def _validate(args) -> int:
    from .scenario import load_scenario
    from .spec.units import format_bytes

    scenario = load_scenario(args.scenario, args.overrides, args.variant)
    spec = scenario.spec
    print(f"{args.scenario}: ok: scenario '{spec.name}', {len(spec.workload)} workload stream(s), "
          f"duration {spec.duration:g}s")
    for pool in scenario.pools:
        d = pool.deployment
        stages = f", pp={d.pp} ({d.pp} engines per replica)" if d.pp > 1 else ""
        print(f"  pool {pool.name}: {pool.spec.count} x {pool.device_key}, {pool.replicas} replica(s) of "
              f"{pool.model_key} at {d.precision}, tp={d.tp}{stages}; weights {format_bytes(d.weight_bytes)}/device, "
              f"KV cache {d.max_tokens_in_cache * d.pp:,} tokens/replica")
    if spec.topology is not None:
        g = spec.topology.graph()
        print(f"  topology {spec.topology.name}: {g.number_of_nodes()} nodes, {g.number_of_edges()} links, "
              f"{len(spec.topology.accelerators())} accelerators, connected")
    return 0


def _validate_model(args) -> int:
    from .catalog import accuracy
    from .tools import fidelity
    from .results.report import make_console
    from .timing import crosscheck

    console = make_console()
    outcomes = fidelity.run_cases(args.cases, levels=args.level, fast=args.fast,
                                  progress=lambda o: console.print(
                                      f"{'ok  ' if o.ok else 'MISS' if o.error is not None else 'ERR '} "
                                      f"{o.case.id}: predicted {fidelity._num(o.predicted)} vs "
                                      f"{fidelity._num(o.reference)} {o.case.reference.unit} "
                                      f"({fidelity._pct(o.error)}){' ' + o.failure if o.failure else ''}"))
    table = Table(title="error by level (|predicted - reference| / reference)", title_justify="left")
    for col in ("level", "role", "cases", "within tolerance", "median", "worst", "median signed"):
        table.add_column(col, justify="left" if col in ("level", "role") else "right")
    for r in fidelity.summary_rows(outcomes):
        table.add_row(r["level"], r["role"], str(r["cases"]), str(r["within_tolerance"]),
                      fidelity._pct(r["median_abs_error"]).lstrip("+"), fidelity._pct(r["worst_abs_error"]).lstrip("+"),
                      fidelity._pct(r["median_error"]))
    console.print(table)
    head = fidelity.headline(outcomes)
    console.print(f"held-out kernel/step/serving: {head['held_out_cases']} cases, median "
                  f"{fidelity._pct(head['median_abs_error']).lstrip('+')}, worst "
                  f"{fidelity._pct(head['worst_abs_error']).lstrip('+')}")
    e2e = fidelity.headline(outcomes, ("step", "serving"))
    console.print(f"held-out step/serving (end to end): {e2e['held_out_cases']} cases, median "
                  f"{fidelity._pct(e2e['median_abs_error']).lstrip('+')}")
    tp = fidelity.tensor_parallel_steps(outcomes)
    console.print(f"held-out step cases at tp > 1: {tp['cases']}, median signed error "
                  f"{fidelity._pct(tp['median_error'])}")
    entries = [e for e in (o.entry() for o in outcomes) if e is not None]
    cover = accuracy.coverage(entries) if entries else {}
    for level, c in cover.items():
        console.print(f"{accuracy.CONFIDENCE:.0%} intervals (each held-out case left out of its own): {level} "
                      f"{c['inside']}/{c['cases']} inside, coverage {c['coverage']:.0%}")
    full_run = not args.level and not args.fast and os.path.abspath(args.cases) == os.path.abspath("validation/cases")
    target = args.accuracy or (accuracy.PATH if full_run else None)
    if target and entries:
        accuracy.save(entries, target)
        console.print(f"held-out errors for the run intervals: {target}")
    families = [] if args.level and "kernel" not in args.level else crosscheck.run()
    if families:
        table = Table(title="analytical model against every measured kernel (predicted / measured - 1)",
                      title_justify="left")
        for col in ("device", "family", "role", "kernels", "median", "p90", "median signed"):
            table.add_column(col, justify="left" if col in ("device", "family", "role") else "right")
        for f in families:
            r = f.row()
            table.add_row(r["device"], r["family"], r["role"], f"{r['kernels']:,}",
                          fidelity._pct(r["median_abs_error"]).lstrip("+"), fidelity._pct(r["p90_abs_error"]).lstrip("+"),
                          fidelity._pct(r["median_error"]))
        console.print(table)
        k = crosscheck.headline(families)
        console.print(f"measured-kernel cross-device held-out: {k['kernels']:,} kernels, median "
                      f"{fidelity._pct(k['median_abs_error']).lstrip('+')}")
    if args.report:
        os.makedirs(os.path.dirname(args.report) or ".", exist_ok=True)
        with open(args.report, "w") as fh:
            fh.write(fidelity.markdown_report(outcomes, families, cover))
        console.print(f"report: {args.report}")
    missed = [o for o in outcomes if not o.ok]
    return 1 if args.strict and missed else 0


def _topology(args) -> int:
    from .fabric.topology import draw_topology, load_topology, summarize_topology
    from .spec.units import format_bytes

    spec = load_topology(args.file)
    summary = summarize_topology(spec)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(summary["nodes"].items()))
        print(f"{args.file}: {spec.name}")
        print(f"  nodes: {kinds}; {summary['links']} links; {summary['servers']} servers")
        print(f"  accelerators: {summary['accelerators']}; diameter {summary['diameter_hops']} hops between "
              f"accelerators ({summary['graph_diameter_hops']} over all nodes)")
        print(f"  bisection bandwidth: {format_bytes(summary['bisection_bandwidth'])}/s per direction")
        if "scale_out_per_server" in summary:
            print(f"  scale-out per server: {format_bytes(summary['scale_out_per_server'])}/s")
    if args.png:
        draw_topology(spec, args.png)
        print(f"  drawn: {args.png}")
    return 0


def _report(args) -> int:
    from .results.analysis import ResultsError
    from .results.html_report import write_report

    try:
        out = write_report(args.results, args.out)
    except (ResultsError, OSError) as exc:   # a wrong folder or an unwritable --out: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SCENARIO
    print(f"report: {out} ({os.path.getsize(out) / 1e3:,.0f} kB)")
    return 0


def _catalog(args) -> int:
    from . import catalog
    from .catalog.hardware import DeviceSpec
    from .catalog.models import ModelSpec
    from .results.report import make_console
    from .spec.units import format_bytes

    if args.what == "devices":
        specs = {k: DeviceSpec.model_validate(v) for k, v in catalog.device_entries().items()}
        title = "devices (peak FLOP/s dense, per chip)"
        columns = ("key", "name", "memory", "mem BW", "bf16", "fp8", "fp4", "scale-up/dir", "TDP", "eff c/m", "$/h")

        def row(k, s):
            pf = s.peak_flops
            return (k, s.name, format_bytes(s.memory) + (f" {s.memory_type}" if s.memory_type != "hbm" else ""),
                    f"{s.memory_bandwidth / 1e12:.2f} TB/s",
                    _tf(pf.bf16), _tf(pf.fp8), _tf(pf.fp4),
                    "-" if s.scale_up_bandwidth is None else f"{s.scale_up_bandwidth / 1e9:.0f} GB/s",
                    "-" if s.tdp is None else f"{s.tdp:.0f} W", f"{s.compute_eff:.2f}/{s.mem_eff:.2f}",
                    "-" if s.hourly_usd is None else f"{s.hourly_usd:.2f}")
    else:
        specs = {k: ModelSpec.model_validate(v) for k, v in catalog.model_entries().items()}
        title = "models"
        columns = ("key", "name", "kind", "arch", "params", "active", "layers", "hidden", "heads/kv", "experts",
                   "context")

        def row(k, s):
            return (k, s.name, s.modality, s.architecture + ("/mla" if s.attention == "mla" else ""),
                    f"{s.computed_params() / 1e9:.1f}B", f"{s.computed_active_params() / 1e9:.1f}B",
                    str(s.layers), str(s.hidden), f"{s.heads}/{s.kv_heads}" if s.heads else "-",
                    f"{s.active_experts}/{s.experts}" if s.experts else "-",
                    "-" if s.max_context is None else f"{s.max_context:,}")
    if args.json:
        print(json.dumps({k: s.model_dump() for k, s in specs.items()}, indent=2))
        return 0
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for k, s in specs.items():
        table.add_row(*row(k, s))
    make_console().print(table)
    return 0


def _tf(x):
    return "-" if x is None else f"{x / 1e12:,.0f} T"


if __name__ == "__main__":
    sys.exit(main())
