"""Prefill/decode disaggregation: KV bytes by formula, exact fast path, accounting, errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sim.core.metrics import COMPLETED
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import ROOT
from tests.test_simulation import assert_invariants, assert_same_records

TOPO = os.path.join(ROOT, "topologies", "hgx-h100-node.yaml")
RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def disagg(prefill=2, decode=6, tp=1, model="llama-3.1-8b", topology=TOPO, rate="12/s", **engine):
    pool = lambda name, count, role: {"pool": name, "device": "nvidia-h100-sxm", "count": count,
                                      "serve": {"model": model, "tp": tp, "role": role,
                                                "engine": {"max_batch_seqs": 64, **engine}}}
    return {
        "name": "d", "seed": 2, "duration": "20s", "warmup": "2s", "topology": topology,
        "fleet": [pool("pre", prefill, "prefill"), pool("dec", decode, "decode")],
        "workload": [{"name": "w", "rate": rate,
                      "prompt_tokens": {"dist": "lognormal", "mean": 1500, "cv": 1.0, "max": 8000},
                      "output_tokens": {"dist": "lognormal", "mean": 150, "cv": 1.0, "max": 1000}}],
    }


def test_kv_bytes_are_the_whole_cache_of_the_prompt(write_scenario):
    res = simulate(load_scenario(write_scenario(base=disagg())))
    t = res.table
    done = t.state == COMPLETED
    assert done.all()
    # 2 (K and V) x layers x kv_heads x head_dim x 2 bytes (bf16) x prompt tokens
    per_token = 2 * 32 * 8 * 128 * 2
    assert np.array_equal(t.kv_transfer_bytes[done], per_token * t.prompt[done].astype(float))
    assert (t.kv_transfer_time[done] > 0).all()
    # every request prefilled on a prefill replica and decoded on a decode replica
    roles = {r.index: r.role for r in res.replicas}
    assert {roles[int(i)] for i in t.replica[done]} == {"decode"}
    assert_invariants(res)


def test_transfer_over_the_rail_fabric_by_hand(write_scenario):
    # one 70B prefill replica on server 0, one decode replica on server 1 (tp 8 each): each
    # GPU sends 1/8 of the cache to its peer through its own 400 Gb/s rail NIC
    sc = load_scenario(write_scenario(base=disagg(prefill=8, decode=8, tp=8, model="llama-3.1-70b",
                                                  topology=RAIL, rate="0.2/s")))
    res = simulate(sc)
    t = res.table
    one = np.nonzero(t.state == COMPLETED)[0][0]
    size = 327_680 * float(t.prompt[one]) / 8
    # 1 MiB messages at 400 Gb/s, each paying the NIC's 1 us: M / (M / 50 GB/s + 1 us);
    # the path (gpu-pcie-nic-leaf-nic-pcie-gpu) adds a few microseconds of latency
    rate = 2**20 / (2**20 / 50e9 + 1e-6)
    assert t.kv_transfer_time[one] == pytest.approx(size / rate, rel=0.005, abs=20e-6)


def test_fast_path_equals_stepping_with_disaggregation(write_scenario):
    path = write_scenario(base=disagg(memory_utilization=0.3))
    a = simulate(load_scenario(path, ["fleet.serve.engine.fast_path=true"]))
    b = simulate(load_scenario(path, ["fleet.serve.engine.fast_path=false"]))
    assert_same_records(a, b)


def test_disaggregation_lowers_decode_interference():
    colo = summarize(simulate(load_scenario(os.path.join(ROOT, "scenarios", "colocated-llama70b.yaml"),
                                            ["duration=60s", "warmup=10s"])))
    split = summarize(simulate(load_scenario(os.path.join(ROOT, "scenarios", "disagg-llama70b.yaml"),
                                             ["duration=60s", "warmup=10s"])))
    assert split["latency_s"]["tpot"]["p99"] < colo["latency_s"]["tpot"]["p99"]
    assert split["network"]["kv_transfers"] > 0 and colo["network"]["kv_transfers"] == 0


@pytest.mark.parametrize("change, message", [
    (lambda d: d["fleet"].pop(1), "has a prefill pool but no decode pool"),
    (lambda d: d.pop("topology"), "add topology:"),
    (lambda d: d["fleet"][1]["serve"].update(role="both"), "mixes disaggregated pools"),
])
def test_disaggregation_errors(write_scenario, change, message):
    data = disagg()
    change(data)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write_scenario(base=data))
