"""Sweeps: the points and seeds a sweep file asks for, one table on a process pool and on a
Dask cluster alike, resuming after a kill, failed points recorded, errors naming the field."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from sim.cli import main
from sim.spec.errors import ScenarioError
from sim.tools import sweep as sw
from sim.tools.executors import DaskExecutor, ProcessExecutor
from tests.conftest import BASE, ROOT

# figures that depend on the machine, not on the simulation
MACHINE = ["wall_s", "run.wall_seconds"]


def write_sweep(tmp_path, axes, **more) -> str:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({**BASE, "duration": "20s", "warmup": "2s"}, sort_keys=False))
    spec = {"name": "t", "base": "base.yaml", "axes": axes, **more}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


GRID = [{"name": "replicas", "path": "fleet.0.count", "values": [1, 2]},
        {"name": "rate", "path": "workload.0.rate", "values": [5, 10], "unit": "/s"}]


def test_a_grid_makes_every_combination_and_seed(tmp_path):
    sweep = sw.load_sweep(write_sweep(tmp_path, GRID, seeds=2), str(tmp_path / "out"))
    assert len(sweep.tasks) == 8
    assert [(t.axes["replicas"], t.axes["rate"], t.seed) for t in sweep.tasks[:3]] == [(1, 5, 1), (1, 5, 2), (1, 10, 1)]
    assert sweep.tasks[2].overrides == ["fleet.0.count=1", "workload.0.rate=10/s"]


def test_zip_ranges_fixed_overrides_and_variants(tmp_path):
    axes = [{"name": "n", "path": "fleet.0.count", "range": {"from": 1, "to": 3, "step": 1}},
            {"name": "policy", "path": "router.policy", "values": ["random", "round-robin", "least-outstanding"]}]
    sweep = sw.load_sweep(write_sweep(tmp_path, axes, mode="zip", seeds=[5], set={"duration": "10s"}))
    assert [(t.axes["n"], t.axes["policy"]) for t in sweep.tasks] == [(1, "random"), (2, "round-robin"),
                                                                      (3, "least-outstanding")]
    assert sweep.tasks[0].overrides == ["duration=10s", "fleet.0.count=1", "router.policy=random"]
    mig = os.path.join(ROOT, "scenarios", "mig-small-models.yaml")
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"name": "v", "base": mig, "axes": [
        {"path": "variant", "values": [None, "mig-small-models", "whole-gpus"]}]}))     # the base, by its name too
    assert [t.variant for t in sw.load_sweep(str(path)).tasks] == [None, None, "whole-gpus"]


def table(folder) -> pd.DataFrame:
    return pd.read_parquet(os.path.join(folder, "sweep.parquet")).drop(columns=MACHINE)


def test_the_process_pool_and_an_in_process_dask_cluster_give_the_same_table(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = write_sweep(tmp_path, GRID, seeds=2)
    pool = sw.run_sweep(sw.load_sweep(path, str(tmp_path / "pool")), ProcessExecutor(2))
    assert (pool.ran, pool.skipped, pool.failed) == (8, 0, 0)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dask = sw.run_sweep(sw.load_sweep(path, str(tmp_path / "dask")), DaskExecutor(client))
    assert dask.ran == 8
    a, b = table(tmp_path / "pool"), table(tmp_path / "dask")
    assert list(a.columns[:8]) == ["point", "seed", "replicas", "rate", "status", "error", "folder", "scenario"]
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 8 and (a["status"] == "ok").all()
    assert a["requests.arrived"].sum() == a["requests.completed"].sum() + a["requests.rejected"].sum()
    # each point's folder is a results folder, and its row is its summary
    first = a.iloc[0]
    with open(tmp_path / "pool" / first["folder"] / "summary.json") as fh:
        summary = json.load(fh)
    assert summary["latency_s"]["ttft"]["p99"] == first["latency_s.ttft.p99"]
    # each headline figure's 90 % interval beside it
    assert [first["latency_s.ttft.p99.lo"], first["latency_s.ttft.p99.hi"]] == \
        summary["intervals"]["figures"]["latency_s.ttft.p99"]
    assert "intervals.figures.latency_s.ttft.p99.0" not in a.columns
    assert os.path.exists(tmp_path / "pool" / first["folder"] / "requests.parquet")
    with open(tmp_path / "pool" / "sweep.json") as fh:
        described = json.load(fh)
    assert [a["name"] for a in described["axes"]] == ["replicas", "rate"] and described["points"] == 8


def test_a_rerun_runs_only_the_missing_points_and_a_changed_base_reruns_all(tmp_path):
    path = write_sweep(tmp_path, GRID)
    out = str(tmp_path / "out")
    first = sw.run_sweep(sw.load_sweep(path, out), ProcessExecutor(1))
    assert first.ran == 4
    os.remove(os.path.join(out, "points", "p0002-s1", "point.json"))       # as if killed before it ended
    again = sw.run_sweep(sw.load_sweep(path, out), ProcessExecutor(1))
    assert (again.ran, again.skipped) == (1, 3)
    base = tmp_path / "base.yaml"
    base.write_text(base.read_text().replace("seed: 1", "seed: 1  # a comment changes no run"))
    assert sw.run_sweep(sw.load_sweep(path, out), ProcessExecutor(1)).ran == 0
    base.write_text(base.read_text().replace("seed: 1", "seed: 2"))
    assert sw.run_sweep(sw.load_sweep(path, out), ProcessExecutor(1)).ran == 4


def test_a_changed_included_file_reruns_the_points_that_read_it(tmp_path):
    """Resume keys on the scenario with its includes merged: editing an included workload
    reruns every point (it used to say 'already done' and keep the old table)."""
    workload = tmp_path / "w.yaml"
    workload.write_text(yaml.safe_dump(BASE["workload"][0]))
    path = write_sweep(tmp_path, GRID[:1])
    base = tmp_path / "base.yaml"
    data = yaml.safe_load(base.read_text())
    data["workload"] = [{"include": "w.yaml"}]
    base.write_text(yaml.safe_dump(data, sort_keys=False))
    out = str(tmp_path / "out")
    assert sw.run_sweep(sw.load_sweep(path, out), ProcessExecutor(1)).ran == 2
    assert sw.run_sweep(sw.load_sweep(path, out), ProcessExecutor(1)).ran == 0
    workload.write_text(workload.read_text().replace("rate: 10/s", "rate: 12/s"))
    assert sw.run_sweep(sw.load_sweep(path, out), ProcessExecutor(1)).ran == 2


def test_killing_a_sweep_midway_and_rerunning_completes_only_the_missing_points(tmp_path, capsys):
    # six points of a second or so each, one worker: kill the sweep when two have finished
    axes = [{"name": "rate", "path": "workload.0.rate", "values": [10, 11, 12, 13, 14, 15], "unit": "/s"}]
    path = write_sweep(tmp_path, axes, set={"duration": "3min"})
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "sweep", path, "--out", str(out), "--workers", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    done = lambda: sorted(p for p in (out / "points").glob("*/point.json")) if (out / "points").exists() else []
    while len(done()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.parent.name: p.stat().st_mtime_ns for p in done()}
    assert 2 <= len(before) < 6, before
    assert main(["sweep", path, "--out", str(out), "--workers", "1"]) == 0
    said = capsys.readouterr().out
    assert f"{6 - len(before)} run, {len(before)} already done, 0 failed" in said
    for point, mtime in before.items():            # the finished ones were not run again
        assert (out / "points" / point / "point.json").stat().st_mtime_ns == mtime
    t = table(out)
    assert len(t) == 6 and (t["status"] == "ok").all()
    # the same table as a sweep that was never interrupted
    assert main(["sweep", path, "--out", str(tmp_path / "whole"), "--workers", "1"]) == 0
    pd.testing.assert_frame_equal(t, table(tmp_path / "whole"))


def _tagged(tag: str) -> list[int]:
    """Processes whose environment carries DCSIM_TEST_TAG=tag."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if f"DCSIM_TEST_TAG={tag}".encode() in fh.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers through /proc")
