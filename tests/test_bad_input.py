"""Every bad input ends in `error: FILE:LINE: field: message` (or the flag's name) and exit
status 2, never a traceback: one regression test per case found by hand or by fuzzing."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import yaml

from sim.cli import main
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from tests.conftest import BASE, ROOT

QUICKSTART = os.path.join(ROOT, "scenarios", "quickstart.yaml")
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def refused(argv, capsys) -> str:
    """Run dcsim; it must exit 2 with one or more `error:` lines and no traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:      # argparse rejects a flag
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "error:" in err, err
    return err


# ---- the file itself -------------------------------------------------------------------


def test_a_nul_byte_names_its_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: x\nduration: 10s\x00\n")
    assert "s.yaml:2: not a YAML text file" in refused(["validate", str(path)], capsys)


def test_a_non_utf8_byte_is_not_text(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: x\n\xff\xfe\n")
    assert "s.yaml:2: not UTF-8 text (byte 0xff" in refused(["validate", str(path)], capsys)


def test_an_alias_bomb_stops_at_the_limit(tmp_path, capsys):
    lines = ["name: x", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]" for k in range(1, 8)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    err = refused(["validate", str(path)], capsys)
    assert "values the YAML expands to" in err and "DCSIM_MAX_YAML_VALUES" in err


def test_an_alias_inside_itself_stops_at_the_depth_limit(tmp_path, capsys):
    path = tmp_path / "loop.yaml"
    path.write_text("name: &x\n  a: *x\n")
    assert "nesting depth" in refused(["validate", str(path)], capsys)


def test_a_file_over_the_size_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DCSIM_MAX_FILE_BYTES", "100")
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "# padding\n" * 20)
    err = refused(["validate", str(path)], capsys)
    assert "the file's size in bytes: 208" in err and "DCSIM_MAX_FILE_BYTES" in err


# ---- fields --------------------------------------------------------------------------


@pytest.mark.parametrize("override, words", [
    ("fleet.pool=[a, b]", "fleet[0].pool: Input should be a valid string"),
    ("fleet.pool={a: 1}", "fleet[0].pool: Input should be a valid string"),
    ("fleet.count=true", "count: expected a number, got true"),
    ("slo.ttft_p99=-1s", "a latency target must be a positive, finite duration"),
    ("name=../../x", "name: must be a name, not a path"),
    ("name=/etc", "name: must be a name, not a path"),
    ("workload.rate=1e9/s", "DCSIM_MAX_REQUESTS"),
    ("duration=1e30s", "DCSIM_MAX_DURATION_S"),
    ("fleet.count=2000000", "DCSIM_MAX_DEVICES"),
    ("workload.arrival={diurnal: {table: [[0h, 1], [12h, .nan]]}}", "finite number"),
    ("seed=-3", "seed: Input should be greater than or equal to 0"),
    # found by a mutation sweep: 2**63 overflowed the scheduler's 64-bit priorities at run time
    ("workload.0.priority=9223372036854775808", "workload[0].priority: Input should be less than or equal to"),
    # and these: a cv of 10**12 drew gamma gaps without end until memory ran out, and 2**63
    # overflowed 64-bit integers while the pool was built
    ("workload.arrival={process: gamma, cv: 1e12}", "workload[0].arrival.cv: Input should be less than or equal to"),
    ("fleet.serve.engine.max_batch_seqs=9223372036854775808",
     "fleet[0].serve.engine.max_batch_seqs: Input should be less than or equal to"),
])
def test_a_bad_field_is_named(override, words, capsys):
    err = refused(["validate", QUICKSTART, "--set", override], capsys)
    assert words in err, err


@pytest.mark.parametrize("override", ["workload.0.image.steps=9223372036854775808",
                                      "workload.1.video.steps=9223372036854775808"])
def test_a_denoising_step_count_that_overflows_is_refused(override, capsys):
    err = refused(["validate", "scenarios/multimodal.yaml", "--set", override], capsys)
    assert "steps: Input should be less than or equal to 100000" in err, err


def test_the_burstiest_gamma_arrivals_allowed_still_run():
    # the cv bound keeps the gamma draw small, even at a rate so low that each chunk of gaps
    # drawn is the minimum of 16
    from sim.demand.arrival_times import sample_times
    from sim.demand.arrivals import GAMMA_CV_LIMIT, Arrival
    for seed in range(5):
        times = sample_times(Arrival(process="gamma", cv=GAMMA_CV_LIMIT), 0.01, 10.0, np.random.default_rng(seed))
        assert np.all(np.diff(times) >= 0) and np.all((times >= 0) & (times < 10.0))


def test_an_invalid_topology_is_reported_before_ingress_and_storage_read_it(write_scenario, capsys):
    base = copy.deepcopy(BASE)
    base["topology"] = {"name": "bad", "build": {"kind": "hgx-node", "gpus": 8, "pcie_switches": 3}}
    base["ingress"] = {"node": "s0.cpu0"}
    base["fleet"][0]["serve"]["weights"] = "storage"
    err = refused(["validate", write_scenario(base=base)], capsys)
    assert "pcie_switches" in err and "do not split evenly" in err


