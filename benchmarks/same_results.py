"""Check that a change to the code leaves results unchanged.

    python -m benchmarks.same_results against REV    # this tree's results against commit REV's
    python -m benchmarks.same_results capture DIR    # run every case into DIR/<case>/
    python -m benchmarks.same_results compare A B    # exit 1 if any case differs

`against` checks out REV in a temporary `git worktree`, captures there and here, and
compares (`make same-results BASE=REV`). Both runs use this environment's packages.
The cases are the quickstart, bench-1m's fleet at 100k requests, and every scenario in
scenarios/ cut to one simulated minute. Each case's summary.json (less wall-clock fields,
the run's own paths and its `provenance` object), requests.parquet and devices.parquet must
be equal. `provenance` is left out because it names the dcsim version and catalog digest
that made the run, which legitimately differ between the two commits; the figures
themselves must not.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TABLES = ("requests.parquet", "devices.parquet")


def cases() -> dict[str, list[str]]:
    """Case name -> `dcsim run` arguments (scenario and --set overrides)."""
    from benchmarks.run import BENCH_1M, LOAD, replica_capacity
    rate = LOAD * 64 * replica_capacity(BENCH_1M)
    out = {"quickstart": ["scenarios/quickstart.yaml"],
           "bench-1m-100k": [BENCH_1M, "--set", "fleet.0.count=256", "--set",
                             f"workload.0.rate={rate:.3f}/s", "--set", f"duration={100_000 / rate:.3f}s"]}
    for path in sorted(glob.glob(os.path.join(ROOT, "scenarios", "*.yaml"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if name != "quickstart":
            out[name] = [os.path.relpath(path, ROOT), "--set", "duration=60s", "--set", "warmup=0s"]
    return out


def capture(folder: str, jobs: int) -> int:
    os.makedirs(folder, exist_ok=True)

    def one(item):
        name, args = item
        # `python -c` puts the working folder first on the path: the code of ROOT runs
        cmd = [sys.executable, "-c", "import sys; from sim.cli import main; sys.exit(main(sys.argv[1:]))",
               "run", *args, "--out", os.path.join(folder, name), "--json"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        return name, proc.returncode, proc.stderr[-2000:]

    failed = 0
    with ThreadPoolExecutor(jobs) as pool:
        for name, rc, err in pool.map(one, cases().items()):
            print(f"{name}: exit {rc}", flush=True)
            if rc != 0:
                failed += 1
                print(err, file=sys.stderr)
    return 1 if failed else 0


# summary.json's top-level sections that describe what made the run, not its results
NOT_COMPARED = ("provenance",)


def _steady(value, path=""):
    """The summary without what legitimately changes between two runs of the same model."""
    if isinstance(value, dict):
        return {k: _steady(v, f"{path}.{k}") for k, v in value.items()
                if "wall" not in k and k not in ("out", "path", "results", "command")
                and not (path == "" and k in NOT_COMPARED)}
    if isinstance(value, list):
        return [_steady(v, path) for v in value]
    return value


def compare(old: str, new: str) -> int:
    differ = 0
    names = sorted(os.listdir(old))
    for name in names:
        a, b = os.path.join(old, name), os.path.join(new, name)
        problems = []
        if not os.path.isdir(b):
            problems.append("missing")
        else:
            with open(os.path.join(a, "summary.json")) as fa, open(os.path.join(b, "summary.json")) as fb:
                if json.dumps(_steady(json.load(fa))) != json.dumps(_steady(json.load(fb))):   # order too
                    problems.append("summary.json")
            for table in TABLES:
                pa, pb = os.path.join(a, table), os.path.join(b, table)
                if os.path.exists(pa) != os.path.exists(pb):
                    problems.append(f"{table} present in one only")
                elif os.path.exists(pa) and not pd.read_parquet(pa).equals(pd.read_parquet(pb)):
                    problems.append(table)
        print(f"{name}: {'same' if not problems else 'DIFFERS in ' + ', '.join(problems)}")
        differ += bool(problems)
    print(f"{len(names) - differ} of {len(names)} cases give the same results "
          f"(summary.json compared without its {', '.join(NOT_COMPARED)}: it names what made each run)")
    return 1 if differ else 0


def against(rev: str, jobs: int) -> int:
    """Capture at commit `rev` (in a temporary worktree, with this script copied in) and here."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "tree")
        subprocess.run(["git", "worktree", "add", "--detach", "-q", tree, rev], cwd=ROOT, check=True)
        try:
            shutil.copy(os.path.abspath(__file__), os.path.join(tree, "benchmarks", "same_results.py"))
            old, new = os.path.join(tmp, "old"), os.path.join(tmp, "new")
            # `python -m` puts the working folder first on the path: the worktree's code runs there
            subprocess.run([sys.executable, "-m", "benchmarks.same_results", "capture", old, "--jobs", str(jobs)],
                           cwd=tree, check=True)
            if capture(new, jobs):
                return 1
            return compare(old, new)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cap = sub.add_parser("capture")
    cap.add_argument("folder")
    cap.add_argument("--jobs", type=int, default=2)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("old")
    cmp_.add_argument("new")
    base = sub.add_parser("against")
    base.add_argument("rev")
    base.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.what == "against":
        return against(args.rev, args.jobs)
    if args.what == "capture":
        return capture(os.path.abspath(args.folder), args.jobs)
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
