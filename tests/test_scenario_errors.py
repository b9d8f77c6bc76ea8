"""Each kind of bad input gets a message naming file, line, field and what is valid."""
from __future__ import annotations

import re

import pytest
import yaml

from sim.cli import main
from sim.scenario import load_scenario
from sim.spec.errors import ScenarioError
from tests.conftest import BASE


def problems(path, overrides=()):
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path, overrides)
    return [str(p) for p in exc.value.problems]


def line_of(path, text):
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if text in line:
                return n
    raise AssertionError(text)


def only(msgs):
    assert len(msgs) == 1, msgs
    return msgs[0]


def test_unknown_field_suggests_the_right_one(write_scenario):
    path = write_scenario({"router": {"polcy": "random"}})
    msg = only(problems(path))
    assert msg.startswith(f"{path}:{line_of(path, 'polcy')}: router.polcy: unknown field 'polcy'")
    assert "did you mean 'policy'?" in msg and "queue_limit" in msg


def test_bad_unit_says_what_is_valid(write_scenario):
    path = write_scenario({"duration": "2 parsecs"})
    msg = only(problems(path))
    assert f":{line_of(path, 'parsecs')}: duration: unknown time unit 'parsecs'" in msg
    assert "valid: ns, us, ms, s, min, h, d" in msg


def test_unknown_device_did_you_mean(write_scenario):
    path = write_scenario({"fleet.0.device": "nvidia-h100-sxn"})
    msg = only(problems(path))
    assert f":{line_of(path, 'nvidia-h100-sxn')}: fleet[0].device: unknown device 'nvidia-h100-sxn'" in msg
    assert "did you mean 'nvidia-h100-sxm'?" in msg and "amd-mi300x" in msg


def test_unknown_model_did_you_mean(write_scenario):
    path = write_scenario({"fleet.0.serve.model": "llama-3.1-7b"})
    msg = only(problems(path))
    assert "fleet[0].serve.model: unknown model 'llama-3.1-7b'; did you mean" in msg


def test_model_that_does_not_fit(write_scenario):
    path = write_scenario({"fleet.0.serve.model": "llama-3.1-405b"})
    msg = only(problems(path))
    assert "fleet[0].serve: llama-3.1-405b at bf16 does not fit on nvidia-h100-sxm with tp=1" in msg
    assert "usable" in msg and re.search(r"try tp=\d+", msg) and "precision fp8" in msg


def test_disconnected_topology(write_scenario, tmp_path):
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump({
        "name": "split",
        "nodes": [{"id": "g0", "kind": "accelerator"}, {"id": "g1", "kind": "accelerator"},
                  {"id": "sw", "kind": "scale-up-switch"}],
        "links": [{"a": "g0", "b": "sw", "bandwidth": "450GB/s"}],
    }))
    path = write_scenario({"topology": str(topo)})
    msg = only(problems(path))
    assert msg.startswith(f"{topo}:") and "topology.links: the graph is disconnected" in msg
    assert "g1 cannot reach" in msg


def test_topology_too_small_and_unknown_node(write_scenario, tmp_path):
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump({
        "name": "one", "nodes": [{"id": "g0", "kind": "accelerator"}],
        "links": [{"a": "g0", "b": "gX", "bandwidth": "1GB/s"}],
    }))
    msg = only(problems(write_scenario({"topology": str(topo)})))
    assert "topology.links[0].b: unknown node 'gX'" in msg


def test_negative_rate(write_scenario):
    path = write_scenario({"workload.0.rate": "-5/s"})
    msg = only(problems(path))
    assert f":{line_of(path, '-5/s')}: workload[0].rate: rate must be positive, got -5/s" in msg


def test_bad_choice_lists_valid_ones(write_scenario):
    msg = only(problems(write_scenario({"router.policy": "least-outstandng"})))
    assert "router.policy: 'least-outstandng' is not valid; did you mean 'least-outstanding'?" in msg


def test_bad_distribution_name(write_scenario):
    msg = only(problems(write_scenario({"workload.0.prompt_tokens": {"dist": "lognormel", "mean": 5, "cv": 1}})))
    assert "workload[0].prompt_tokens: 'lognormel' is not valid; did you mean 'lognormal'?" in msg


