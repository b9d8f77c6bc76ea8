"""Speed benchmark: wall time, simulated requests per wall second, SimPy events per request,
the share of time in compiled (numba) code, and peak memory.

    make bench                               # the full suite (about 10 minutes on 2 cores)
    python -m benchmarks.run --suite quick   # quickstart at 100k requests and the 512-GPU fabric
    python -m benchmarks.run --only bench-1m,startup

Full suite:
  bench-1m       1,000,000 requests (1,024 in / 256 out), Poisson at 85% of the fleet's
                 capacity, Llama 2 70B at TP4 on 64 H100 replicas, chunked prefill
  bench-fleet    1,024 replicas of Llama 3.1 405B FP8 at TP8 (8,192 H100s) on a rail-optimized
                 fabric, every prompt and reply a flow; 10 simulated minutes of chat at 85% load
  scale-requests bench-1m's fleet at 10k and 100k requests (1M is bench-1m)
  scale-replicas 100k requests at 85% load per replica on 8, 64, 256 and 1,024 replicas
  startup        `dcsim run` of a 2-second scenario with an empty numba cache, then again
  sweep          `dcsim sweep` of 100 quickstart runs (50 points of fleet size x load, 2 seeds) on 2 workers

Each case runs in a child process that reports its peak RSS and the seconds spent inside the
compiled kernels. Capacity (for "85% load") is measured by the simulator itself: one replica
under a saturating closed loop. The table is printed and written to benchmarks/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QUICKSTART_RATE = 40.0  # requests/s in scenarios/quickstart.yaml
BENCH_1M = "benchmarks/bench-1m.yaml"
BENCH_FLEET = "benchmarks/bench-fleet.yaml"
SWEEP = "benchmarks/sweep-100.yaml"
LOAD = 0.85

# The child times every call into the compiled kernels (a wrapper per call, well under a
# microsecond), runs `dcsim`, and reports peak RSS (KiB) and kernel seconds on stderr.
CHILD = """
import resource, sys, time
import sim.timing.kernels as K, sim.timing.fair_share as F, sim.serving.scheduler as S, sim.serving.event_log as E
spent = [0.0]
def timed(f):
    def call(*args):
        t = time.perf_counter()
        out = f(*args)
        spent[0] += time.perf_counter() - t
        return out
    return call
for module, names in ((S, ("engine_run",)), (E, ("apply_log",)), (K, ("batch_time", "decode_run")),
                      (F, ("maxmin_rates",))):
    for name in names:
        setattr(module, name, timed(getattr(module, name)))
from sim.cli import main
rc = main(sys.argv[1:])
print("bench", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, spent[0], file=sys.stderr)
sys.exit(rc)
"""


def run_case(name: str, scenario: str, overrides: list[str], env: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", CHILD, "run", scenario, "--out", out, "--json"]
        for o in overrides:
            cmd += ["--set", o]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr}")
        _, peak_kib, kernel_s = proc.stderr.strip().splitlines()[-1].split()
        summary = json.loads(proc.stdout)
    run = summary["run"]
    sim_wall = run["wall_seconds"]
    n = summary["requests"]["arrived"]
    network = summary.get("network") or {}
    return {
        "case": name, "requests": n, "replicas": len(summary["replicas"]),
        "simulated_s": round(run["simulated_seconds"], 1), "process_wall_s": round(wall, 2),
        "simulate_wall_s": round(sim_wall, 2), "requests_per_wall_s": round(n / sim_wall) if sim_wall else None,
        "events_per_request": round(run["events"] / n, 1) if n else None,
        "numba_share": round(float(kernel_s) / sim_wall, 3) if sim_wall else None,
        "peak_rss_mb": round(int(peak_kib) / 1024), "flows": network.get("flows", 0),
    }


def replica_capacity(scenario: str) -> float:
    """Requests per second one replica of the scenario's first pool completes when saturated
    (a closed loop with twice as many clients as batch slots, the network left out), measured
    by the simulator itself."""
    from sim.results.summary import summarize
    from sim.scenario import load_scenario
    from sim.simulation import simulate
    spec = load_scenario(scenario).spec
    serve = spec.fleet[0].serve
    stream = spec.workload[0]
    clients = 2 * serve.engine.max_batch_seqs
    lengths = {k: getattr(stream, k).model_dump(exclude_none=True) for k in ("prompt_tokens", "output_tokens")}
    closed = {"name": "saturate", "requests": 5 * clients, "concurrency": clients, **lengths}
    saturate = [f"fleet.0.count={serve.tp * serve.pp * serve.ep}", "topology=null", "ingress=null",
                f"workload=[{json.dumps(closed)}]"]
    return summarize(simulate(load_scenario(scenario, saturate)))["makespan"]["requests_per_s"]


def at_load(name: str, path: str, requests: int | None = None, replicas: int | None = None,
            duration: float | None = None) -> dict:
    """Poisson at 85% of the fleet's capacity, for `requests` arrivals or `duration` seconds."""
    from sim.scenario import load_scenario
    pool = load_scenario(path).pools[0]
    width = pool.spec.serve.tp * pool.spec.serve.pp * pool.spec.serve.ep
    replicas = replicas or pool.replicas
    rate = LOAD * replicas * replica_capacity(path)
    duration = duration or requests / rate
    return run_case(name, path, [f"fleet.0.count={replicas * width}", f"workload.0.rate={rate:.3f}/s",
                                 f"duration={duration:.3f}s"])


