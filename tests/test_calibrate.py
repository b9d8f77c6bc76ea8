"""`dcsim calibrate`: recovers known factors from benchmark files made with them, refuses files
of another model or device, and a calibrated run says so and narrows its interval."""
from __future__ import annotations

import csv
import glob
import json
import math
import os

import pytest
import yaml

from sim.cli import main
from sim.scenario import load_scenario, scenario_from_source
from sim.simulation import simulate
from sim.spec import source
from sim.spec.errors import ScenarioError
from sim.tools import bench_files
from sim.tools.bench_files import ServingRun, StepRow, model_name
from sim.tools.calibrate import Calibrator, Fit, _scaled, _step_time, benchmarked
from tests.conftest import ROOT

HERE = os.path.join(ROOT, "scenarios", "calibration")
SCENARIO = os.path.join(HERE, "h100-llama8b.yaml")
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def client_run(fit: Fit, rate, concurrency, prompts=120):
    run = ServingRun(SCENARIO, 1, "", None, None, None, rate, concurrency, prompts, 0.0, 0.0, None, None,
                     (256, 768), (48, 160), None, None, None)
    scenario = benchmarked(source.load(SCENARIO), 0, SCENARIO, run)
    dep = scenario.pools[0].deployment
    dep.params = _scaled(dep.params, fit)
    return simulate(scenario)


def test_step_times_give_back_the_device_factor_and_host_time(tmp_path):
    truth = Fit(1.3, 0.004)
    p = _scaled(scenario_from_source(source.load(SCENARIO), (), SCENARIO).pools[0].deployment.params, truth)
    path = tmp_path / "steps.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["batch", "prompt_tokens", "context", "step_time_ms"])
        for batch, prompt, ctx in ((1, 0, 300), (16, 0, 900), (64, 0, 2000), (128, 256, 800), (8, 1024, 500),
                                   (200, 0, 1500), (2, 2048, 100), (32, 0, 4000)):
            w.writerow([batch, prompt, ctx, _step_time(p, StepRow("", 0, batch, prompt, ctx, 0.0)) * 1e3])
    cal = Calibrator(SCENARIO, [str(path)]).run()
    assert cal.fit.time_scale == pytest.approx(1.3, rel=0.02)
    assert cal.fit.iteration_overhead == pytest.approx(0.004, rel=0.02)
    assert cal.median_abs("after") < 1e-3 < cal.median_abs("before")


def test_serving_runs_give_back_the_device_factor_within_2_percent(tmp_path):
    truth = Fit(1.3, None)     # the engine preset's host times, as calibration without step times keeps
    files = []
    for k, (rate, conc) in enumerate(((3.0, None), (math.inf, 24), (9.0, None), (math.inf, 8))):
        doc = bench_files.vllm_result(client_run(truth, rate, conc), MODEL, 120, rate, conc,
                                      {"device": "nvidia-h100-sxm", "tp": "1"}, detailed=True)
        files.append(tmp_path / f"run{k}.json")
        files[-1].write_text(json.dumps(doc))
    cal = Calibrator(SCENARIO, [str(f) for f in files]).run()
    assert cal.fit.time_scale == pytest.approx(1.3, rel=0.02)
    assert cal.fit.iteration_overhead is None
    assert cal.median_abs("after") < cal.median_abs("before")


def test_sglang_lines_are_runs_with_their_random_ranges(tmp_path):
    path = tmp_path / "sg.jsonl"
    lines = [bench_files.sglang_result(client_run(Fit(), r, c, 60), MODEL, 1, r, c, 768, 160, 0.3)
             for r, c in ((4.0, None), (math.inf, 8))]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    runs = bench_files.read(str(path))
    assert [r.line for r in runs] == [1, 2] and runs[1].rate == math.inf and runs[1].max_concurrency == 8
    assert runs[0].input_range == (230, 768) and runs[0].tp == 1 and runs[0].model == MODEL
    assert runs[0].ttft_p50 == pytest.approx(lines[0]["median_ttft_ms"] / 1000)


def vllm_file(tmp_path, **fields):
    with open(os.path.join(HERE, "vllm-bench-rate4.json")) as fh:
        doc = json.load(fh)
    doc.update(fields)
    path = tmp_path / f"v{len(fields)}{'-'.join(map(str, fields))}.json"
    path.write_text(json.dumps(doc, indent=2))
    return str(path)