def test_missing_field(write_scenario):
    data = {k: v for k, v in BASE.items() if k != "duration"}
    msg = only(problems(write_scenario(base=data)))
    assert "duration: required field is missing" in msg


def test_count_not_multiple_of_tp(write_scenario):
    msg = only(problems(write_scenario({"fleet.0.count": 6, "fleet.0.serve.tp": 4})))
    assert "count (6) must be a multiple of serve.tp (4)" in msg


def test_tp_must_divide_heads(write_scenario):
    msg = only(problems(write_scenario({"fleet.0.count": 3, "fleet.0.serve.tp": 3})))
    assert "tp=3 does not divide llama-3.1-8b's 32 attention heads" in msg


def test_unsupported_precision(write_scenario):
    msg = only(problems(write_scenario({"fleet.0.device": "nvidia-a100-80gb", "fleet.0.serve.precision": "fp8"})))
    assert "nvidia-a100-80gb has no fp8 compute; supported precisions: " in msg and "bf16" in msg


def test_stream_for_unserved_model(write_scenario):
    msg = only(problems(write_scenario({"workload.0.model": "llama-3.1-70b"})))
    assert "workload[0].model: no pool serves 'llama-3.1-70b'" in msg


def test_include_errors_point_into_the_included_file(write_scenario, tmp_path):
    inc = tmp_path / "chat.yaml"
    inc.write_text("name: chat\nrate: 3/s\nprompt_tokens: 100\noutput_tokens: {dist: fixed, valeu: 3}\n")
    path = write_scenario({"workload": [{"include": str(inc)}]})
    msg = only(problems(path))
    assert msg.startswith(f"{inc}:4: workload[0].output_tokens.valeu: unknown field 'valeu'; did you mean 'value'?")


def test_include_siblings_override(write_scenario, tmp_path):
    inc = tmp_path / "chat.yaml"
    inc.write_text("name: chat\nrate: 3/s\nprompt_tokens: 100\noutput_tokens: 10\n")
    sc = load_scenario(write_scenario({"workload": [{"include": str(inc), "rate": "40/s"}]}))
    assert sc.spec.workload[0].rate == 40.0
    assert sc.spec.workload[0].prompt_tokens.value == 100


def test_missing_include(write_scenario):
    msg = only(problems(write_scenario({"workload": [{"include": "nowhere.yaml"}]})))
    assert "workload[0]: file not found: nowhere.yaml" in msg


def test_yaml_syntax_error_has_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nfleet: [\n  - a\nduration: 3s\n")
    msg = only(problems(str(path)))
    assert msg.startswith(f"{path}:") and "YAML syntax error" in msg


def test_duplicate_key(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: x\nseed: 1\nseed: 2\n")
    msg = only(problems(str(path)))
    assert f"{path}:3: seed: duplicate key (first written on line 2)" in msg


def test_set_override_and_its_errors(write_scenario):
    path = write_scenario()
    sc = load_scenario(path, ["workload.rate=80/s", "router.policy=random"])
    assert sc.spec.workload[0].rate == 80.0 and sc.spec.router.policy == "random"
    msg = only(problems(path, ["workload.rte=3/s"]))
    assert msg.startswith("--set workload.rte=3/s: workload[0].rte: unknown field 'rte'; did you mean 'rate'?")
    assert "expected PATH=VALUE" in only(problems(path, ["workload.rate"]))


def test_several_problems_reported_together(write_scenario):
    path = write_scenario({"router.polcy": "x", "duration": "3 parsecs"})
    assert len(problems(path)) == 2


def test_cli_prints_errors_without_traceback(write_scenario, capsys):
    path = write_scenario({"fleet.0.device": "nvidia-h100-sxn"})
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:") and "Traceback" not in err


def test_trace_file_not_found(write_scenario):
    msg = only(problems(write_scenario({"workload": [{"name": "t", "trace": {"path": "none.csv"}}]})))
    assert "workload[0].trace.path: trace file not found" in msg
