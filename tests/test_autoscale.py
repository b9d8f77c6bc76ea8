"""Autoscaling: bounds, a steady count under constant load, scale to zero and back, a cold
start's delay by hand (provisioning + weight bytes / path bandwidth), replica-hours and cost."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from sim.core.metrics import COMPLETED
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import BASE, ROOT

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def scaled(write_scenario, autoscale, replicas=8, rate="20/s", duration="300s", **more):
    base = copy.deepcopy(BASE)
    base["fleet"][0]["count"] = replicas
    base["fleet"][0]["autoscale"] = autoscale
    base["workload"][0]["rate"] = rate
    return load_scenario(write_scenario({"duration": duration, "warmup": "0s", **more}, base=base))


def accounted(res):
    s = summarize(res)["requests"]
    assert s["arrived"] == s["completed"] + s["rejected"] + s["shed"] + s["failed"] + s["in_flight"]
    return s


@pytest.mark.parametrize("policy, target", [("utilization", 0.6), ("queue", 6), ("slo", 0.5)])
def test_the_count_stays_in_bounds_and_settles_under_constant_load(write_scenario, policy, target):
    res = simulate(scaled(write_scenario, {"policy": policy, "target": target, "min": 1, "max": 6, "interval": "5s",
                                           "scale_down_window": "30s"}, rate="40/s"))
    accounted(res)
    a = res.autoscalers[0]
    counts = [n for _, n in a.history]
    assert min(counts) >= 1 and max(counts) <= 6
    # steady: no change in the last half of the run
    assert all(t < 150.0 for t, _ in a.history[1:]), a.history
    assert (res.table.state == COMPLETED).all()


def test_a_pool_scales_to_zero_and_wakes_on_demand(write_scenario):
    # requests for the first 60 s only; the pool starts with none running
    scenario = scaled(write_scenario, {"policy": "queue", "target": 4, "min": 0, "max": 4, "interval": "5s",
                                       "scale_down_window": "20s"}, duration="200s",
                      **{"workload.0.requests": 600, "fleet.0.serve.provision": "10s"})
    res = simulate(scenario)
    accounted(res)
    t = res.table
    assert (t.state == COMPLETED).all()
    a = res.autoscalers[0]
    assert a.history[0][1] == 1 and a.history[-1][1] == 0          # woke, then back to zero
    first = res.lifecycle.starts[0]
    assert first.reason == "wake-up" and first.requested == pytest.approx(t.arrival.min())
    assert first.live - first.requested == pytest.approx(10.0)     # provisioning only: weights preloaded
    s = summarize(res)["autoscaling"][0]
    assert s["requests_waiting_for_start"] > 0
    assert s["start_wait_s"]["p99"] <= 10.0 + 1e-9
    assert s["replica_hours"] < 4 * 200 / 3600


def test_a_cold_start_takes_provisioning_plus_weights_over_the_path(write_scenario):
    scenario = scaled(write_scenario, {"policy": "queue", "target": 4, "min": 0, "max": 1}, replicas=1,
                      rate="1/s", duration="60s",
                      **{"topology": RAIL, "fleet.0.serve.weights": "storage", "fleet.0.serve.provision": "20s"})
    res = simulate(scenario)
    accounted(res)
    start = res.lifecycle.starts[0]
    fabric = res.fabric
    gpu = res.replicas[0].accelerators[0]
    links = fabric.route("storage0", gpu, 0)
    # the path's narrowest link, or the NIC's message-by-message rate when lower
    bandwidth = min(fabric.capacity[links].min(), fabric.link_flow_cap[links].min())
    latency = fabric.latency[links].sum()
    weights = scenario.pools[0].deployment.weight_bytes          # tp 1: the whole model to one GPU
    assert start.live - start.requested == pytest.approx(20.0 + weights / bandwidth + latency, rel=1e-9)
    first = int(np.argmin(res.table.arrival))
    assert res.table.start_wait[first] == pytest.approx(start.live - res.table.arrival[first], rel=1e-12)


def test_replica_hours_and_rented_cost_follow_the_running_replicas(write_scenario):
    fixed = simulate(scaled(write_scenario, None, rate="5/s"))
    auto = simulate(scaled(write_scenario, {"policy": "utilization", "target": 0.7, "min": 1, "interval": "10s"},
                           rate="5/s", economics={"pricing": "rent"}))
    fixed_rent = simulate(scaled(write_scenario, None, rate="5/s", economics={"pricing": "rent"}))
    accounted(auto)
    s = summarize(auto)
    hours = s["autoscaling"][0]["replica_hours"]
    assert hours < 8 * 300 / 3600
    share = hours / (8 * 300 / 3600)
    assert s["cost"]["usd_per_hour"] == pytest.approx(summarize(fixed_rent)["cost"]["usd_per_hour"] * share, rel=1e-9)
    assert summarize(fixed)["autoscaling"] is None


@pytest.mark.parametrize("autoscale, field, words", [
    ({"target": 0.5, "max": 9}, "fleet[0].autoscale.max", "exceeds the 8 replicas"),
    ({"target": 1.5}, "fleet[0].autoscale", "busy fraction"),
    ({"target": 0.5, "min": 3, "max": 2}, "fleet[0].autoscale", "min (3) exceeds max (2)"),
    ({"policy": "latency", "target": 1}, "fleet[0].autoscale.policy", "'latency' is not valid"),
])
def test_bad_autoscale_names_the_field(write_scenario, autoscale, field, words):
    with pytest.raises(ScenarioError) as err:
        scaled(write_scenario, autoscale)
    text = str(err.value)
    assert field in text and words in text, text


def test_requests_waiting_at_a_central_queue_for_a_start_count_their_wait(write_scenario):
    # central dispatch: requests wait in the router's queue while no replica runs; each one
    # that arrived before the woken replica was live waited for the start, until then
    scenario = scaled(write_scenario, {"policy": "queue", "target": 4, "min": 0, "max": 2, "interval": "5s"},
                      replicas=2, rate="5/s", duration="60s",
                      **{"router.dispatch": "central", "fleet.0.serve.provision": "10s"})
    res = simulate(scenario)
    accounted(res)
    t = res.table
    first = res.lifecycle.starts[0]
    assert first.reason == "wake-up"
    before = t.arrival < first.live
    assert before.sum() > 10
    assert np.allclose(t.start_wait[before], first.live - t.arrival[before], rtol=0, atol=1e-9)
    assert (t.start_wait[~before] == 0).all()
