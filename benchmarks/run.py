"""Speed benchmark: wall time, simulated requests per wall second and peak memory.

    make bench                         # quickstart scaled to 100,000 requests, and the
                                       # 512-GPU fabric with and without flow-level networking
    python -m benchmarks.run --suite full   # also bench-1m: a million requests, 64 replicas
    python -m benchmarks.run --requests 20000

Each case runs `dcsim run` in a child process that reports its own peak RSS. The table is
printed and written to benchmarks/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QUICKSTART_RATE = 40.0  # requests/s in scenarios/quickstart.yaml
# The child runs `dcsim` and reports its own peak resident set (KiB) on its last stderr line.
CHILD = ("import resource, sys; from sim.cli import main; rc = main(sys.argv[1:]); "
         "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def run_case(name: str, scenario: str, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", CHILD, "run", scenario, "--out", out, "--json"]
        for o in overrides:
            cmd += ["--set", o]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr}")
        peak_kib = int(proc.stderr.strip().splitlines()[-1].split()[-1])
        summary = json.loads(proc.stdout)
    sim_wall = summary["run"]["wall_seconds"]
    n = summary["requests"]["arrived"]
    simulated = summary["run"]["simulated_seconds"]
    network = summary.get("network") or {}
    return {
        "case": name, "requests": n, "process_wall_s": round(wall, 2), "simulate_wall_s": round(sim_wall, 2),
        "requests_per_wall_s": round(n / sim_wall), "peak_rss_mb": round(peak_kib / 1024),
        "simulated_s": round(simulated, 1), "wall_per_simulated_s": round(sim_wall / simulated, 3),
        "flows": network.get("flows", 0),
    }


def replica_capacity(scenario: str) -> float:
    """Requests per second one replica of the scenario's first pool completes when saturated
    (a closed loop with more clients than batch slots), measured by the simulator itself."""
    from sim.scenario import load_scenario
    from sim.simulation import simulate
    from sim.summary import summarize
    spec = load_scenario(scenario).spec
    serve = spec.fleet[0].serve
    stream = spec.workload[0]
    clients = 2 * serve.engine.max_batch_seqs
    lengths = {k: getattr(stream, k).model_dump(exclude_none=True) for k in ("prompt_tokens", "output_tokens")}
    closed = {"name": "saturate", "requests": 5 * clients, "concurrency": clients, **lengths}
    saturate = [f"fleet.0.count={serve.tp * serve.pp * serve.ep}", "topology=null", "ingress=null",
                f"workload=[{json.dumps(closed)}]"]
    return summarize(simulate(load_scenario(scenario, saturate)))["makespan"]["requests_per_s"]


def bench_1m(requests: int = 1_000_000, load: float = 0.85) -> dict:
    """bench-1m: Poisson at `load` x the fleet's measured capacity until `requests` arrive."""
    path = "benchmarks/bench-1m.yaml"
    from sim.scenario import load_scenario
    replicas = load_scenario(path).pools[0].replicas
    rate = load * replicas * replica_capacity(path)
    name = "bench-1m" if requests == 1_000_000 else f"bench-{requests // 1000}k"
    return run_case(name, path, [f"workload.rate={rate:.3f}/s",
                                                         f"duration={requests / rate:.3f}s"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--suite", choices=["quick", "full"], default="quick",
                        help="full adds bench-1m (1,000,000 requests on 64 H100 replicas)")
    args = parser.parse_args(argv)
    duration = args.requests / QUICKSTART_RATE
    rows = [run_case(f"quickstart-{args.requests // 1000}k", "scenarios/quickstart.yaml", [f"duration={duration:g}s"])]
    # 512 H100s on a 64-server rail fabric, chat at 500/s: with every request and reply as a
    # flow over the fabric, and with the network left out
    rows.append(run_case("fabric-512-flows", "scenarios/fabric-512-chat.yaml", []))
    rows.append(run_case("fabric-512-no-network", "scenarios/fabric-512-chat.yaml", ["ingress=null"]))
    if args.suite == "full":
        rows.append(bench_1m())
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    cols = list(rows[0])
    print(f"machine: {machine}")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    with open(os.path.join(HERE, "results.json"), "w") as fh:
        json.dump({"machine": machine, "results": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
