"""Every shipped scenario validates and runs (shortened), and the CLI writes its results."""
from __future__ import annotations

import glob
import json
import os

import pandas as pd
import pytest

from sim.cli import main
from sim.scenario import load_scenario, variant_names
from tests.conftest import ROOT

SCENARIOS = sorted(glob.glob(os.path.join(ROOT, "scenarios", "*.yaml")))
SHORT = ["duration=20s", "warmup=2s"]
# variants whose sessions start too rarely for 20 s to see one
LONGER = {("agent-levels.yaml", "agents-l4"): ["duration=3min"], ("agent-levels.yaml", "agents-l5"): ["duration=20min"]}
# a day that starts at midnight with no traffic until 6h: run 20 s of the afternoon instead
for _v in (None, "fixed-peak"):
    LONGER[("autoscale-diurnal.yaml", _v)] = ["workload.0.arrival.diurnal.start=14h"]
# each scenario file, and each of its variants
CASES = [(p, v) for p in SCENARIOS for v in [None] + variant_names(p)]


def _id(case):
    path, variant = case
    return os.path.basename(path) + (f":{variant}" if variant else "")


def test_there_are_scenarios():
    assert any(p.endswith("quickstart.yaml") for p in SCENARIOS)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_scenario_validates(case, capsys):
    path, variant = case
    assert main(["validate", path] + (["--variant", variant] if variant else [])) == 0
    assert ": ok: scenario" in capsys.readouterr().out


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_scenario_runs_short(case, tmp_path, capsys):
    path, variant = case
    args = ["run", path, "--out", str(tmp_path)] + (["--variant", variant] if variant else [])
    for s in SHORT + LONGER.get((os.path.basename(path), variant), []):
        args += ["--set", s]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "requests:" in out and "time to first token" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    req = summary["requests"]
    assert req["completed"] + req["rejected"] + req["shed"] + req["failed"] + req["in_flight"] == req["arrived"] > 0
    frame = pd.read_parquet(tmp_path / "requests.parquet")
    assert len(frame) == req["arrived"]
    assert set(frame["state"].unique()) <= {"completed", "rejected", "shed", "failed", "in_flight"}
    devices = pd.read_parquet(tmp_path / "devices.parquet")
    assert {"time", "replica", "busy_fraction", "kv_occupancy", "power_w"} <= set(devices.columns)
    assert (tmp_path / "scenario.yaml").exists()
    assert len(summary["replicas"]) == sum(p["replicas"] for p in summary["pools"])
    assert all(0 <= r["busy_fraction"] <= 1 and 0 <= r["kv_occupancy"] <= 1 for r in summary["replicas"])
    sc = load_scenario(path, SHORT, variant)
    assert summary["scenario"] == sc.name


def test_cli_json_and_seed(tmp_path, capsys):
    path = os.path.join(ROOT, "scenarios", "quickstart.yaml")
    assert main(["run", path, "--set", "duration=10s", "--set", "warmup=1s", "--seed", "5", "--json",
                 "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["seed"] == 5


@pytest.mark.parametrize("what, expect", [("devices", "nvidia-h100-sxm"), ("models", "deepseek-v3")])
def test_catalog_command(what, expect, capsys):
    assert main(["catalog", what]) == 0
    assert expect in capsys.readouterr().out
    assert main(["catalog", what, "--json"]) == 0
    assert expect in json.loads(capsys.readouterr().out)
