"""Small results folders for the analysis and report tests: one run that has every section a
report can show, and a sweep folder written by hand to the format `dcsim sweep` writes."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pandas as pd
import yaml

from sim.results.report import _jsonable, write_results
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.tools.sweep import flatten
from tests.conftest import BASE, ROOT, deep_update

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")

# text that must come out escaped wherever the report shows the scenario's name
NASTY_NAME = 'tiny <script>alert("x") & co'   # markup, but no '/': a name is never a path


def scenario_file(folder, changes: dict) -> str:
    data = copy.deepcopy(BASE)
    data.update({"duration": "10s", "warmup": "2s", "slo": {"ttft_p99": "500ms", "tpot_p99": "100ms"}})
    for path, value in changes.items():
        deep_update(data, path, value)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "scenario-in.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    return path


def full_run(folder):
    """A run over a fabric (requests enter at a storage node) with an autoscaled pool and a
    device failure: the report's network, autoscaling and failures sections all appear.
    Returns (RunResult, folder)."""
    path = scenario_file(os.path.join(folder, "in"), {
        "name": NASTY_NAME, "topology": RAIL, "ingress": {"node": "storage0"}, "fleet.0.count": 4,
        "fleet.0.serve.provision": "1s", "workload.0.rate": "20/s",
        "fleet.0.autoscale": {"policy": "queue", "target": 4, "min": 1, "max": 4, "interval": "1s"},
        "failures": {"events": [{"at": "5s", "fail": "device", "target": "s0.gpu1", "repair_after": "2s"}]},
    })
    result = simulate(load_scenario(path))
    out = os.path.join(folder, "run")
    write_results(result, summarize(result), out)
    return result, out


AXES = [{"name": "count", "path": "fleet.0.count", "values": [1, 2]},
        {"name": "rate", "path": "workload.0.rate", "values": ["5/s", "60/s"]}]


def sweep_folder(folder) -> str:
    """A 2 x 2 grid (accelerators x load) at seed 1, each point a real run, plus one failed
    run of a second seed, written as sweep.json, sweep.parquet and points/<point>/."""
    rows = []
    for count in AXES[0]["values"]:
        for rate in AXES[1]["values"]:
            point = f"count={count},rate={rate}"
            path = scenario_file(os.path.join(folder, "in", point.replace("/", "_")),
                                 {"name": "tiny", "fleet.0.count": count, "workload.0.rate": rate})
            result = simulate(load_scenario(path))
            summary = json.loads(json.dumps(summarize(result), default=_jsonable))
            rel = os.path.join("points", point.replace("/", "_"))
            write_results(result, summary, os.path.join(folder, rel))
            rows.append({"point": point, "seed": 1, "count": count, "rate": rate, "status": "ok", "error": None,
                         "wall_s": summary["run"]["wall_seconds"], "folder": rel, **flatten(summary),
                         "devices": sum(p["devices"] for p in summary["pools"])})
    failed = {k: (np.nan if isinstance(v, (int, float)) and not isinstance(v, bool) else None)
              for k, v in rows[-1].items()}
    failed.update(point=rows[-1]["point"], seed=2, count=2, rate="60/s", status="error", wall_s=0.1,
                  error="ValueError: <b>boom</b> & more", folder=rows[-1]["folder"] + "-s2")
    rows.append(failed)
    frame = pd.DataFrame(rows)
    frame.to_parquet(os.path.join(folder, "sweep.parquet"), index=False)
    with open(os.path.join(folder, "sweep.json"), "w") as fh:
        json.dump({"name": "tiny-sweep", "base": "scenario-in.yaml", "mode": "grid", "axes": AXES, "seeds": [1, 2],
                   "points": 4}, fh)
    return folder
