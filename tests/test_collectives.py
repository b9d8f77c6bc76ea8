"""Tensor parallelism across servers: the all-reduce runs as flows over the fabric."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.timing import kernels
from tests.conftest import ROOT

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def tp16(write_scenario, rate="0.5/s"):
    return load_scenario(write_scenario({
        "topology": RAIL, "duration": "20s", "warmup": "0s",
        "fleet.0.count": 16, "fleet.0.serve.tp": 16, "fleet.0.serve.model": "llama-3.1-70b",
        "workload.0.rate": rate, "workload.0.prompt_tokens": 256, "workload.0.output_tokens": 8}))


def test_cross_server_replica_all_reduces_over_the_fabric(write_scenario):
    sc = tp16(write_scenario)
    res = simulate(sc)
    assert res.fabric.flows_done > 0
    frame = res.fabric.link_frame()
    assert frame["src"].str.contains("nic").any()  # the ring leaves the servers through their NICs
    t = res.table
    assert (t.state == 1).all()


def test_one_iteration_time_is_compute_plus_ring_over_the_nics(write_scenario):
    sc = load_scenario(write_scenario({
        "topology": RAIL, "duration": "1h", "warmup": "0s",
        "fleet.0.count": 16, "fleet.0.serve.tp": 16, "fleet.0.serve.model": "llama-3.1-70b",
        "workload": [{"name": "one-at-a-time", "requests": 3, "concurrency": 1,
                      "prompt_tokens": 256, "output_tokens": 8}]}))
    res = simulate(sc)
    t = res.table
    i = int(np.nonzero(t.state == 1)[0][0])
    dep = sc.pools[0].deployment
    p = dep.params.copy()
    p[kernels.K_TP] = 1.0
    empty = np.zeros(0, np.int64)
    compute = kernels.batch_time(np.array([256]), np.array([0]), np.array([256]), empty, p)
    m = sc.pools[0].deployment.model
    nbytes = m.layers * 2 * 256 * m.hidden * 2
    # the ring's slowest step crosses a 400 Gb/s NIC (1 MiB messages, 1 us each) ...
    nic = 2**20 / (2**20 / 50e9 + 1e-6)
    ring = 2 * 15 / 16 * nbytes / nic
    # ... and each of the 2 x layers all-reduces waits 2(n-1) times for its slowest hop
    nodes = res.replicas[0].accelerators
    hop = max(res.fabric.latency[res.fabric.route(a, b, 0)].sum()
              for a, b in zip(nodes, nodes[1:] + nodes[:1], strict=True))
    latency = m.layers * 2 * 2 * 15 * hop
    prefill = t.first_token[i] - t.admitted[i]
    # within 10%: ECMP gives the ring's crossing flows 7- and 8-hop paths of unequal latency
    # that sometimes share a link (tests/test_network.py checks the clean ring within 1%)
    assert prefill == pytest.approx(compute + ring + latency, rel=0.10)
    assert prefill > compute * 1.2  # crossing servers costs real time


def test_within_one_server_tp_stays_on_nvlink(write_scenario):
    sc = load_scenario(write_scenario({"topology": RAIL, "fleet.0.count": 8, "fleet.0.serve.tp": 8,
                                       "fleet.0.serve.model": "llama-3.1-70b", "duration": "10s"}))
    res = simulate(sc)
    assert res.fabric.flows_done == 0


# ---- TPU slices: tensor parallelism on the torus ------------------------------------------------

def tpu_slice(write_scenario, wraparound: bool, dims=(2, 4), tp=8):
    topology = {"name": "slice", "build": {"kind": "torus", "dims": list(dims), "wraparound": wraparound,
                                           "link": "100GB/s", "latency": "1us"}}
    return load_scenario(write_scenario({"topology": topology, "fleet.0.device": "google-tpu-v6e",
                                         "fleet.0.count": dims[0] * dims[1], "fleet.0.serve.tp": tp}))


def test_a_torus_ring_by_hand():
    from sim.fabric.topology import TorusGroup
    s, a, b = 1e6, 1e-6, 100e9
    ring = TorusGroup((2, 4), (True, True), b, a)
    line = TorusGroup((2, 4), (False, False), b, a)
    # the last axis (4 chips) first, then the first (2 chips) on a quarter of the bytes
    assert ring.allreduce(s) == pytest.approx(2 * 3 * (a + s / (4 * 2 * b)) + 2 * 1 * (a + s / 4 / (2 * 2 * b)))
    assert line.allreduce(s) == pytest.approx(2 * 3 * (3 * a + s / (4 * b)) + 2 * 1 * (a + s / 4 / (2 * b)))


def test_the_same_tp8_pool_is_slower_without_the_wraparound_by_the_ring_formula(write_scenario):
    from sim.timing.operators import AllGather, AllReduce, operators
    ring, line = tpu_slice(write_scenario, True), tpu_slice(write_scenario, False)
    on_ring, on_line = ring.pools[0].deployment, line.pools[0].deployment
    assert on_ring.torus.dims == (2, 4) and on_ring.torus.wrap == (True, True) and on_line.torus.wrap == (False, False)
    assert "over the torus's links (2x4 chips: ring, ring)" in on_ring.timing
    batch, context = 64, 1000
    def device_only(params):     # the TPU runtime's host time would hide the device's under overlap
        params = params.copy()
        params[kernels.K_OVERHEAD] = params[kernels.K_HOST_PER_SEQ] = 0.0
        return params
    slower = kernels.decode_time(device_only(on_line.params), batch, context) - kernels.decode_time(
        device_only(on_ring.params), batch, context)
    ops = operators(on_ring.model, 8, on_ring.precision, on_ring.kv_precision)
    by_hand = 0.0
    for op in ops.tokens + ops.logits:
        size = batch * getattr(op, "nbytes", 0.0)
        if isinstance(op, AllReduce):
            by_hand += op.count * (on_line.torus.allreduce(size) - on_ring.torus.allreduce(size))
        elif isinstance(op, AllGather):
            by_hand += op.count * 0.5 * (on_line.torus.allreduce(size) - on_ring.torus.allreduce(size))
    assert slower > 0 and slower == pytest.approx(by_hand, rel=1e-3)
    # no topology: the device's own scale-up figures, as before
    plain = load_scenario(write_scenario({"fleet.0.device": "google-tpu-v6e", "fleet.0.count": 8,
                                          "fleet.0.serve.tp": 8})).pools[0].deployment
    assert plain.torus is None
