"""Model swapping: models that take turns on the same devices as demand moves between them.

One model per device at any time; a swap's delay by hand (the outgoing replica's drain, then
provisioning + weight bytes / path bandwidth); a waiting model takes the devices of a busy
one no faster than its scale-down window; every request accounted for; devices paid once."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from sim.core.metrics import COMPLETED
from sim.ops.lifecycle import POWERED
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import BASE, ROOT

NODE = os.path.join(ROOT, "topologies", "hgx-h100-node.yaml")


def only(start: float, end: float, period: float) -> dict:
    """Traffic only in [start, end) of each period: a diurnal table (normalized to mean 1
    over the period, so the stream's rate is its mean and it sends rate x period / (end -
    start) inside the window)."""
    eps, points = 1e-3, []
    for t, m in ((0.0, 0.0), (start, 0.0), (start + eps, 1.0), (end - eps, 1.0), (end, 0.0), (period - eps, 0.0)):
        if t < period and (not points or t > points[-1][0]):
            points.append([t, m])
    if start == 0.0:
        points[0][1] = 1.0
    return {"process": "poisson", "diurnal": {"period": f"{period}s", "start": "0s", "table": points}}


def swapping(write_scenario, count=1, duration="300s", a=None, b=None, scale=None, **more):
    """Pool a (Llama 3.1 8B) and pool b (Llama 3.2 3B) swap `count` H100s of one server."""
    scale = scale or {"policy": "queue", "target": 8, "min": 0, "interval": "5s", "scale_down_window": "30s"}
    base = copy.deepcopy(BASE)
    pool = base["fleet"][0]
    pool.update(pool="a", count=count, autoscale={**scale, "initial": count})
    pool["serve"].update(weights="host", provision="10s")
    other = copy.deepcopy(pool)
    del other["device"], other["count"]
    other.update(pool="b", swap_devices_with="a", autoscale={**scale, "initial": 0})
    other["serve"]["model"] = "llama-3.2-3b"
    base["fleet"].append(other)
    stream = base["workload"][0]
    base["workload"] = [{**stream, "name": "a", "model": "llama-3.1-8b", **(a or {})},
                        {**stream, "name": "b", "model": "llama-3.2-3b", **(b or {})}]
    return load_scenario(write_scenario({"duration": duration, "warmup": "0s", "topology": NODE, **more}, base=base))


def accounted(res):
    s = summarize(res)["requests"]
    assert s["arrived"] == s["completed"] + s["rejected"] + s["shed"] + s["failed"] + s["in_flight"]
    return s


def held(res, group) -> list[tuple[float, float]]:
    """The intervals in which a lifecycle group holds its devices (starting, live, draining)."""
    h = res.lifecycle.history[group] + [(np.inf, None)]
    return [(t0, t1) for (t0, s), (t1, _) in zip(h, h[1:], strict=False) if s in POWERED and t1 > t0]


def one_model_per_device(res):
    swap = res.autoscalers[0].swap
    for slot in swap.slots:
        spans = sorted(span for g in slot for span in held(res, g))
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end - 1e-9, (slot, spans)


def test_a_swap_takes_the_drain_then_provisioning_plus_weights_over_the_path(write_scenario):
    # a serves all along; b's first request comes at 100 s, after a's replica has held the
    # device for its 30 s scale-down window: b claims it, a's replica finishes what it holds
    # (its later requests wait), then b's replica provisions and loads its weights
    res = simulate(swapping(write_scenario, a={"rate": "4/s"}, b={"arrival": only(100.0, 300.0, 300.0)}))
    accounted(res)
    one_model_per_device(res)
    t = res.table
    assert (t.state == COMPLETED).all()
    swap = res.autoscalers[0].swap.swaps[0]
    assert (swap.out_pool, swap.in_pool) == ("a", "b")
    first = int(np.argmin(np.where(t.stream == 1, t.arrival, np.inf)))
    assert swap.claimed == t.arrival[first]                # the first request of b claims it
    on_a = (t.replica == res.replicas[0].index) & (t.admitted < swap.claimed)
    assert swap.drained == pytest.approx(t.finished[on_a].max(), abs=1e-9) and swap.drained > swap.claimed
    fabric = res.fabric
    gpu = res.replicas[1].accelerators[0]
    links = fabric.route(res.scenario.spec.topology.host_cpu(gpu), gpu, 0)
    bandwidth = min(fabric.capacity[links].min(), fabric.link_flow_cap[links].min())
    weights = res.scenario.pools[1].deployment.weight_bytes
    assert swap.start.live - swap.drained == pytest.approx(10.0 + weights / bandwidth + fabric.latency[links].sum(),
                                                          rel=1e-9)
    assert t.start_wait[first] == pytest.approx(swap.start.live - t.arrival[first], rel=1e-12)
    s = {p["pool"]: p for p in summarize(res)["autoscaling"]}
    assert s["b"]["swaps"]["swaps_in"] >= 1 and s["a"]["swaps"]["swaps_out"] >= 1
    assert s["b"]["requests_waiting_for_start"] >= 1 and s["a"]["requests_waiting_for_start"] >= 1


def test_the_outgoing_replica_finishes_what_it_holds_before_the_swap(write_scenario):
    # every swap: the outgoing replica completes what it holds, takes nothing new, and
    # serves its model again only after a swap brings it back
    res = simulate(swapping(write_scenario, count=1, duration="200s", a={"rate": "3/s"}, b={"rate": "3/s"}))
    accounted(res)
    one_model_per_device(res)
    t = res.table
    assert (t.state == COMPLETED).all()
    swaps = res.autoscalers[0].swap.swaps
    assert len(swaps) >= 2
    for s in swaps:
        out = 0 if s.out_pool == "a" else 1
        mine = t.replica == res.replicas[out].index
        before = mine & (t.arrival < s.claimed)
        after = mine & (t.arrival > s.claimed)    # routed elsewhere, or held until a's return
        assert t.finished[before].max() <= s.drained + 1e-9
        if s.start is not None and after.any():   # back on the device only after another swap
            assert t.admitted[after].min() > s.start.live


def test_demand_moving_between_models_moves_the_devices(write_scenario):
    # a busy in the first half, b in the second: the 4 GPUs move from a to b
    scale = {"policy": "queue", "target": 4, "min": 0, "interval": "5s", "scale_down_window": "60s"}
    res = simulate(swapping(write_scenario, count=4, duration="400s", scale=scale,
                            a={"rate": "15/s", "arrival": only(0, 200, 400)},
                            b={"rate": "15/s", "arrival": only(200, 400, 400)}))
    accounted(res)
    one_model_per_device(res)
    a, b = res.autoscalers
    assert max(n for _, n in a.history) <= 4 and max(n for _, n in b.history) <= 4
    assert [n for t, n in a.history if t < 200][-1] == 4
    # b's first request takes a device at once (b has none; a keeps three) ...
    first_b = res.table.arrival[res.table.stream == 1].min()
    swap = res.autoscalers[0].swap.swaps[0]
    assert (swap.in_pool, swap.claimed) == ("b", first_b)
    # ... and the rest once a's scale-down window has seen its demand gone (a's last request
    # done soon after 200 s, then 60 s, then the next 5 s decision)
    assert b.history[-1][1] == 4 and a.history[-1][1] == 0
    assert 260.0 <= b.history[-1][0] <= 275.0
    # every GPU changed model once: one claimed while a held it, three after a let them go
    changes = summarize(res)["autoscaling"][1]["swaps"]
    assert (changes["swaps_in"], changes["direct"]) == (4, 1)
    assert sorted(s.slot for s in res.autoscalers[0].swap.swaps) == [0, 1, 2, 3]


def test_two_busy_models_on_one_device_take_turns_no_faster_than_the_window(write_scenario):
    scale = {"policy": "queue", "target": 4, "min": 0, "interval": "5s", "scale_down_window": "60s"}
    res = simulate(swapping(write_scenario, count=1, duration="300s", scale=scale,
                            a={"rate": "2/s"}, b={"rate": "2/s"}))
    accounted(res)
    one_model_per_device(res)
    swaps = res.autoscalers[0].swap.swaps
    assert len(swaps) >= 2
    life = res.lifecycle
    for s in swaps:
        out = next(g for g in res.autoscalers[0].swap.slots[s.slot] if life.pool_of[g].name == s.out_pool)
        live_since = max(t for t, state in life.history[out] if state == "live" and t <= s.claimed)
        assert s.claimed - live_since >= 60.0 - 1e-9
    # both models were served
    t = res.table
    assert (t.state[t.stream == 0] == COMPLETED).any() and (t.state[t.stream == 1] == COMPLETED).any()


@pytest.mark.parametrize("pricing", ["own", "rent"])
def test_the_devices_are_paid_once(write_scenario, pricing):
    scale = {"policy": "queue", "target": 4, "min": 0, "interval": "5s", "scale_down_window": "20s"}
    res = simulate(swapping(write_scenario, count=2, duration="200s", scale=scale,
                            a={"rate": "3/s", "arrival": only(0, 100, 200)},
                            b={"rate": "3/s", "arrival": only(100, 200, 200)},
                            economics={"pricing": pricing}))
    s = summarize(res)
    from sim.catalog import economics
    eco = res.scenario.spec.economics
    dep = res.scenario.pools[0].deployment
    hourly = economics.device_cost_per_hour(dep.device, res.scenario.pricing.name, eco.amortize_years,
                                            eco.cost_of_capital)
    devices = sum(p["usd_per_hour"] for p in s["pools"])
    if pricing == "own":
        assert devices == pytest.approx(2 * hourly.usd_per_hour, rel=1e-9)
    else:
        life = res.lifecycle
        share = sum(life.seconds_in(g, POWERED, 0.0, 200.0) for g in range(len(life.groups))) / 200.0
        assert devices == pytest.approx(hourly.usd_per_hour * share, rel=1e-9)
        assert share <= 2.0 + 1e-9


@pytest.mark.parametrize("change, field, message", [
    ({"fleet.1.autoscale": None}, "fleet[1].autoscale", "needs autoscale"),
    ({"fleet.1.serve.tp": 2}, "fleet[1].serve.tp", "give it a's tp (1)"),
    ({"fleet.1.memory_fraction": 0.5}, "fleet[1].memory_fraction", "holds all of the devices' memory"),
    ({"fleet.1.share_devices_with": "a"}, "fleet[1].share_devices_with", "not both"),
    ({"fleet.1.swap_devices_with": "c"}, "fleet[1].swap_devices_with", "no pool 'c'"),
    ({"fleet.1.autoscale.initial": 2}, "fleet[1].autoscale", "start with 3 replicas"),
    ({"failures": {"events": [{"at": "10s", "fail": "device", "target": 0}]}}, "failures", "swap_devices_with"),
])
def test_errors_name_the_field(write_scenario, change, field, message):
    base = copy.deepcopy(BASE)
    pool = base["fleet"][0]
    pool.update(pool="a", count=2, autoscale={"policy": "queue", "target": 8, "min": 0, "initial": 1})
    other = {"pool": "b", "swap_devices_with": "a", "serve": {"model": "llama-3.2-3b"},
             "autoscale": {"policy": "queue", "target": 8, "min": 0, "initial": 1}}
    base["fleet"].append(other)
    base["workload"] = [{**base["workload"][0], "model": "llama-3.1-8b"}]
    path = write_scenario(change, base=base)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert field in msg and message in msg, msg
