"""Sweeps: one base scenario run at many points (axes over scenario paths) and seeds.

A sweep file names a base scenario and its axes:

    name: fleet-vs-load
    base: ../scenarios/quickstart.yaml      # relative to the sweep file
    variant: null                           # optional: a variant of the base
    set: {duration: 2min}                   # optional: fixed overrides for every point
    mode: grid                              # grid (every combination) or zip (i-th of each)
    axes:
      - {name: replicas, path: fleet.0.count, values: [2, 4, 8]}
      - {name: rate, path: workload.0.rate, range: {from: 10, to: 40, step: 10}, unit: /s}
    seeds: 2                                # a count (the base's seed, +1, ...) or a list
    workers: 2                              # process pool size (default: the machine's cores)
    cluster: tcp://scheduler:8786           # optional: run on a Dask cluster instead

An axis path is any `--set` path (`fleet.0.serve.tp`, `router.policy`, `workload.rate`), or
`variant` to sweep over the base's variants. Each point and seed runs as a task on an
executor (`sim.tools.executors`); its results go to `points/<id>/` (a `dcsim run` folder plus
`point.json`) and one row of `sweep.parquet`: the axes, the seed, the status, and every
figure of its summary flattened (`latency_s.ttft.p99`, `cost.usd_per_m_tokens`, ...), each
headline figure with its 90 % interval beside it (`latency_s.ttft.p99.lo`, `.hi`), and what
produced it (`provenance.dcsim_version`, `provenance.catalog_sha256`,
`provenance.timing.<pool>`: sim.results.provenance). It is per row because each row is its
own run: a resumed sweep keeps rows timed before an upgrade of the measured-kernel package
(the rerun key covers dcsim and the catalog, not that package), and a cluster's workers run
their own installs.

A rerun into the same folder skips the points whose `point.json` says they finished with the
same scenario and seed, so a sweep that was stopped goes on where it was. A point whose
scenario is invalid or whose run raises records its error, and the sweep goes on.
"""
from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import yaml

from ..results.folder import MANIFEST
from ..results.report import _jsonable
from ..spec import source
from ..spec.errors import Loc, Problem, ScenarioError, format_path
from .sweep_spec import SweepSpec

STATUS_OK, STATUS_ERROR = "ok", "error"



@dataclass
class Task:
    """One run of the sweep: a point of the axes and a seed."""
    point: str                      # id, e.g. p0003-s2
    index: int                      # the point's place in the sweep (seeds apart)
    seed: int
    axes: dict[str, Any]            # axis label -> value
    base: str                       # absolute path of the base scenario
    variant: str | None
    overrides: list[str] = field(default_factory=list)
    folder: str = ""                # absolute path of its results folder
    key: str = ""                   # what makes two runs the same (see `_key`)


@dataclass
class Sweep:
    spec: SweepSpec
    src: source.Source          # the sweep file as read (for errors that name its lines)
    tasks: list[Task]
    out: str

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.spec.axes]


# ---- reading a sweep file --------------------------------------------------------------------

def load_sweep(path, out: str | None = None) -> Sweep:
    """A sweep from its file, or from a mapping of the same fields (its `base` relative to
    the working directory), as a notebook writes one."""
    from ..spec.validate import validate

    if isinstance(path, dict):
        src, here = source.Source(data=path, root="<sweep>"), os.getcwd()
    else:
        src, here = source.load(path, plain=True), os.path.dirname(os.path.abspath(path))
    if not isinstance(src.data, dict):
        raise ScenarioError.one(Loc(src.root, 1), "", "a sweep file is a mapping: name:, base:, axes: ...")
    spec = validate(SweepSpec, src.data, src)
    problems = [Problem(src.loc_of(p), format_path(p), m) for p, m in spec.problems()]
    if problems:
        raise ScenarioError(problems)
    base = os.path.normpath(os.path.join(here, spec.base))
    if not os.path.exists(base):
        raise ScenarioError.one(src.loc_of(("base",)), "base", f"scenario file not found: {base}")
    base_data = source.load(base).data
    seeds = _seeds(spec, base_data, src)
    digest = _digest(base, base_data)
    values = [a.points() for a in spec.axes]
    combos = list(itertools.product(*values)) if spec.mode == "grid" else list(zip(*values, strict=True))
    fixed = [f"{k}={_yaml(v)}" for k, v in spec.set.items()]
    out = os.path.abspath(out or os.path.join("results", f"sweep-{spec.name}"))
    tasks = []
    base_name = base_data.get("name")
    for i, combo in enumerate(combos):
        variant, overrides = spec.variant, list(fixed)
        for axis, value in zip(spec.axes, combo, strict=True):
            if axis.path == "variant":
                variant = None if value == base_name else value    # the base by its own name
            else:
                overrides.append(f"{axis.path}={_yaml(value)}{axis.unit}")
        for s in seeds:
            point = f"p{i:04d}-s{s}"
            axis_values = {a.label: v for a, v in zip(spec.axes, combo, strict=True)}
            tasks.append(Task(point, i, s, axis_values, base, variant, overrides,
                              os.path.join(out, "points", point), _key(digest, variant, overrides, s)))
    return Sweep(spec, src, tasks, out)


