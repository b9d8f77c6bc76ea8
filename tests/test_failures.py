"""Failures: requests on a failed replica are retried elsewhere or fail with a reason, none
completes on it afterwards, every request is accounted for; repairs start the replica again
as a cold start; cables that fail reroute flows; errors name the field."""
from __future__ import annotations

import copy
import os

import networkx as nx
import numpy as np
import pytest
import simpy

from sim.core.metrics import COMPLETED, FAILED, IN_FLIGHT, REASON_CODES, REJECTED, SHED
from sim.fabric.network import Fabric
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import BASE, ROOT

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def accounted(res) -> dict:
    """arrived = completed + rejected + shed + failed + in flight, exactly; returns the counts."""
    s = summarize(res)["requests"]
    assert s["arrived"] == s["completed"] + s["rejected"] + s["shed"] + s["failed"] + s["in_flight"]
    assert s["arrived"] == res.table.n
    assert np.isin(res.table.state, [COMPLETED, REJECTED, SHED, FAILED, IN_FLIGHT]).all()
    return s


def fleet(write_scenario, failures, engine=None, replicas=4, **more):
    base = copy.deepcopy(BASE)
    base["fleet"][0]["count"] = replicas
    if engine:
        base["fleet"][0]["serve"]["engine"].update(engine)
    return load_scenario(write_scenario({"duration": "40s", "failures": failures, **more}, base=base))


def check_failover(res, t_fail: float, device: int) -> list[int]:
    """Every request the failed replica held completed elsewhere or failed with a reason, and
    none completed on it after the failure. Returns the requests it lost."""
    accounted(res)
    t = res.table
    entry = res.failures.log[0]
    lost = np.array(entry["lost"], np.int64)
    assert entry["time"] == t_fail and entry["replicas_down"] == 1
    assert len(lost) > 0
    done = t.state[lost] == COMPLETED
    assert (t.replica[lost][done] != device).all()
    reasons = {REASON_CODES["retries_exhausted"], REASON_CODES["replica_failed"]}
    assert all(t.state[r] == FAILED and t.reason[r] in reasons for r in lost[~done])
    on_it = (t.replica == device) & (t.state == COMPLETED)
    assert (t.finished[on_it] <= t_fail).all()
    assert (t.retries[lost] >= 1).all() or (t.state[lost] == FAILED).all()
    return lost.tolist()


@pytest.mark.parametrize("engine", [
    None,                                                   # continuous batching, chunked prefill
    {"prefix_cache": True},                                 # a cache: its entries are lost with the replica
    {"batching": "static", "chunked_prefill": None},        # static batches
])
def test_a_failed_device_sends_its_requests_elsewhere(write_scenario, engine):
    res = simulate(fleet(write_scenario, {"events": [{"at": "10s", "fail": "device", "target": 1}]}, engine))
    lost = check_failover(res, 10.0, 1)
    t = res.table
    assert (t.state[lost] == COMPLETED).all()           # retries on: all served by the others
    assert summarize(res)["requests"]["retries"] == len(lost)
    assert res.lifecycle.state[1] == "failed"            # never repaired


def test_without_retries_the_requests_fail_with_a_reason(write_scenario):
    res = simulate(fleet(write_scenario, {"retries": 0, "events": [{"at": "10s", "fail": "device", "target": 0}]}))
    lost = check_failover(res, 10.0, 0)
    t = res.table
    assert (t.state[lost] == FAILED).all() and (t.reason[lost] == REASON_CODES["replica_failed"]).all()
    assert summarize(res)["requests"]["failed_by_reason"] == {"replica_failed": len(lost)}


