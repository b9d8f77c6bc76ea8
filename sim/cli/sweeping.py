"""`dcsim sweep`: many runs of one scenario, resumable, on a pool or a Dask cluster."""
from __future__ import annotations

from rich.table import Table

from .arguments import at_least, command, writable


def add_sweep(sub) -> None:
    sw = command(sub, "sweep", "run a scenario over axes of values and seeds, on a process pool or a Dask cluster", [
        "dcsim sweep quickstart-size-vs-load --list # the example sweep's points, without running them",
        "dcsim sweep quickstart-size-vs-load --workers 2 # results in results/sweep-quickstart-size-vs-load",
        "dcsim sweep quickstart-size-vs-load --out results/size-vs-load --no-point-files # summaries only",
    ])
    sw.add_argument("sweep", help="sweep YAML file (base scenario, axes, seeds), or an example sweep's name "
                                  "(`dcsim catalog scenarios` lists them)")
    sw.add_argument("--out", help="sweep folder (default: results/sweep-<name>); a rerun skips finished points")
    sw.add_argument("--workers", type=at_least(1),
                    help="processes of the local pool (default: the sweep's, else all cores)")
    sw.add_argument("--cluster", help="Dask scheduler address, e.g. tcp://host:8786 ('local': a local Dask "
                                      "cluster); default: the sweep's cluster:, else a local process pool")
    sw.add_argument("--skip-failed", action="store_true", help="do not rerun points that failed before")
    sw.add_argument("--no-point-files", action="store_true",
                    help="workers write no per-request files (summary.json and point.json only)")
    sw.add_argument("--list", action="store_true", help="list the points and exit")
    sw.set_defaults(handler=_sweep)


def _sweep(args) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..results.console import make_console
    from ..scenario import examples
    from ..tools import sweep as sw
    from ..tools.executors import executor_for

    console = make_console()
    if args.out:
        writable(args.out)
    sweep = sw.load_sweep(examples.path_of(args.sweep, examples.SWEEPS), args.out)
    if args.list:
        for t in sweep.tasks:
            console.print(f"{t.point}  {t.axes}  seed {t.seed}" + (f"  variant {t.variant}" if t.variant else ""))
        return 0
    executor = executor_for(args.cluster or sweep.spec.cluster, args.workers or sweep.spec.workers)
    seeds = len({t.seed for t in sweep.tasks})
    console.print(f"sweep {sweep.spec.name}: {len(sweep.tasks)} runs ({len(sweep.tasks) // max(1, seeds)} "
                  f"points x {seeds} seeds) on {executor.where}; folder {sweep.out}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("left"),
               TimeRemainingColumn())
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