def _seeds(spec: SweepSpec, base_data: dict, src) -> list[int]:
    if isinstance(spec.seeds, list):
        if not spec.seeds:
            raise ScenarioError.one(src.loc_of(("seeds",)), "seeds", "an empty list: give at least one seed")
        return list(spec.seeds)
    first = base_data.get("seed", 0)
    return [int(first) + k for k in range(spec.seeds or 1)]


def check(sweep: Sweep) -> dict[str, str]:
    """Validate every point's scenario before running. Returns point -> error for the invalid
    ones (they are recorded as failed points); raises when no point is valid, naming the
    sweep file's axes, since then the sweep itself is wrong."""
    from ..scenario import load_scenario

    errors: dict[str, str] = {}
    seen: dict[tuple, str | None] = {}
    for t in sweep.tasks:
        k = (t.variant, tuple(t.overrides))
        if k not in seen:
            try:
                load_scenario(t.base, t.overrides, t.variant)
                seen[k] = None
            except ScenarioError as exc:
                seen[k] = "; ".join(str(p) for p in exc.problems)
        if seen[k] is not None:
            errors[t.point] = seen[k]
    if sweep.tasks and len(errors) == len(sweep.tasks):
        first = errors[sweep.tasks[0].point]
        raise ScenarioError([Problem(sweep.src.loc_of(("axes",)), "axes", f"no point of the sweep is a valid scenario; "
                                                                      f"the first: {first}")])
    return errors


# ---- running one point (in a worker process) --------------------------------------------------

def run_task(task: Task, write_files: bool = True) -> dict:
    """Simulate one point and return its row; never raises (an error is the row's status).
    With `write_files` the worker writes the run's results folder (on a cluster, that needs
    a file system the client shares; the client writes summary.json and point.json itself)."""
    t0 = time.perf_counter()
    try:
        from ..results.report import write_results
        from ..results.summary import summarize
        from ..scenario import load_scenario
        from ..simulation import simulate

        scenario = load_scenario(task.base, task.overrides, task.variant)
        result = simulate(scenario, seed=task.seed)
        summary = summarize(result)
        if write_files:
            write_results(result, summary, task.folder)
        summary = json.loads(json.dumps(summary, default=_jsonable))
        return {"status": STATUS_OK, "error": None, "wall_s": time.perf_counter() - t0, "summary": summary}
    except ScenarioError as exc:
        message = "; ".join(str(p) for p in exc.problems)
    except Exception as exc:     # a run that raises is recorded, and the sweep goes on
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    return {"status": STATUS_ERROR, "error": message, "wall_s": time.perf_counter() - t0, "summary": None}


# ---- rows and the table -----------------------------------------------------------------------

def row_of(task: Task, outcome: dict, out: str) -> dict:
    row = {"point": task.point, "seed": task.seed, **task.axes, "status": outcome["status"],
           "error": outcome["error"], "wall_s": outcome["wall_s"],
           "folder": os.path.relpath(task.folder, out), "key": task.key}
    summary = outcome.get("summary")
    if summary is not None:
        from .compare import row as compare_row
        bounds = (summary.get("intervals") or {}).get("figures", {})
        row.update(flatten({k: v for k, v in summary.items() if k != "intervals"}))
        row.update(flatten({k: v for k, v in summary["intervals"].items() if k != "figures"}, "intervals.")
                   if summary.get("intervals") else {})
        for figure, (lo, hi) in bounds.items():      # each figure's 90 % interval beside it
            row[f"{figure}.lo"], row[f"{figure}.hi"] = lo, hi
        short = compare_row(summary)
        row["devices"], row["fleet"] = short["devices"], short["fleet"]
    return row


