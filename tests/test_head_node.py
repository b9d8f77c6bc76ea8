"""The head node's cores as a shared resource: engine threads, tokenizers, detokenizers and
legacy-NIC staging, checked against hand arithmetic on the shipped scenario pair."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.timing import kernels as K
from tests.conftest import ROOT

KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2   # Llama 3.1 8B: layers x KV heads x head dim x (K, V) x bf16
CORE_SECONDS_PER_BYTE = 200e-6 / 2**20      # the host-staged NIC: 200 us of a core per MiB


@pytest.fixture(scope="module")
def pair():
    runs = {}
    for name in ("legacy", "ai"):
        res = simulate(load_scenario(os.path.join(ROOT, "scenarios", f"{name}-nic-head-node.yaml"), ["duration=60s"]))
        runs[name] = (res, summarize(res))
    return runs


def _decode_iteration(res) -> tuple[float, float]:
    """Mean decode iteration and its host part (s) after the warm-up."""
    log = res.log.columns()
    dec = [r.index for r in res.replicas if r.role == "decode"]
    m = np.isin(log["replica"], dec) & (log["start"] > res.scenario.spec.warmup)
    its = log["iterations"][m].sum()
    return (log["end"] - log["start"])[m].sum() / its, (log["iterations"] * log["host_wait"])[m].sum() / its


def test_staging_and_front_ends_want_the_cores_hand_arithmetic_says(pair):
    res, s = pair["legacy"]
    nodes = {n["server"]: n for n in s["head_nodes"]}
    prefill, decode = nodes["s0"], nodes["s1"]
    tokens_in = s["throughput"]["input_tokens_per_s"]
    tokens_out = s["throughput"]["output_tokens_per_s"]
    # every prompt's KV cache leaves s0 and enters s1 through the staging CPUs
    staging = tokens_in * KV_BYTES_PER_TOKEN * CORE_SECONDS_PER_BYTE
    assert prefill["cores_wanted"]["staging"] == pytest.approx(staging, rel=0.05)
    assert decode["cores_wanted"]["staging"] == pytest.approx(staging, rel=0.05)
    # s0 tokenizes prompts at 10 us a token, s1 detokenizes output at 20 us a token
    assert prefill["cores_wanted"]["frontend"] == pytest.approx(tokens_in * 10e-6, rel=0.05)
    assert decode["cores_wanted"]["frontend"] == pytest.approx(tokens_out * 20e-6, rel=0.1)
    for n in (prefill, decode):
        assert n["cores_wanted"]["engines"] == 8
        # 8 cores shared fairly: host work takes wanted / cores as long
        assert n["host_stretch_mean"] == pytest.approx(n["cores_wanted_total"] / 8, rel=0.05)


def test_legacy_nics_stretch_host_work_so_accelerators_wait_and_tpot_rises(pair):
    (legacy, s_legacy), (ai, s_ai) = pair["legacy"], pair["ai"]
    staged = {n["server"]: n for n in s_legacy["head_nodes"]}
    direct = {n["server"]: n for n in s_ai["head_nodes"]}
    assert direct["s1"]["cores_wanted"]["staging"] == 0.0
    assert staged["s1"]["host_stretch_mean"] > direct["s1"]["host_stretch_mean"] + 0.15
    # a decode iteration is its device time plus the host's: longer by the host's stretch
    it_l, host_l = _decode_iteration(legacy)
    it_a, host_a = _decode_iteration(ai)
    p = legacy.scenario.pools[1].deployment.params
    assert host_l / host_a == pytest.approx(staged["s1"]["host_stretch_mean"] / direct["s1"]["host_stretch_mean"],
                                            rel=0.05)
    assert host_a == pytest.approx(p[K.K_OVERHEAD] * direct["s1"]["host_stretch_mean"], rel=0.05)
    assert it_l - it_a == pytest.approx(host_l - host_a, rel=0.25)
    decode = lambda s: next(p for p in s["pools"] if p["pool"] == "decode")   # noqa: E731
    assert decode(s_legacy)["accelerator_active"] < decode(s_ai)["accelerator_active"]
    assert s_legacy["latency_s"]["tpot"]["p50"] > s_ai["latency_s"]["tpot"]["p50"]


def test_a_server_without_variable_work_keeps_a_constant_stretch_and_no_governor():
    res = simulate(load_scenario(os.path.join(ROOT, "scenarios", "slow-head-node.yaml"), ["duration=10s", "warmup=2s"]))
    (node,) = res.head_nodes
    assert not node.governs and len(node.log) == 0
    assert node.stretch == pytest.approx(2 / 0.6)     # 16 engine threads on 8 cores at 0.6 speed
