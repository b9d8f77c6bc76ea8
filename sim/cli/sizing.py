"""Commands that size fleets: plan, calibrate."""
from __future__ import annotations

import json
import os

from rich.table import Table

from ..spec.errors import ScenarioError
from ..spec.units import duration_or_dash
from .arguments import add_overrides, at_least, command, degrees, loc, share, writable


def add_plan(sub) -> None:
    plan = command(sub, "plan", "smallest fleet per device that meets an SLO, or the most load a fleet takes", [
        "dcsim plan quickstart # the scenario's device, load and SLO",
        ("dcsim plan quickstart --devices nvidia-h100-sxm,nvidia-a100-80gb --rate 80/s --slo ttft_p99=1s,tpot_p99=80ms"
         " # two devices, at twice the load and a tighter SLO"),
        "dcsim plan quickstart --max-load # the most load its own fleet takes",
    ])
    plan.add_argument("scenario", help="scenario file or example name, with one pool: its model, precision and "
                                       "engine are kept")
    plan.add_argument("--slo", help="targets, e.g. ttft_p99=2s,tpot_p99=100ms (default: the scenario's)")
    plan.add_argument("--rate", help="total request rate to size for, e.g. 40/s (default: the scenario's)")
    plan.add_argument("--devices", help="comma-separated catalog devices (default: the scenario's device)")
    plan.add_argument("--all-devices", action="store_true", help="every device in the catalog")
    plan.add_argument("--tp", type=degrees,
                      help="comma-separated tensor-parallel degrees to try (default: 1, 2, 4, ... up to a server)")
    plan.add_argument("--max-devices", type=at_least(1),
                      help="largest fleet to try (default: 16 x what the load needs at full batches, per layout)")
    plan.add_argument("--tolerance", type=share, default=0.0,
                      help="stop bisecting within this share of the count (default 0: exact)")
    plan.add_argument("--seeds", type=at_least(1), default=3,
                      help="seeds each answer must meet the SLO with (default 3: the scenario's and the next two)")
    plan.add_argument("--max-load", action="store_true",
                      help="instead: the highest rate the scenario's own fleet sustains within the SLO")
    add_overrides(plan)
    plan.add_argument("--out", help="folder for plan.json (default: results/plan-<name>)")
    plan.set_defaults(handler=_plan)


def add_calibrate(sub) -> None:
    example = "scenarios/calibration/"     # example benchmark files, in a clone of the repository
    cal = command(sub, "calibrate", "fit device and host factors to your cluster's benchmark results", [
        (f"dcsim calibrate {example}h100-llama8b.yaml {example}vllm-bench-rate4.json {example}vllm-bench-rate8.json "
         f"{example}vllm-bench-rate12.json # vllm bench serve results at three loads"),
        (f"dcsim calibrate {example}h100-llama8b.yaml {example}sglang-bench.jsonl {example}step-times.csv "
         "--out my-cluster.yaml # SGLang results and measured step times"),
    ], description="Fit the simulator to measurements of your own cluster: vllm bench serve result JSON, SGLang "
                   "bench_serving JSONL, or a CSV of step times (batch, prompt_tokens, context, step_time_ms). Half "
                   "the measurements fit, half check; the overlay written is applied by a scenario's `calibration: "
                   f"FILE`. The examples read the made-up benchmark files in {example} of a clone of the repository.")
    cal.add_argument("scenario", help="scenario file or example name whose pool the files measured (its device, "
                                      "model, tp, engine)")
    cal.add_argument("files", nargs="+", help="benchmark result files (.json, .jsonl) and step-time CSVs (.csv)")
    cal.add_argument("--pool", help="the pool the files measured (when the scenario has several)")
    cal.add_argument("--out", default="calibration.yaml", help="overlay to write (default: calibration.yaml)")
    add_overrides(cal)
    cal.set_defaults(handler=_calibrate)