NAMED_BY = ("tenant", "pool", "stream")     # lists of these become columns per name


def flatten(tree: dict, prefix: str = "") -> dict:
    """Scalars of a nested dict as {'a.b.c': value}. A list of entries named by a tenant, pool
    or stream (the summary's `tenants`, `pools`, `sessions.streams`) goes in by name:
    `tenants.chat.slo.attainment`; other lists are left out."""
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        elif isinstance(v, list) and v and all(isinstance(e, dict) for e in v):
            key = next((n for n in NAMED_BY if all(n in e for e in v) and len({e[n] for e in v}) == len(v)), None)
            if key is not None:       # (replicas, keyed by pool too but not one a pool, are left out)
                for e in v:
                    out.update(flatten({m: x for m, x in e.items() if m != key}, f"{name}.{e[key]}."))
        elif isinstance(v, list) and 0 < len(v) <= 4 and all(isinstance(e, (int, float)) for e in v):
            out.update({f"{name}.{i}": e for i, e in enumerate(v)})      # window_s.0, window_s.1
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[name] = v
    return out


def record(task: Task, outcome: dict, out: str) -> dict:
    """Write the point's point.json (and summary.json) in the client's folder; return its row."""
    os.makedirs(task.folder, exist_ok=True)
    row = row_of(task, outcome, out)
    # a worker that wrote the point's results folder wrote its summary.json (and sealed it)
    sealed = os.path.isfile(os.path.join(task.folder, MANIFEST))
    if outcome.get("summary") is not None and not sealed:
        with open(os.path.join(task.folder, "summary.json"), "w") as fh:
            json.dump(outcome["summary"], fh, indent=2)
    tmp = os.path.join(task.folder, "point.json.tmp")
    with open(tmp, "w") as fh:
        json.dump({"point": task.point, "seed": task.seed, "axes": task.axes, "key": task.key,
                   "status": outcome["status"], "error": outcome["error"], "wall_s": outcome["wall_s"],
                   "row": row}, fh, indent=2, default=_jsonable)
    os.replace(tmp, os.path.join(task.folder, "point.json"))    # whole or absent, even if killed
    return row


def recorded(task: Task) -> dict | None:
    """The point.json of a run already made with the same scenario and seed, else None."""
    try:
        with open(os.path.join(task.folder, "point.json")) as fh:
            done = json.load(fh)
    except (OSError, ValueError):
        return None
    return done if done.get("key") == task.key else None


def table(sweep: Sweep, rows: list[dict]) -> pd.DataFrame:
    """The sweep's rows in task order, the axes first."""
    order = {t.point: i for i, t in enumerate(sweep.tasks)}
    frame = pd.DataFrame(sorted(rows, key=lambda r: order[r["point"]]))
    first = ["point", "seed", *sweep.labels, "status", "error", "wall_s", "folder"]
    rest = [c for c in frame.columns if c not in first and c != "key"]
    for column in frame.columns:             # object columns of mixed scalars: parquet wants one type
        if frame[column].dtype == object and column not in sweep.labels:
            kinds = {type(v) for v in frame[column] if v is not None and v == v}
            if len(kinds) > 1:
                frame[column] = frame[column].map(lambda v: v if v is None or v != v else str(v))
    for label in sweep.labels:               # axis values of several kinds (2, "4", {...}, null) as text
        values = [t.axes[label] for t in sweep.tasks]
        kinds = {type(v) for v in values}
        if len(kinds) > 1 or kinds & {dict, list}:
            text = {t.point: (v if isinstance(v, str) else _yaml(v)) for t, v in zip(sweep.tasks, values, strict=True)}
            frame[label] = frame["point"].map(text)
    return frame[[c for c in first if c in frame.columns] + rest]


def write(sweep: Sweep, rows: list[dict]) -> str:
    os.makedirs(sweep.out, exist_ok=True)
    path = os.path.join(sweep.out, "sweep.parquet")
    tmp = path + ".tmp"
    table(sweep, rows).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def describe(sweep: Sweep) -> dict:
    spec = sweep.spec
    return {"name": spec.name, "base": sweep.tasks[0].base if sweep.tasks else spec.base, "variant": spec.variant,
            "mode": spec.mode, "set": spec.set,
            "axes": [{"name": a.label, "path": a.path, "values": a.points(), "unit": a.unit} for a in spec.axes],
            "seeds": sorted({t.seed for t in sweep.tasks}), "points": len(sweep.tasks)}