def test_killing_the_sweep_alone_stops_its_workers(tmp_path):
    """SIGKILL to the sweep's own process (not its group): its pool workers stop too,
    instead of simulating on as orphans."""
    axes = [{"name": "rate", "path": "workload.0.rate", "values": [10, 11, 12, 13], "unit": "/s"}]
    path = write_sweep(tmp_path, axes, set={"duration": "20min"})
    tag = f"{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, "PYTHONPATH": ROOT, "DCSIM_TEST_TAG": tag}
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "sweep", path, "--out", str(tmp_path / "out"),
                             "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_tagged(tag)) < 3 and time.time() < deadline:      # the sweep and its two workers
        time.sleep(0.1)
    assert len(_tagged(tag)) >= 3
    time.sleep(2.0)                                               # the workers are simulating
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while _tagged(tag) and time.time() < deadline:
        time.sleep(0.2)
    assert _tagged(tag) == []


def test_a_failing_point_records_its_error_and_the_sweep_goes_on(tmp_path, capsys):
    axes = [{"name": "tp", "path": "fleet.0.serve.tp", "values": [1, 3]}]     # 3 does not divide the heads
    path = write_sweep(tmp_path, axes)
    assert main(["sweep", path, "--out", str(tmp_path / "out"), "--workers", "1"]) == 1
    t = table(tmp_path / "out")
    ok, bad = t.iloc[0], t.iloc[1]
    assert ok["status"] == "ok" and bad["status"] == "error"
    assert "tp" in bad["error"] and pd.isna(bad["latency_s.ttft.p99"])
    said = capsys.readouterr().out
    assert "1 failed" in said and "p0001-s1" in said
    with open(tmp_path / "out" / "points" / "p0001-s1" / "point.json") as fh:
        point = json.load(fh)
    assert point["status"] == "error"
    # --skip-failed leaves it; a plain rerun tries it again
    assert sw.run_sweep(sw.load_sweep(path, str(tmp_path / "out")), ProcessExecutor(1), retry_failed=False).ran == 0