def _plan(args) -> int:
    import time

    from ..results.console import make_console
    from ..scenario import examples
    from ..spec.units import parse_rate
    from ..tools.plan import Planner, parse_slo

    console = make_console()
    wall0 = time.perf_counter()

    def progress(t):
        # runs only once the search has started, after `planner` and `out` below are set
        _write_plan(out, planner, [], None, None, complete=False)   # every finished trial on disk
        _print_trial(console, t, planner.base.spec.seed)

    slo = parse_slo(args.slo) if args.slo else None
    try:
        rate = parse_rate(args.rate) if args.rate else None
    except Exception as exc:
        raise ScenarioError.one(loc("--rate"), "rate", str(exc)) from None
    planner = Planner(examples.path_of(args.scenario), slo, rate, args.overrides, args.tolerance, args.max_devices,
                      progress, args.tp, args.seeds)
    name = planner.base.name
    out = writable(args.out or os.path.join("results", f"plan-{name}"))
    os.makedirs(out, exist_ok=True)
    targets = ", ".join(f"{k} {duration_or_dash(v)}" for k, v in planner.base.spec.slo.targets.items())
    load = rate or planner.rate0
    if args.max_load:
        code = _max_load(console, planner, out, name, targets)
    else:
        code = _smallest_fleets(console, args, planner, out, name, targets, load)
    console.print(f"{len(planner.trials)} simulations in {time.perf_counter() - wall0:.1f}s; {out}/plan.json")
    return code


def _print_trial(console, t, base_seed) -> None:
    """One line per simulation the search ran, as it finishes."""
    load = f" at {t.rate:,.1f}/s" if t.rate is not None else ""
    seed = f" seed {t.seed}" if t.seed != base_seed else ""
    console.print(f"  {t.device} {t.precision} tp{t.tp}" + (f" pp{t.pp}" if t.pp > 1 else "")
                  + f" x {t.replicas} replicas ({t.devices} devices){load}{seed}: "
                  + ("meets" if t.met else f"misses ({t.why})") + f"  [{t.wall_s:.1f}s]")


def _max_load(console, planner, out, name, targets) -> int:
    """--max-load: the highest rate the scenario's own fleet sustains within the SLO."""
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
    return 0


def _smallest_fleets(console, args, planner, out, name, targets, load) -> int:
    """The forward search: the smallest fleet per device, its price basis and the cheapest."""
    from .. import catalog
    from ..catalog import economics

    if args.all_devices:
        devices = list(catalog.device_entries())
    elif args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    else:
        devices = [planner.base.pools[0].device_key]
    console.print(f"[bold]{name}[/bold]: smallest fleet meeting {targets} at "
                  f"{'-' if load is None else f'{load:,.2f}/s'} for {planner.base.pools[0].model_key}")
    plans = planner.plan(devices)
    table, answers = _plan_table(plans, args.seeds)
    console.print(table)
    eco = planner.base.spec.economics
    basis = economics.describe(planner.basis.name, eco.amortize_years, eco.cost_of_capital, eco.usd_per_kwh, eco.pue)
    console.print(f"pricing: {basis}" + (f" ({planner.basis.chosen_by})" if planner.basis.chosen_by else ""))
    for b in answers:
        console.print(f"interval {b.device}: {b.interval_basis}")
    best_overall = _print_cheapest(console, answers)
    for note in sorted(planner.notes):
        console.print(f"note: {note}")
    _write_plan(out, planner, plans, None, None)
    return 0 if best_overall is not None else 1


def _plan_table(plans, seeds):
    """The table of each device's answer (or why it has none), and the answers."""
    table = Table(title=f"smallest fleet per device meeting the SLO with {seeds} seed(s); one replica fewer "
                        f"misses; (range): the fleet a real system needs, from the 90% interval", title_justify="left")
    for c in ("device", "precision", "layout", "replicas", "devices", "TTFT p99", "TPOT p99", "pricing", "$/h",
              "$/M tok", "fewer misses"):
        table.add_column(c, justify="left" if c in ("device", "precision", "layout", "pricing", "fewer misses")
                         else "right")
    answers = []
    for p in plans:
        lay = p.best
        if lay is None:
            notes = list(dict.fromkeys(layout.note for layout in p.layouts if layout.note))
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
    return table, answers