def test_files_of_another_model_or_device_are_refused_by_name(tmp_path, capsys):
    other = vllm_file(tmp_path, model_id="meta-llama/Llama-3.1-70B-Instruct")
    with pytest.raises(ScenarioError, match="Llama-3.1-70B-Instruct' is not the scenario's model llama-3.1-8b"):
        Calibrator(SCENARIO, [other, os.path.join(HERE, "vllm-bench-rate8.json")])
    device = vllm_file(tmp_path, device="amd-mi300x")
    assert main(["calibrate", SCENARIO, device, os.path.join(HERE, "vllm-bench-rate8.json"),
                 "--out", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"error: {device}:1: device: 'amd-mi300x' is not the scenario's device nvidia-h100-sxm" in err
    tp = vllm_file(tmp_path, tp="4")
    with pytest.raises(ScenarioError, match="tp 4 is not the pool's tp 1"):
        Calibrator(SCENARIO, [tp, tp])


def test_bad_benchmark_files_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_id": "x"}\nnot json\n')
    with pytest.raises(ScenarioError, match="bad.json:2: file: not JSON"):
        bench_files.read(str(bad))
    missing = vllm_file(tmp_path, completed=None)
    with pytest.raises(ScenarioError, match="completed: missing"):
        bench_files.read(missing)
    text = vllm_file(tmp_path, median_tpot_ms="fast")
    with pytest.raises(ScenarioError) as exc:
        bench_files.read(text)
    problem = exc.value.problems[0]
    assert problem.field == "median_tpot_ms" and "not a number" in problem.message and problem.loc.line > 1
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("batch,context,step_time_ms\n1,10,5\n")
    with pytest.raises(ScenarioError, match="missing prompt_tokens"):
        bench_files.read(str(csv_path))
    csv_path.write_text("batch,prompt_tokens,context,step_time_ms\n1,0,10,5\n2,0,10,-1\n")
    with pytest.raises(ScenarioError, match="s.csv:3: step_time_ms"):
        bench_files.read(str(csv_path))


def test_model_ids_read_as_catalog_names():
    assert model_name("meta-llama/Meta-Llama-3.1-8B-Instruct") == "llama-3.1-8b"
    assert model_name("/models/llama-3.1-70b-instruct-fp8/") == "llama-3.1-70b"
    assert model_name("Qwen/Qwen2.5-7B-Instruct") == "qwen2.5-7b"


def test_the_shipped_examples_calibrate_and_a_calibrated_run_says_so(tmp_path, capsys):
    files = sorted(glob.glob(os.path.join(HERE, "vllm-bench-*.json"))) + [os.path.join(HERE, "step-times.csv")]
    out = tmp_path / "my-cluster.yaml"
    assert main(["calibrate", SCENARIO, *files, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out median |error|" in text
    body = yaml.safe_load(out.read_text())["calibration"]
    with open(os.path.join(HERE, "truth.yaml")) as fh:
        truth = yaml.safe_load(fh)["calibration"]
    assert body["time_scale"] == pytest.approx(truth["time_scale"], rel=0.02)
    assert len(body["held_out"]["optimism"]) == len(body["held_out"]["figures"]) >= 6
    # a scenario naming the overlay runs the pool scaled and takes its interval from it
    scenario = load_scenario(SCENARIO, [f"calibration={out}", "duration=40s", "warmup=5s"])
    plain = load_scenario(SCENARIO, ["duration=40s", "warmup=5s"])
    from sim.timing import kernels as K
    assert scenario.pools[0].deployment.params[K.K_COMPUTE_SCALE] == pytest.approx(body["time_scale"])
    assert plain.pools[0].deployment.params[K.K_COMPUTE_SCALE] == 1.0
    assert main(["run", SCENARIO, "--set", f"calibration={out}", "--set", "duration=40s", "--set", "warmup=5s",
                 "--out", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert "calibrated by my-cluster.yaml" in text and "held-out measurements of your cluster" in text
    # on another device the overlay does not apply, and the run says that
    assert main(["run", SCENARIO, "--set", f"calibration={out}", "--set", "fleet.0.device=nvidia-h200",
                 "--set", "duration=20s", "--set", "warmup=5s", "--out", str(tmp_path / "run2")]) == 0
    assert "matches no pool; not applied" in capsys.readouterr().out


def test_a_missing_or_malformed_overlay_is_an_error_at_its_line(tmp_path, capsys):
    assert main(["validate", SCENARIO, "--set", "calibration=nowhere.yaml"]) == 2
    assert "calibration: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("calibration:\n  device: nvidia-h100-sxm\n  model: llama-3.1-8b\n  time_scale: -1\n")
    assert main(["validate", SCENARIO, "--set", f"calibration={bad}"]) == 2
    assert f"{bad}:4: calibration.time_scale" in capsys.readouterr().err
