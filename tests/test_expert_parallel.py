"""Expert parallelism: data-parallel attention ranks, experts spread, all-to-all per MoE layer."""
from __future__ import annotations

import os

import pytest

from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from sim.timing import kernels
from tests.conftest import ROOT
from tests.test_simulation import assert_invariants, assert_same_records

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def deepseek(write_scenario, ep, count, extra=None):
    return write_scenario({"fleet.0.device": "nvidia-h200", "fleet.0.count": count,
                           "fleet.0.serve.model": "deepseek-v3", "fleet.0.serve.precision": "fp8",
                           "fleet.0.serve.tp": 1, "fleet.0.serve.ep": ep, "workload.0.rate": "4/s",
                           "duration": "15s", **(extra or {})})


def test_experts_spread_over_ranks_make_deepseek_fit(write_scenario):
    sc = load_scenario(deepseek(write_scenario, ep=8, count=8))
    dep = sc.pools[0].deployment
    m = dep.model
    routed = m.moe_layers * m.experts * m.expert_params()
    assert dep.weight_bytes == pytest.approx(m.computed_params() - routed + routed / 8)  # fp8: 1 byte
    assert sc.pools[0].replicas == 1 and sc.pools[0].spec.engines_per_replica == 8


def test_all_to_all_term_by_hand(write_scenario):
    dep = load_scenario(deepseek(write_scenario, ep=8, count=8)).pools[0].deployment
    p = dep.params.copy()
    args = (32.0, 32.0, 0.0, 0.0, 0.0, 32 * 1000.0, 32.0)
    with_a2a = kernels.iteration_time(*args, p)
    p[kernels.K_EP_ON_LINK] = 0.0
    without = kernels.iteration_time(*args, p)
    m = dep.model
    one = 32 * 8 * m.hidden * 2 * 7 / 8 / p[kernels.K_LINK_BW] + 7 * p[kernels.K_LINK_LAT]
    assert with_a2a - without == pytest.approx(m.moe_layers * 2 * one)


def test_ranks_serve_their_own_requests(write_scenario):
    path = deepseek(write_scenario, ep=8, count=8)
    res = simulate(load_scenario(path))
    assert len(res.replicas) == 8 and (res.table.state == 1).all()
    assert len(set(res.table.replica)) > 1
    assert_invariants(res)
    assert_same_records(res, simulate(load_scenario(path, ["fleet.serve.engine.fast_path=false"])))


def test_ranks_on_two_servers_exchange_tokens_over_the_fabric(write_scenario):
    path = deepseek(write_scenario, ep=16, count=16, extra={"topology": RAIL, "fleet.0.device": "nvidia-h100-sxm",
                                                          "fleet.0.serve.engine": {"memory_utilization": 0.95}})
    res = simulate(load_scenario(path))
    assert res.fabric.flows_done > 0
    assert res.fabric.link_frame()["src"].str.contains("nic").any()
    assert (res.table.state == 1).all()


@pytest.mark.parametrize("change, message", [
    ({"fleet.0.serve.model": "llama-3.1-8b", "fleet.0.device": "nvidia-h100-sxm"}, "needs a mixture-of-experts"),
    ({"fleet.0.serve.tp": 2, "fleet.0.count": 16}, "use tp: 1 and pp: 1 with ep"),
])
def test_expert_parallel_errors(write_scenario, change, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenario(deepseek(write_scenario, ep=8, count=8, extra=change))


def test_expert_parallel_ranks_load_their_devices_once(write_scenario):
    hgx = os.path.join(ROOT, "topologies", "hgx-h100-node.yaml")
    sc = load_scenario(deepseek(write_scenario, ep=8, count=8, extra={
        "topology": hgx, "fleet.0.serve.weights": "host"}))
    res = simulate(sc)
    # one load of each device's share, however many ranks list the device
    assert res.fabric.bytes_delivered == pytest.approx(8 * sc.pools[0].deployment.weight_bytes)
    assert len({r.weight_load_s for r in res.replicas}) == 1