def test_a_huge_count_in_a_topology_builder(write_scenario, capsys):
    base = copy.deepcopy(BASE)
    base["topology"] = {"name": "huge", "build": {"kind": "hgx-node", "cpus": 2 ** 64}}
    assert "DCSIM_MAX_DEVICES" in refused(["validate", write_scenario(base=base)], capsys)


def test_a_huge_storage_count_is_refused_before_the_graph_is_built(write_scenario, capsys):
    # found by `make fuzz`: 10**12 storage nodes filled the machine's memory while building the graph
    base = copy.deepcopy(BASE)
    base["topology"] = {"name": "huge", "build": {"kind": "rail-leaf-spine", "nodes": 1,
                                                  "storage": {"count": 10 ** 12}}}
    err = refused(["validate", write_scenario(base=base)], capsys)
    assert "storage.count" in err and "DCSIM_MAX_DEVICES" in err, err


# ---- traces ----------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ("", "not a CSV trace"),
    (HEADER, ":2: no requests"),
    ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,10\n", "lacks column(s) GeneratedTokens"),
    (HEADER + "2023-11-16 18:15:46,10,5\nyesterday,10,5\n", ":3: TIMESTAMP: not a date and time"),
    (HEADER + "2023-11-16 18:15:46,10,5\n2023-11-16 18:15:45,10,5\n", ":3: TIMESTAMP: goes back in time"),
    (HEADER + "2023-11-16 18:15:46,10,-3\n", ":2: GeneratedTokens: expected a whole number of tokens"),
    (HEADER + "2023-11-16 18:15:46,0,3\n", ":2: ContextTokens: expected a whole number"),
    (HEADER + "2023-11-16 18:15:46,,3\n", ":2: ContextTokens: expected a whole number"),
    (HEADER + "2023-11-16 18:15:46,2.5,3\n", ":2: ContextTokens: expected a whole number"),
    (HEADER + "2023-11-16 18:15:46,abc,3\n", ":2: ContextTokens: expected a whole number"),
])
def test_a_bad_trace_is_refused_by_validate(body, words, tmp_path, write_scenario, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text(body)
    path = write_scenario({"workload": [{"name": "t", "trace": {"path": str(trace)}}]})
    assert words in refused(["validate", path], capsys)


def test_a_binary_trace_is_refused(tmp_path, write_scenario, capsys):
    trace = tmp_path / "t.csv"
    trace.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    path = write_scenario({"workload": [{"name": "t", "trace": {"path": str(trace)}}]})
    assert "not UTF-8 text" in refused(["validate", path], capsys)


# ---- flags -----------------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["run", QUICKSTART, "--seed", "-1"], "argument --seed: must be at least 0"),
    (["plan", QUICKSTART, "--tp", "0"], "argument --tp: must be at least 1"),
    (["plan", QUICKSTART, "--tp", "2,x"], "argument --tp: expected an integer"),
    (["plan", QUICKSTART, "--tolerance", "2"], "argument --tolerance: must be at least 0 and below 1"),
    (["compare", QUICKSTART, "--seeds", "0"], "argument --seeds: must be at least 1"),
    (["sweep", os.path.join(ROOT, "scenarios", "sweeps", "quickstart-size-vs-load.yaml"), "--workers", "-3"],
     "argument --workers: must be at least 1"),
])
def test_a_bad_flag_is_named(argv, words, capsys):
    assert words in refused(argv, capsys)


def test_out_naming_a_file_is_refused_before_the_simulation(tmp_path, capsys, monkeypatch):
    import sim.simulation
    monkeypatch.setattr(sim.simulation, "simulate", lambda *a, **k: pytest.fail("simulated before checking --out"))
    taken = tmp_path / "a-file"
    taken.write_text("")
    assert "error: --out: " in refused(["run", QUICKSTART, "--out", str(taken)], capsys)


def test_a_sweep_of_a_trillion_points_is_refused_without_listing_them(tmp_path, capsys):
    sweep = {"name": "huge", "base": QUICKSTART, "axes": [
        {"path": "workload.0.rate", "range": {"from": 1, "to": 1e6, "step": 1}},
        {"path": "fleet.0.count", "range": {"from": 1, "to": 1e6, "step": 1}}]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    err = refused(["sweep", str(path), "--list"], capsys)
    assert "sweep points: 1,000,000,000,000" in err and "DCSIM_MAX_SWEEP_POINTS" in err


def test_ctrl_c_stops_with_one_line_and_status_130(monkeypatch, tmp_path, capsys):
    import sim.simulation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(sim.simulation, "simulate", interrupted)
    assert main(["run", QUICKSTART, "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: dcsim run stopped") and err.count("\n") == 1 and "Traceback" not in err


# ---- valid input that used to crash ------------------------------------------------------


def test_random_link_and_device_failures_run_to_the_end():
    """failure-rack.yaml with random failures of cables and GPUs (it used to stop with an
    AttributeError when a replica failed again while its first weights were loading)."""
    path = os.path.join(ROOT, "scenarios", "failure-rack.yaml")
    failures = "failures.random=[{component: link, mtbf: 20s, mttr: 10s}, {component: device, mtbf: 40s, mttr: 15s}]"
    res = simulate(load_scenario(path, [failures, "duration=150s"]), seed=1)
    s = summarize(res)["requests"]
    assert s["completed"] + s["rejected"] + s["failed"] + s["shed"] + s["in_flight"] == s["arrived"] > 0
    assert s["retries"] > 0