def test_a_repaired_replica_starts_again_after_provisioning(write_scenario):
    scenario = fleet(write_scenario, {"events": [{"at": "10s", "fail": "device", "target": 0,
                                                  "repair_after": "5s"}]},
                     **{"fleet.0.serve.provision": "3s"})
    res = simulate(scenario)
    accounted(res)
    states = [(round(t, 9), s) for t, s in res.lifecycle.history[0]]
    assert states == [(0.0, "live"), (10.0, "failed"), (15.0, "starting"), (18.0, "live")]
    start = res.lifecycle.starts[0]
    assert (start.reason, start.requested, start.live) == ("repair", 15.0, 18.0)
    t = res.table
    mine = (t.replica == 0) & (t.state == COMPLETED)
    assert (t.admitted[mine & (t.finished > 10.0)] >= 18.0).all()
    assert ((t.admitted >= 18.0) & mine).sum() > 0       # it serves again


def test_a_server_failure_takes_its_devices_and_is_reported(write_scenario):
    res = simulate(fleet(write_scenario, {"events": [{"at": "5s", "fail": "server", "target": 1}]}, replicas=16))
    accounted(res)
    assert res.failures.log[0]["devices"] == 8 and res.failures.log[0]["replicas_down"] == 8
    s = summarize(res)["failures"]
    assert s["events"][0]["component"] == "server" and s["events"][0]["replicas_down"] == 8
    # half the fleet is down from 5 s on
    assert s["replica_availability"] == pytest.approx(1 - 0.5 * 35 / 38, abs=1e-9)   # window 2-40 s


def test_random_failures_are_reproducible_and_lose_nothing(write_scenario):
    failures = {"random": [{"component": "device", "mtbf": "20s", "mttr": "5s"}]}
    runs = [simulate(fleet(write_scenario, failures)) for _ in range(2)]
    for res in runs:
        accounted(res)
    a, b = runs
    assert [e["time"] for e in a.failures.log] == [e["time"] for e in b.failures.log]
    assert len(a.failures.log) >= 4
    assert np.array_equal(a.table.state, b.table.state)
    assert np.array_equal(a.table.finished, b.table.finished, equal_nan=True)


def test_a_failed_cable_reroutes_and_a_cut_off_flow_waits_for_the_repair():
    # a -- b direct at 10 GB/s, and a -- c -- b at 5 GB/s: 10 GB from a to b
    g = nx.Graph()
    g.add_edge("a", "b", bandwidth=10e9)
    g.add_edge("a", "c", bandwidth=5e9)
    g.add_edge("c", "b", bandwidth=5e9)
    for n in g:
        g.nodes[n]["kind"] = "switch"
    env = simpy.Environment()
    fabric = Fabric(env, g)
    done = fabric.transfer("a", "b", 10e9)

    def script():
        yield env.timeout(0.5)            # 5 GB sent on the direct cable
        fabric.set_link("a", "b", False)  # the rest, 5 GB, over a-c-b at 5 GB/s: 1 s
        yield env.timeout(0.5)
        fabric.set_link("a", "c", False)  # cut off with 2.5 GB left
        yield env.timeout(2.0)
        fabric.set_link("a", "b", True)   # back on the direct cable: 0.25 s
    env.process(script())
    env.run()
    assert done.triggered and env.now == pytest.approx(3.25, rel=1e-12)


def test_a_failed_cable_moves_weight_loading_to_another_path(write_scenario):
    base = copy.deepcopy(BASE)
    base["fleet"][0]["count"] = 16
    base["fleet"][0]["serve"]["weights"] = "storage"
    scenario = load_scenario(write_scenario({
        "duration": "10s", "topology": RAIL,
        "failures": {"events": [{"at": "0s", "fail": "link", "target": ["rail0.leaf0", "spine0"]}]}}, base=base))
    res = simulate(scenario)
    accounted(res)
    # the storage node hangs off spine0: rail 0's weights come round through another rail
    assert all(r.weight_load_s is not None for r in res.replicas)
    cut = [i for i, (u, v) in enumerate(zip(res.fabric.src, res.fabric.dst, strict=True))
           if {u, v} == {"rail0.leaf0", "spine0"}]
    assert res.fabric.bytes[cut].sum() == 0
    assert res.table.state.tolist().count(COMPLETED) > 0


