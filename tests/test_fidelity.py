"""The validation harness: known answers pass, misses are reported, shipped cases hold."""
from __future__ import annotations

import os

import pytest
import yaml

from sim.catalog import accuracy
from sim.cli import main
from sim.spec.errors import ScenarioError
from sim.tools import fidelity, fidelity_report
from tests.conftest import ROOT

DEVICE = {"name": "toy", "vendor": "x", "kind": "gpu", "memory": "80GB", "memory_bandwidth": "1TB/s",
          "peak_flops": {"bf16": "100TFLOP/s"}, "tdp": "500W", "compute_eff": 0.5, "mem_eff": 0.8}


def write_case(folder, case):
    path = folder / f"{case['id']}.yaml"
    path.write_text(yaml.safe_dump(case, sort_keys=False))
    return path


def case(id, query, value, unit, tol=0.1, level="kernel", **kw):
    return {"id": id, "level": level, "role": "held-out", "description": "t", "query": query,
            "reference": {"value": value, "unit": unit, "source": "hand arithmetic"}, "tolerance": tol, **kw}


def test_known_answers_pass_and_misses_fail(tmp_path):
    write_case(tmp_path, case("bw-exact", {"kind": "memory", "device": DEVICE}, 800, "GB/s"))
    write_case(tmp_path, case("bw-off", {"kind": "memory", "device": DEVICE}, 1000, "GB/s"))
    # 2 x 8192^3 FLOPs at 100 TFLOP/s x 0.5 = 21.99 ms (compute-bound)
    write_case(tmp_path, case("gemm-exact", {"kind": "gemm", "device": DEVICE, "m": 8192, "n": 8192, "k": 8192},
                              2 * 8192 ** 3 / 50e12 * 1e3, "ms"))
    write_case(tmp_path, case("gemm-rate", {"kind": "gemm", "device": DEVICE, "m": 8192, "n": 8192, "k": 8192},
                              50, "TFLOP/s"))
    out = {o.case.id: o for o in fidelity.run_cases(str(tmp_path))}
    assert out["bw-exact"].ok and out["bw-exact"].error == pytest.approx(0.0)
    assert not out["bw-off"].ok and out["bw-off"].error == pytest.approx(-0.2)
    assert out["gemm-exact"].ok and out["gemm-exact"].error == pytest.approx(0.0, abs=1e-9)
    assert out["gemm-rate"].error == pytest.approx(0.0, abs=1e-9)
    report = fidelity_report.markdown_report(list(out.values()))
    assert "| `bw-off` |" in report and "FAIL" in report
    assert "worst" in report.lower()


def test_step_and_scenario_cases(tmp_path):
    query = {"kind": "decode", "device": "nvidia-h100-sxm", "model": "llama-3.1-70b", "tp": 4, "batch": 1,
             "context": 100}
    write_case(tmp_path, case("decode", query, 15, "ms", tol=0.5, level="step"))
    scenario = {"name": "s", "seed": 1, "duration": "1h", "fleet": [
        {"pool": "p", "device": "nvidia-h100-sxm", "count": 1, "serve": {"model": "llama-3.1-8b"}}],
        "workload": [{"name": "b", "requests": 32, "concurrency": 32, "prompt_tokens": 128, "output_tokens": 64}]}
    write_case(tmp_path, case("offline", {"kind": "scenario", "scenario": scenario,
                                          "metric": "makespan.output_tokens_per_s"}, 1000, "tokens/s",
                              tol=10, level="serving"))
    out = {o.case.id: o for o in fidelity.run_cases(str(tmp_path))}
    assert 5 < out["decode"].predicted < 30  # ~35 GB of weights per GPU at ~3 TB/s
    assert out["offline"].predicted > 0 and out["offline"].failure == ""


def test_bad_case_files_name_file_line_and_field(tmp_path):
    bad = case("bad", {"kind": "memory", "device": DEVICE}, 1, "furlongs")
    path = write_case(tmp_path, bad)
    with pytest.raises(ScenarioError) as exc:
        fidelity.load_cases(str(tmp_path))
    assert str(exc.value).startswith(f"{path}:") and "reference.unit: unknown unit 'furlongs'" in str(exc.value)
    path.unlink()
    write_case(tmp_path, case("typo", {"kind": "gemmm", "device": DEVICE}, 1, "ms"))
    with pytest.raises(ScenarioError, match="did you mean 'gemm'"):
        fidelity.load_cases(str(tmp_path))


def test_cli_writes_report(tmp_path, capsys):
    write_case(tmp_path, case("bw-exact", {"kind": "memory", "device": DEVICE}, 800, "GB/s"))
    report = tmp_path / "report.md"
    assert main(["validate-model", str(tmp_path), "--report", str(report)]) == 0
    assert "bw-exact" in capsys.readouterr().out and report.exists()
    write_case(tmp_path, case("bw-off", {"kind": "memory", "device": DEVICE}, 1000, "GB/s"))
    assert main(["validate-model", str(tmp_path), "--report", "", "--strict"]) == 1


CASES = os.path.join(ROOT, "validation", "cases")


FAST_CASES = [c for c in fidelity.load_cases(CASES) if not c[0].slow]
RECORDED = {e.id: e for e in accuracy.load()}


@pytest.mark.parametrize("case,path,src", FAST_CASES, ids=[c[0].id for c in FAST_CASES])
def test_shipped_cases_hold_or_explain_their_miss(case, path, src):
    """The fast subset of validation/cases: a case outside its tolerance must say why."""
    o = fidelity.evaluate(case, path, src)
    assert o.failure == "", f"{case.id}: {o.failure}"
    assert o.ok or case.diagnosis, f"{case.id} misses by {o.error:+.1%} and has no diagnosis"
    # the error every run's interval is built from is this code's: rerun `make validate` when it moves
    entry = o.entry()
    if entry is not None:
        assert RECORDED[case.id] == entry.__class__(**{**entry.row(), "optimism": RECORDED[case.id].optimism})
        assert RECORDED[case.id].optimism == pytest.approx(entry.optimism, abs=2e-6), \
            f"{case.id}: accuracy.json is stale; run make validate"


def test_the_fast_subset_covers_every_level():
    assert {c[0].level for c in FAST_CASES} >= {"kernel", "step", "serving"}   # queueing oracles run in test_queueing