# ---- the whole sweep ----------------------------------------------------------------------------

@dataclass
class Outcome:
    rows: list[dict]
    ran: int
    skipped: int
    failed: int
    wall_s: float
    table_path: str


def run_sweep(sweep: Sweep, executor, progress=None, retry_failed: bool = True, write_files: bool = True) -> Outcome:
    """Run the tasks not yet finished on `executor` (`sim.tools.executors`), recording each as it
    completes; `progress(done, total, failed)` is called after each."""
    t0 = time.perf_counter()
    os.makedirs(sweep.out, exist_ok=True)
    with open(os.path.join(sweep.out, "sweep.json"), "w") as fh:
        json.dump(describe(sweep), fh, indent=2, default=_jsonable)
    invalid = check(sweep)
    rows, todo = [], []
    for t in sweep.tasks:
        done = recorded(t)
        if done is not None and (done["status"] == STATUS_OK or not retry_failed):
            rows.append(done["row"])
        elif t.point in invalid:
            rows.append(record(t, {"status": STATUS_ERROR, "error": invalid[t.point], "wall_s": 0.0}, sweep.out))
        else:
            todo.append(t)
    skipped = len(rows)
    failed = sum(r["status"] != STATUS_OK for r in rows)
    if progress:
        progress(skipped, len(sweep.tasks), failed)
    last_write = 0.0
    for task, outcome in executor.map_unordered(run_task, todo, write_files):
        row = record(task, outcome, sweep.out)
        rows.append(row)
        failed += row["status"] != STATUS_OK
        if progress:
            progress(len(rows), len(sweep.tasks), failed)
        if time.perf_counter() - last_write > 2.0:      # a table to look at while it runs
            write(sweep, rows)
            last_write = time.perf_counter()
    path = write(sweep, rows)
    return Outcome(rows, len(todo), skipped, failed, time.perf_counter() - t0, path)


def run(spec, out: str | None = None, workers: int | None = None, cluster: str | None = None,
        retry_failed: bool = True) -> pd.DataFrame:
    """Run a sweep (a file, or a mapping of its fields) and return its table: the call a
    notebook makes. Runs go to the sweep's cluster, else a local pool. The pool's workers are
    fresh processes that import the calling script, so a script that calls this puts it under
    `if __name__ == "__main__":` (as with any multiprocessing); notebooks need nothing."""
    from .executors import executor_for

    sweep = load_sweep(spec, out)
    executor = executor_for(cluster or sweep.spec.cluster, workers or sweep.spec.workers)
    try:
        outcome = run_sweep(sweep, executor, retry_failed=retry_failed)
    finally:
        executor.close()
    frame = table(sweep, outcome.rows)
    frame.attrs["axes"] = sweep.labels
    return frame


# ---- helpers ------------------------------------------------------------------------------------

def _yaml(value) -> str:
    """A value as the YAML text of a --set assignment."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip().removesuffix("\n...")


def _key(digest: str, variant, overrides: list[str], seed: int) -> str:
    """What makes two runs the same: the base scenario (`_digest`), variant, overrides and seed."""
    text = json.dumps([digest, variant, overrides, seed])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(path: str, data: dict) -> str:
    """The base scenario's identity: its path, its contents with every included file merged
    in (`data`), the files it names (traces, calibration overlays), the catalog and the dcsim
    version. A point reruns when any of them changed."""
    from .. import __version__, catalog
    h = hashlib.sha256(json.dumps([path, __version__, data], sort_keys=True, default=str).encode())
    named = sorted({v for _, v in source.walk(data) if isinstance(v, str) and os.path.isfile(v)})
    shipped = sorted(glob.glob(os.path.join(os.path.dirname(catalog.__file__), "*.*")))
    for name in named + shipped:
        with open(name, "rb") as fh:
            h.update(name.encode() + b"\0" + fh.read())
    return path + ":" + h.hexdigest()[:16]



__all__ = ["load_sweep", "run", "run_sweep", "run_task", "flatten", "table", "Sweep", "Task"]