def startup() -> list[dict]:
    """`dcsim run` on a 2-second scenario: with an empty numba cache (every kernel compiled),
    then again with the cache that run left."""
    rows = []
    cache = tempfile.mkdtemp(prefix="numba-cache-")
    try:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for name in ("startup-cold", "startup-warm"):
            rows.append(run_case(name, "scenarios/quickstart.yaml", ["duration=2s", "warmup=0s"], env))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rows


def sweep(workers: int = 2) -> list[dict]:
    """`dcsim sweep` of benchmarks/sweep-100.yaml (100 runs) on a pool of `workers` processes:
    wall time of the whole sweep against the sum of its runs' own simulation times."""
    import pandas as pd
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sim.cli", "sweep", SWEEP, "--out", out,
                               "--workers", str(workers)], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"sweep failed:\n{proc.stdout}\n{proc.stderr}")
        table = pd.read_parquet(os.path.join(out, "sweep.parquet"))
    n = int(table["requests.arrived"].sum())
    runs = float(table["run.wall_seconds"].sum())
    return [{
        "case": f"sweep-{len(table)}-runs-{workers}-workers", "requests": n, "replicas": int(table["replicas"].sum()),
        "simulated_s": round(float(table["run.simulated_seconds"].sum()), 1), "process_wall_s": round(wall, 2),
        "simulate_wall_s": round(runs, 2), "requests_per_wall_s": round(n / wall),
        "events_per_request": round(float(table["run.events"].sum()) / n, 1), "numba_share": None,
        "peak_rss_mb": None, "flows": int(table["network.flows"].fillna(0).sum()) if "network.flows" in table else 0,
    }]


CASES = {
    "bench-1m": lambda: [at_load("bench-1m", BENCH_1M, requests=1_000_000)],
    "bench-fleet": lambda: [at_load("bench-fleet", BENCH_FLEET, duration=600.0)],
    "scale-requests": lambda: [at_load(f"requests-{n // 1000}k", BENCH_1M, requests=n) for n in (10_000, 100_000)],
    "scale-replicas": lambda: [at_load(f"replicas-{r}", BENCH_1M, requests=100_000, replicas=r)
                               for r in (8, 64, 256, 1024)],
    # a day of the quickstart's traffic (3.5 M requests): its peak memory, bounded by spilling
    # the request table and the logs to scratch files (sim.core.column_store)
    "quickstart-24h": lambda: [run_case("quickstart-24h", "scenarios/quickstart.yaml", ["duration=24h"])],
    "startup": startup,
    "sweep": sweep,
    "quickstart": lambda: [run_case("quickstart-100k", "scenarios/quickstart.yaml",
                                    [f"duration={100_000 / QUICKSTART_RATE:g}s"])],
    # 512 H100s on a 64-server rail fabric, chat at 500/s: every request and reply as a flow
    # over the fabric, and with the network left out
    "fabric-512": lambda: [run_case("fabric-512-flows", "scenarios/fabric-512-chat.yaml", []),
                           run_case("fabric-512-no-network", "scenarios/fabric-512-chat.yaml", ["ingress=null"])],
}
SUITES = {"full": ["startup", "bench-1m", "bench-fleet", "scale-requests", "scale-replicas", "sweep",
                   "quickstart-24h"],
          "quick": ["startup", "quickstart", "fabric-512"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="full")
    parser.add_argument("--only", help=f"comma-separated cases: {', '.join(CASES)}")
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of other cases already in benchmarks/results.json")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else SUITES[args.suite]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    rows = []
    for name in names:
        for row in CASES[name]():
            rows.append(row)
            print(f"  {row['case']}: {row['simulate_wall_s']} s simulate, {row['process_wall_s']} s process",
                  file=sys.stderr, flush=True)
    path = os.path.join(HERE, "results.json")
    if args.keep and os.path.exists(path):
        with open(path) as fh:
            mine = {r["case"] for r in rows}
            rows = [r for r in json.load(fh)["results"] if r["case"] not in mine] + rows
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    commit = measured_commit()
    cols = list(rows[0])
    print(f"machine: {machine}; code: {commit}")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    with open(path, "w") as fh:
        json.dump({"machine": machine, "commit": commit, "results": rows}, fh, indent=2)
    return 0


def measured_commit() -> str:
    """The commit whose code was measured, `-dirty` when the tree held uncommitted changes (the
    figures then belong to no commit); "not known" outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--abbrev=7", "--dirty", "--exclude=*"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "not known"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "not known"


if __name__ == "__main__":
    sys.exit(main())