def test_a_switch_that_cuts_off_storage_strands_weight_loading(write_scenario):
    base = copy.deepcopy(BASE)
    base["fleet"][0]["count"] = 8
    base["fleet"][0]["serve"]["weights"] = "storage"
    scenario = load_scenario(write_scenario({
        "duration": "5s", "drain": "5s", "topology": RAIL,
        "failures": {"events": [{"at": "0s", "fail": "switch", "target": "spine0", "repair_after": "3s"}]}},
        base=base))
    res = simulate(scenario)
    accounted(res)
    # nothing reaches the replicas until the spine is back at 3 s
    assert min(r.weight_load_s for r in res.replicas) > 3.0
    assert np.nanmin(res.table.admitted) > 3.0


@pytest.mark.parametrize("failures, field, words", [
    ({"events": [{"at": "1s", "fail": "device", "target": 9}]}, "failures.events[0].target", "numbered 0-3"),
    ({"events": [{"at": "1s", "fail": "rack", "target": 0}]}, "failures.rack_servers", "servers per rack"),
    ({"events": [{"at": "1s", "fail": "switch", "target": "spine0"}]}, "failures.events[0].fail",
     "needs topology"),
    ({"events": [{"at": "1s", "fail": "disk", "target": 0}]}, "failures.events[0].fail", "'disk' is not valid"),
    ({"random": [{"component": "device", "mtbf": "1h"}]}, "failures.random[0].mttr", "required"),
])
def test_bad_failures_name_the_field(write_scenario, failures, field, words):
    with pytest.raises(ScenarioError) as err:
        fleet(write_scenario, failures)
    text = str(err.value)
    assert field in text and words in text, text


def test_a_server_without_power_draws_nothing_by_hand(write_scenario):
    """Server 1 (8 H100s) loses power at 5 s and stays down: over the window its GPUs and its
    overhead draw only until 5 s; a failed device alone would still draw idle power."""
    from sim.catalog import economics
    calm = {"workload.0.rate": "0.05/s"}
    down = simulate(fleet(write_scenario, {"events": [{"at": "5s", "fail": "server", "target": 1}]}, replicas=16,
                          **calm))
    up = simulate(fleet(write_scenario, {"events": [{"at": "39.9s", "fail": "device", "target": 0}]}, replicas=16,
                        **calm))
    dev = down.scenario.pools[0].deployment.device
    per_gpu_idle = economics.device_power(dev, 0.0) + economics.node_power_per_device(dev, 0.0)
    s_down = summarize(down)
    w0, w1 = s_down["window_s"]
    lost = summarize(up)["power"]["it_watts"] - s_down["power"]["it_watts"]
    assert lost == pytest.approx(8 * per_gpu_idle * (w1 - 5.0) / (w1 - w0), rel=0.01)
    # a failed device keeps drawing: the late device failure changes nothing measurable
    none = simulate(fleet(write_scenario, {"events": []}, replicas=16, **calm))
    assert summarize(up)["power"]["it_watts"] == pytest.approx(summarize(none)["power"]["it_watts"], rel=1e-3)
    # the power time series knows it too: server 1's engines draw nothing once it is down
    from sim.results.report import devices_frame
    frame = devices_frame(down)
    on_server_1 = list(range(8, 16))      # one replica per device, 8 devices a server
    late = frame[frame.replica.isin(on_server_1) & (frame.time >= 6.0)]
    early = frame[frame.replica.isin(on_server_1) & (frame.time + 1.0 <= 5.0)]
    assert len(late) and (late.power_w == 0).all() and (early.power_w > 0).all()


def test_a_failure_while_the_first_weights_load_restarts_cleanly():
    """A rack fails at 8 s while the replicas still load their weights from storage, and is
    back at 13 s: the first load's completion must not also start the restarted replicas
    (it used to succeed their `ready` twice)."""
    from tests.conftest import ROOT
    path = os.path.join(ROOT, "scenarios", "failure-rack.yaml")
    res = simulate(load_scenario(path, ["failures.events=[{at: 8s, fail: rack, target: 0, repair_after: 5s}]",
                                        "duration=20s", "warmup=5s"]))
    s = summarize(res)["requests"]
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["arrived"] > 0
    assert s["retries"] > 0