@pytest.mark.parametrize("axes, more, field, message", [
    ([{"path": "fleet.0.count"}], {}, "axes[0]", "either values"),
    ([{"path": "fleet.0.count", "values": [1, 2]}, {"path": "router.policy", "values": ["random"]}],
     {"mode": "zip"}, "mode", "as many values"),
    ([{"path": "fleet.0.count", "values": [1]}], {"sed": 2}, "sed", "unknown field"),
    ([{"path": "fleet.0.cuont", "values": [1, 2]}], {}, "axes", "no point of the sweep is a valid scenario"),
    ([{"name": "seed", "path": "seed", "values": [1]}], {}, "axes[0]", "may not be named 'seed'"),
])
def test_errors_name_the_file_line_and_field(tmp_path, axes, more, field, message):
    path = write_sweep(tmp_path, axes, **more)
    with pytest.raises(ScenarioError) as exc:
        sw.check(sw.load_sweep(path, str(tmp_path / "out")))
    text = str(exc.value)
    assert "sweep.yaml:" in text and field in text and message in text, text


def test_the_cli_lists_points_and_reports_a_missing_base(tmp_path, capsys):
    path = write_sweep(tmp_path, GRID)
    assert main(["sweep", path, "--list"]) == 0
    assert "p0003-s1" in capsys.readouterr().out
    (tmp_path / "base.yaml").unlink()
    assert main(["sweep", path]) == 2
    assert "base: scenario file not found" in capsys.readouterr().err


def test_a_notebook_runs_a_sweep_from_a_mapping(tmp_path, monkeypatch):
    write_sweep(tmp_path, GRID)
    monkeypatch.chdir(tmp_path)
    frame = sw.run({"name": "nb", "base": "base.yaml", "axes": GRID[:1]}, out=str(tmp_path / "nb"), workers=1)
    assert list(frame["replicas"]) == [1, 2] and (frame["status"] == "ok").all()
    assert frame.attrs["axes"] == ["replicas"]


def test_flatten_names_entries_of_tenants_pools_and_streams():
    summary = {"latency_s": {"ttft": {"p99": 1.0}}, "notes": ["x"],
               "tenants": [{"tenant": "chat", "slo": {"attainment": 0.9}},
                           {"tenant": "api", "slo": {"attainment": 1.0}}],
               "replicas": [{"replica": 0, "busy": 0.5}]}
    summary["window_s"] = [2.0, 30.0]
    summary["pools"] = [{"pool": "p", "busy": 0.5}]
    summary["replicas"] = [{"replica": 0, "pool": "p", "busy": 0.4}, {"replica": 1, "pool": "p", "busy": 0.6}]
    assert sw.flatten(summary) == {"latency_s.ttft.p99": 1.0, "tenants.chat.slo.attainment": 0.9,
                                   "tenants.api.slo.attainment": 1.0, "window_s.0": 2.0, "window_s.1": 30.0,
                                   "pools.p.busy": 0.5}
