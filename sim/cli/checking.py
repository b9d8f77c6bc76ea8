"""Commands that check and list: validate, validate-model, topology, catalog."""
from __future__ import annotations

import json
import os

from rich.table import Table

from .arguments import SCENARIO_HELP, add_overrides, command


def add_validate(sub) -> None:
    val = command(sub, "validate", "check a scenario without running it", [
        "dcsim validate quickstart # an example scenario, by name",
        "dcsim validate gpu-vs-asic --variant inferentia2",
        "dcsim validate quickstart --set fleet.0.count=4 --set workload.0.rate=20/s",
    ])
    val.add_argument("scenario", help=SCENARIO_HELP)
    add_overrides(val)
    val.add_argument("--variant", help="check this variant of the scenario")
    val.set_defaults(handler=_validate)


def add_validate_model(sub) -> None:
    vm = command(sub, "validate-model", "hold the simulator's predictions against published figures", [
        "dcsim validate-model --fast --report '' # the quick cases, no report written",
        "dcsim validate-model --level kernel --level step --report kernel-step.md",
        "dcsim validate-model --strict # every case, as `make validate`: exit 1 on a miss",
    ], description="Hold the simulator's predictions against published figures. The cases are those of a clone "
                   "of the repository (validation/cases); run it from there. A full run of them also records the "
                   "held-out errors that every run's intervals come from.")
    vm.add_argument("cases", nargs="?", default="validation/cases", help="folder of case files")
    vm.add_argument("--level", action="append", choices=["kernel", "step", "serving", "queueing"],
                    help="only these levels (repeatable)")
    vm.add_argument("--fast", action="store_true", help="skip cases marked slow")
    vm.add_argument("--report", default="validation/report.md", help="markdown report to write ('' for none)")
    vm.add_argument("--strict", action="store_true", help="exit 1 when a case misses its tolerance")
    vm.add_argument("--accuracy", default=None, metavar="JSON",
                    help="where to record the held-out errors that every run's intervals come from "
                         "(default: the catalog's accuracy.json, on a full run of the shipped cases only)")
    vm.set_defaults(handler=_validate_model)


def add_topology(sub) -> None:
    topo = command(sub, "topology", "summarize a topology file and optionally draw it", [
        "dcsim topology hgx-h100-node # an example topology, by name",
        "dcsim topology rail-64x8-h100 --json",
        "dcsim topology rail-4x8-h100 --png rail-4x8-h100.png # and draw its graph",
    ])
    topo.add_argument("file", help="topology YAML file, or an example's name (`dcsim catalog scenarios` lists "
                                   "them)")
    topo.add_argument("--png", help="draw the graph to this PNG file")
    topo.add_argument("--json", action="store_true", help="print the summary as JSON")
    topo.set_defaults(handler=_topology)


def add_catalog(sub) -> None:
    cat = command(sub, "catalog", "list the devices or models in the catalog, or the example scenarios", [
        "dcsim catalog scenarios # the examples that `dcsim run NAME` runs",
        "dcsim catalog devices",
        "dcsim catalog models --json",
    ])
    cat.add_argument("what", choices=["devices", "models", "scenarios"], help="what to list")
    cat.add_argument("--json", action="store_true", help="print the entries as JSON")
    cat.set_defaults(handler=_catalog)


def _validate(args) -> int:
    from ..scenario import load_scenario
    from ..spec.units import format_bytes

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
    from ..catalog import accuracy
    from ..results.console import make_console
    from ..tools import fidelity
    from ..tools.fidelity_report import _num, _pct, markdown_report

    if not os.path.isdir(args.cases):    # an installed dcsim has no cases: say so rather than check none
        from ..spec.errors import Loc, ScenarioError
        raise ScenarioError.one(Loc(args.cases), "", "no such folder of validation cases (they are in a clone of "
                                                     "the repository: run dcsim validate-model from its top folder)")
    console = make_console()
    outcomes = fidelity.run_cases(args.cases, levels=args.level, fast=args.fast,
                                  progress=lambda o: console.print(
                                      f"{'ok  ' if o.ok else 'MISS' if o.error is not None else 'ERR '} "
                                      f"{o.case.id}: predicted {_num(o.predicted)} vs "
                                      f"{_num(o.reference)} {o.case.reference.unit} "
                                      f"({_pct(o.error)}){' ' + o.failure if o.failure else ''}"))
    _print_errors(console, outcomes)
    entries = [e for e in (o.entry() for o in outcomes) if e is not None]
    cover = accuracy.coverage(entries) if entries else {}
    _record_accuracy(console, args, entries, cover)
    families = [] if args.level and "kernel" not in args.level else _crosscheck_kernels(console)
    if args.report:
        os.makedirs(os.path.dirname(args.report) or ".", exist_ok=True)
        with open(args.report, "w") as fh:
            fh.write(markdown_report(outcomes, families, cover))
        console.print(f"report: {args.report}")
    missed = [o for o in outcomes if not o.ok]
    return 1 if args.strict and missed else 0


