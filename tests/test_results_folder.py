"""Result folders never claim to be complete unless they are: written whole beside their
place and swapped in, with a manifest the readers check; killed runs leave the earlier
folder as it was."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sim.cli import main
from sim.results.analysis import load_run
from sim.results.folder import ResultsError, verify
from tests.conftest import ROOT

QUICKSTART = os.path.join(ROOT, "scenarios", "quickstart.yaml")
SHORT = ["--set", "duration=6s", "--set", "warmup=1s"]


def run(out, *extra):
    assert main(["run", QUICKSTART, *SHORT, "--out", str(out), *extra]) == 0


def test_a_run_folder_has_a_manifest_of_its_files(tmp_path):
    run(tmp_path / "r")
    manifest = verify(str(tmp_path / "r"))
    assert manifest["complete"] is True and manifest["dcsim_version"]
    assert {"summary.json", "requests.parquet", "devices.parquet", "scenario.yaml"} <= set(manifest["files"])
    assert len(manifest["scenario_sha256"]) == 64


def test_files_of_an_earlier_run_never_survive_into_a_new_one(tmp_path):
    out = tmp_path / "r"
    run(out, "--trace")
    assert (out / "trace.json").exists()
    run(out)
    assert not (out / "trace.json").exists()
    assert not glob.glob(str(tmp_path / ".r.*"))        # no temporary folders left behind


def test_a_folder_without_its_manifest_or_with_a_changed_file_is_refused(tmp_path):
    out = tmp_path / "r"
    run(out)
    with open(out / "requests.parquet", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ResultsError, match="requests.parquet is not the file its run wrote"):
        load_run(str(out))
    os.remove(out / "manifest.json")
    with pytest.raises(ResultsError, match="incomplete: no manifest.json"):
        load_run(str(out))


def test_a_run_will_not_replace_a_folder_dcsim_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["run", QUICKSTART, *SHORT, "--out", str(mine)]) == 2
    assert "is not a dcsim results folder" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"


def test_compare_and_plan_may_write_again_where_they_wrote(tmp_path, capsys):
    """A second compare or plan into its own earlier folder replaces it (the default folder
    of a command run twice), as a run does."""
    for _ in range(2):
        assert main(["compare", QUICKSTART, *SHORT, "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.json").exists()
    for _ in range(2):
        main(["plan", QUICKSTART, *SHORT, "--devices", "nvidia-h100-sxm", "--tp", "1", "--max-devices", "2",
              "--out", str(tmp_path / "plan")])
        assert "not a dcsim results folder" not in capsys.readouterr().err
    assert (tmp_path / "plan" / "plan.json").exists()


def _kill_when(cmd, ready, timeout=120):
    """Start `cmd`, SIGKILL it once ready() holds; return its exit status."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail("never reached the point to kill it at")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def test_killed_mid_simulation_the_earlier_folder_stays_whole(tmp_path):
    out = tmp_path / "r"
    run(out)
    before = json.loads((out / "summary.json").read_text())
    cmd = [sys.executable, "-m", "sim.cli", "run", QUICKSTART, "--set", "duration=6h", "--out", str(out)]
    started = time.time()
    _kill_when(cmd, lambda: time.time() - started > 8)      # well into the simulation
    verify(str(out))
    assert json.loads((out / "summary.json").read_text()) == before
    assert not [d for d in glob.glob(str(tmp_path / ".r.*")) if os.path.isfile(os.path.join(d, "manifest.json"))]


def test_killed_mid_write_nothing_claims_to_be_complete(tmp_path):
    """A slow writer: the run stops for a minute after writing summary.json into its
    temporary folder, and is killed there."""
    out = tmp_path / "r"
    run(out)
    before = (out / "summary.json").read_text()
    code = ("import time, sim.results.report as r\n"
            "real = r.requests_frame\n"
            "def slow(*a, **k):\n"
            "    time.sleep(60)\n"
            "    return real(*a, **k)\n"
            "r.requests_frame = slow\n"
            "from sim.cli import main\n"
            f"main(['run', {QUICKSTART!r}, '--set', 'duration=6s', '--set', 'warmup=1s', '--out', {str(out)!r}])\n")
    writing = lambda: [d for d in glob.glob(str(tmp_path / ".r.writing-*"))       # noqa: E731
                       if os.path.isfile(os.path.join(d, "summary.json"))]
    _kill_when([sys.executable, "-c", code], lambda: bool(writing()))
    partial = writing()[0]
    with pytest.raises(ResultsError, match="not a dcsim results folder|incomplete"):
        load_run(partial)
    verify(str(out))
    assert (out / "summary.json").read_text() == before
    assert main(["report", str(out)]) == 0
