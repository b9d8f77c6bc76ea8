"""Weight loading at start-up as flows: by hand over PCIe and from shared storage."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import ROOT

HGX = os.path.join(ROOT, "topologies", "hgx-h100-node.yaml")
RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def fleet(write_scenario, topology, weights, count=8, rate="20/s"):
    return load_scenario(write_scenario({"topology": topology, "fleet.0.count": count,
                                         "fleet.0.serve.weights": weights, "workload.0.rate": rate,
                                         "duration": "10s", "warmup": "0s"}))


def test_host_memory_load_over_shared_pcie(write_scenario):
    sc = fleet(write_scenario, HGX, "host")
    res = simulate(sc)
    w = sc.pools[0].deployment.weight_bytes
    # two GPUs share each PCIe switch's 64 GB/s link to the host CPU
    for r in res.replicas:
        assert r.weight_load_s == pytest.approx(2 * w / 64e9, rel=1e-3)


def test_storage_load_shares_the_storage_uplink(write_scenario):
    sc = fleet(write_scenario, RAIL, "storage")
    res = simulate(sc)
    w = sc.pools[0].deployment.weight_bytes
    # eight GPUs pull through the single 400 Gb/s storage link at once
    assert max(r.weight_load_s for r in res.replicas) == pytest.approx(8 * w / 50e9, rel=1e-3)


def test_requests_wait_for_their_replica_to_load(write_scenario):
    res = simulate(fleet(write_scenario, RAIL, "storage"))
    t = res.table
    ready = {r.index: r.weight_load_s for r in res.replicas}
    admitted_after = np.array([t.admitted[i] >= ready[int(t.replica[i])] - 1e-12 for i in range(t.n)])
    assert admitted_after.all()
    assert np.nanmin(t.admitted) >= min(ready.values())


def test_preloaded_replicas_start_at_once(write_scenario):
    res = simulate(fleet(write_scenario, HGX, "preloaded"))
    assert all(r.weight_load_s is None for r in res.replicas)


@pytest.mark.parametrize("topology, weights, message", [
    (None, "host", "add topology:"),
    (HGX, "storage", "has no storage node"),
])
def test_weight_loading_errors(write_scenario, topology, weights, message):
    change = {"fleet.0.serve.weights": weights}
    if topology:
        change["topology"] = topology
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write_scenario(change))