def _print_errors(console, outcomes) -> None:
    """The error per level and role, and the held-out headlines."""
    from ..tools.fidelity_report import _pct, headline, summary_rows, tensor_parallel_steps

    table = Table(title="error by level (|predicted - reference| / reference)", title_justify="left")
    for col in ("level", "role", "cases", "within tolerance", "median", "worst", "median signed"):
        table.add_column(col, justify="left" if col in ("level", "role") else "right")
    for r in summary_rows(outcomes):
        table.add_row(r["level"], r["role"], str(r["cases"]), str(r["within_tolerance"]),
                      _pct(r["median_abs_error"]).lstrip("+"), _pct(r["worst_abs_error"]).lstrip("+"),
                      _pct(r["median_error"]))
    console.print(table)
    head = headline(outcomes)
    console.print(f"held-out kernel/step/serving: {head['held_out_cases']} cases, median "
                  f"{_pct(head['median_abs_error']).lstrip('+')}, worst "
                  f"{_pct(head['worst_abs_error']).lstrip('+')}")
    e2e = headline(outcomes, ("step", "serving"))
    console.print(f"held-out step/serving (end to end): {e2e['held_out_cases']} cases, median "
                  f"{_pct(e2e['median_abs_error']).lstrip('+')}")
    tp = tensor_parallel_steps(outcomes)
    console.print(f"held-out step cases at tp > 1: {tp['cases']}, median signed error "
                  f"{_pct(tp['median_error'])}")


def _record_accuracy(console, args, entries, cover) -> None:
    """The intervals' coverage, and the held-out errors saved for every run's intervals (to
    --accuracy, or the catalog's file on a full run of the shipped cases)."""
    from ..catalog import accuracy

    for level, c in cover.items():
        console.print(f"{accuracy.CONFIDENCE:.0%} intervals (each held-out case left out of its own): {level} "
                      f"{c['inside']}/{c['cases']} inside, coverage {c['coverage']:.0%}")
    full_run = not args.level and not args.fast and os.path.abspath(args.cases) == os.path.abspath("validation/cases")
    target = args.accuracy or (accuracy.PATH if full_run else None)
    if target and entries:
        accuracy.save(entries, target)
        console.print(f"held-out errors for the run intervals: {target}")


def _crosscheck_kernels(console) -> list:
    """The analytical model against every measured kernel: its families, printed."""
    from ..timing import crosscheck
    from ..tools.fidelity_report import _pct

    families = crosscheck.run()
    if families:
        table = Table(title="analytical model against every measured kernel (predicted / measured - 1)",
                      title_justify="left")
        for col in ("device", "family", "role", "kernels", "median", "p90", "median signed"):
            table.add_column(col, justify="left" if col in ("device", "family", "role") else "right")
        for f in families:
            r = f.row()
            table.add_row(r["device"], r["family"], r["role"], f"{r['kernels']:,}",
                          _pct(r["median_abs_error"]).lstrip("+"), _pct(r["p90_abs_error"]).lstrip("+"),
                          _pct(r["median_error"]))
        console.print(table)
        k = crosscheck.headline(families)
        console.print(f"measured-kernel cross-device held-out: {k['kernels']:,} kernels, median "
                      f"{_pct(k['median_abs_error']).lstrip('+')}")
    return families


def _topology(args) -> int:
    from ..fabric.topology import load_topology, summarize_topology
    from ..fabric.topology_drawing import draw_topology
    from ..scenario import examples
    from ..spec.units import format_bytes

    spec = load_topology(examples.path_of(args.file, examples.TOPOLOGIES))
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


def _catalog(args) -> int:
    from .. import catalog
    from ..catalog.hardware import DeviceSpec
    from ..catalog.models import ModelSpec
    from ..results.console import make_console
    from ..spec.units import format_bytes

    if args.what == "scenarios":
        return _example_scenarios(args.json)
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


def _example_scenarios(as_json: bool) -> int:
    """`dcsim catalog scenarios`: the examples that ship with dcsim, each by name with its purpose."""
    from ..results.console import make_console
    from ..scenario import examples

    found = examples.listing()
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    console = make_console()
    table = Table(title="example scenarios: dcsim run NAME (or validate, compare, plan NAME)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("purpose")
    for name, entry in found.items():
        table.add_row(name, entry["purpose"])
    console.print(table)
    console.print(f"sweeps (dcsim sweep NAME): {', '.join(examples.names(examples.SWEEPS)) or '-'}")
    console.print(f"topologies (dcsim topology NAME): {', '.join(examples.names(examples.TOPOLOGIES)) or '-'}")
    console.print(f"files: {examples.folder()} (copy one to start your own)")
    return 0


def _tf(x):
    return "-" if x is None else f"{x / 1e12:,.0f} T"