def _print_cheapest(console, answers):
    """The cheapest answer, and the others whose cost lies inside its error; returns it."""
    best_overall = _cheapest(answers)
    if best_overall is not None:
        b = best_overall
        d_lo, d_hi = b.device_range()
        console.print(f"cheapest: {b.devices:,} x {b.device} ({d_lo:,}-{d_hi:,}; {b.precision}, tp{b.tp}"
                      + (f" x pp{b.pp}" if b.pp > 1 else "") + f", {b.replicas:,} replicas)"
                      + ("" if b.usd_per_hour is None
                         else f" at ${b.usd_per_hour:,.2f}/h = ${b.usd_per_hour * 24:,.0f}/day ({b.pricing})"))
        for other in within_error(b, answers):
            o_lo, o_hi = other.usd_range()
            lo, hi = b.usd_range()
            console.print(f"[bold]not decisive:[/bold] {other.device} costs ${other.usd_per_hour:,.2f}/h "
                          f"(${o_lo:,.2f}-{o_hi:,.2f}), inside the error of the cheapest (${lo:,.2f}-{hi:,.2f})")
    else:
        console.print("no device in the search meets the SLO")
    return best_overall


def _cheapest(answers):
    """The answer with the lowest $/h (then the fewest devices)."""
    return min(answers, key=lambda b: (b.usd_per_hour if b.usd_per_hour is not None else float("inf"), b.devices),
               default=None)


def within_error(best, answers):
    """Other devices whose cost range overlaps the cheapest's: the ranking is inside the error."""
    mine = best.usd_range()
    if mine is None:
        return []
    return [a for a in answers if a is not best and a.usd_range() is not None and a.usd_range()[0] <= mine[1]]


def _write_plan(out, planner, plans, ok, fail, complete: bool = True) -> None:
    """plan.json: every trial, and (complete) the answers; written after each trial too, with
    complete: false, so a plan stopped midway keeps what it ran."""
    from dataclasses import asdict

    from ..results.provenance import install

    doc = {"scenario": planner.path, "complete": complete, "provenance": install(), "notes": sorted(planner.notes),
           "pricing": planner.basis.name if planner.basis else None,
           "trials": [asdict(t) | {"devices": t.devices} for t in planner.trials],
           "devices": [{"device": p.device, "note": p.note,
                        "layouts": [{"tp": layout.tp, "pp": layout.pp, "precision": layout.precision,
                                     "note": layout.note, "seeds_checked": layout.seeds_checked,
                                     "best": None if layout.best is None else asdict(layout.best) | {
                                         "replica_range": list(layout.best.replica_range()),
                                         "device_range": list(layout.best.device_range()),
                                         "usd_per_hour_range": layout.best.usd_range()},
                                     "below": None if layout.below is None else asdict(layout.below)}
                                    for layout in p.layouts]}
                       for p in plans]}
    if ok is not None or fail is not None:
        doc["max_load"] = {"sustained": None if ok is None else asdict(ok) | {"rate_range": ok.rate_range()},
                           "missed": None if fail is None else asdict(fail)}
    tmp = os.path.join(out, "plan.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2)
    os.replace(tmp, os.path.join(out, "plan.json"))


def _calibrate(args) -> int:
    from ..results.console import make_console
    from ..scenario import examples
    from ..tools.calibrate import Calibrator, write_overlay

    console = make_console()
    writable(args.out, folder=False)
    calibrator = Calibrator(examples.path_of(args.scenario), args.files, args.pool, args.overrides)
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
