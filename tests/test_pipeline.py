"""Pipeline parallelism: stages split the weights; pp engines share a replica's devices and
pass their micro-batches through its stages one at a time."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sim.scenario import load_scenario
from sim.serving.pipeline import Pipeline
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from sim.timing import kernels
from tests.conftest import ROOT
from tests.test_simulation import assert_invariants, assert_same_records

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def big(write_scenario, pp, count=16, extra=None):
    return write_scenario({"fleet.0.count": count, "fleet.0.serve.model": "llama-3.1-405b",
                           "fleet.0.serve.tp": 8, "fleet.0.serve.pp": pp, "workload.0.rate": "1/s",
                           "duration": "20s", **(extra or {})})


def test_a_model_too_big_for_one_server_fits_with_stages(write_scenario):
    with pytest.raises(ScenarioError, match=r"pp=2 \(pipeline stages\)"):
        load_scenario(big(write_scenario, pp=1, count=8))
    sc = load_scenario(big(write_scenario, pp=2))
    dep = sc.pools[0].deployment
    assert dep.weight_bytes == pytest.approx(dep.model.computed_params() * 2 / 16)
    assert sc.pools[0].replicas == 1


def test_stage_send_term_by_hand(write_scenario):
    sc1 = load_scenario(write_scenario({"fleet.0.count": 8, "fleet.0.serve.tp": 4, "fleet.0.serve.pp": 1}))
    sc2 = load_scenario(write_scenario({"fleet.0.count": 8, "fleet.0.serve.tp": 4, "fleet.0.serve.pp": 2}))
    p1, p2 = sc1.pools[0].deployment.params, sc2.pools[0].deployment.params
    args = (64.0, 64.0, 0.0, 0.0, 0.0, 64 * 500.0, 64.0)
    bw, lat = p2[kernels.K_LINK_BW], p2[kernels.K_LINK_LAT]
    send = 64 * 4096 * 2 / 4 / bw + lat  # one send of the batch's activations over tp links
    assert kernels.iteration_time(*args, p2) - kernels.iteration_time(*args, p1) == pytest.approx(send)


def test_engines_share_the_replica_kv_and_serve_everything(write_scenario):
    path = write_scenario({"fleet.0.count": 8, "fleet.0.serve.tp": 4, "fleet.0.serve.pp": 2,
                           "workload.0.rate": "15/s"})
    sc = load_scenario(path)
    res = simulate(sc)
    assert len(res.replicas) == 2 * 1  # one replica of 2 stages x 4 GPUs = 2 engines
    one_stage = load_scenario(write_scenario({"fleet.0.count": 4, "fleet.0.serve.tp": 4}))
    # each stage device caches half the layers, so it holds ~twice the tokens; two engines share it
    per_engine = sc.pools[0].deployment.total_blocks
    assert per_engine == pytest.approx(one_stage.pools[0].deployment.total_blocks, rel=0.05)
    assert (res.table.state == 1).all()
    assert_invariants(res)
    assert_same_records(res, simulate(load_scenario(path, ["fleet.serve.engine.fast_path=false"])))


def test_stages_on_two_servers_send_over_the_fabric(write_scenario):
    res = simulate(load_scenario(big(write_scenario, pp=2, extra={"topology": RAIL})))
    frame = res.fabric.link_frame()
    assert res.fabric.flows_done > 0 and frame["src"].str.contains("nic").any()
    t = res.table
    assert (t.state == 1).all()
    # both engines of the replica run on the same 16 GPUs across the two servers
    assert res.replicas[0].accelerators == res.replicas[1].accelerators
    assert {a.split(".")[0] for a in res.replicas[0].accelerators} == {"s0", "s1"}


def requests(write_scenario, n=1, prompt=300, output=6, extra=None):
    """n requests sent at once (closed loop) to one replica of 2 stages x tp 4."""
    return write_scenario({"fleet.0.count": 8, "fleet.0.serve.tp": 4, "fleet.0.serve.pp": 2,
                           "fleet.0.serve.engine": {"max_batch_seqs": 8, "framework": "vllm", "version": "0.8.5"},
                           "workload.0": {"name": "w", "requests": n, "concurrency": n, "prompt_tokens": prompt,
                                          "output_tokens": output},
                           "duration": "120s", "warmup": "0s", **(extra or {})})


def test_a_micro_batch_alone_passes_the_stages_in_turn(write_scenario):
    """With nothing else in the pipeline a token takes the host's work, then each stage's
    half of the layers, with the activations sent over the link between them."""
    res = simulate(load_scenario(requests(write_scenario)))
    dep = res.scenario.pools[0].deployment
    p, dev = dep.params, Pipeline.device_params(dep.params)
    host = p[kernels.K_OVERHEAD] + p[kernels.K_HOST_PER_SEQ]
    send = lambda tokens: tokens * p[kernels.K_HIDDEN] * 2 / 4 / p[kernels.K_LINK_BW] + p[kernels.K_LINK_LAT]
    first = host + kernels.prefill_time(dev, 300) + send(300)
    decodes = sum(host + kernels.decode_time(dev, 1, 300 + j) + send(1) for j in range(1, 6))
    t = res.table
    i = 0
    assert t.first_token[i] - t.arrival[i] == pytest.approx(first, rel=1e-9)
    assert t.finished[i] - t.arrival[i] == pytest.approx(first + decodes, rel=1e-9)


def test_two_engines_share_the_stages(write_scenario):
    """Two requests, one on each engine: their micro-batches alternate in the stages, so each
    decodes slower than a request alone (which has the stages to itself between its own
    micro-batches) but faster than twice as slow (the stages work in parallel)."""
    res = simulate(load_scenario(requests(write_scenario, n=2, prompt=4000, output=40)))
    t = res.table
    assert (t.state == 1).all() and set(t.replica.tolist()) == {0, 1}
    alone = simulate(load_scenario(requests(write_scenario, prompt=4000, output=40)))
    # two equal requests on the two engines: each decodes at the pace the pair allows, slower
    # than one request alone (the stages alternate), but faster than twice as slow
    tpot = lambda r: float(np.nanmean((r.table.finished - r.table.first_token) / (r.table.output - 1)))
    assert tpot(alone) < tpot(res) < 2 * tpot(alone)


def test_stages_compute_one_micro_batch_at_a_time(write_scenario):
    res = simulate(load_scenario(requests(write_scenario, n=16, output=60)))
    pipe = res.pipelines[0]
    # each stage computed no longer than the run lasted, and both stages did the same work
    assert (pipe.busy <= res.end_time + 1e-9).all()
    assert pipe.busy[0] == pytest.approx(pipe.busy[1], rel=1e-12)
    # with requests on both engines the stages overlap: the pair computes more than one pass's
    # worth of time per unit of wall time
    assert pipe.busy.sum() > res.end_time * 1.2
