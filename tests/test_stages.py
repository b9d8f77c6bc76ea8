"""simulate() and summarize() as named stages, each usable and checkable alone."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sim import simulation as S
from sim.results import summary as R
from sim.results.summary.pools import fleet_figures, power
from sim.results.summary.usage import busy_in_window, pool_of_requests
from sim.scenario import load_scenario

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "scenarios", "quickstart.yaml")


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(QUICKSTART, ["duration=40s", "warmup=10s"])


@pytest.fixture(scope="module")
def run(scenario):
    result = S.simulate(scenario)
    return result, R.summarize(result)


def test_the_stages_build_the_world_a_step_at_a_time(scenario):
    w = S.World(scenario, scenario.spec.seed)
    S.draw_demand(w)
    assert w.table.n == len(w.arrivals.time) > 0
    assert w.replicas == [] and w.router is None
    S.build_replicas(w)
    engines = sum(p.replicas * p.spec.engines_per_replica for p in scenario.pools)
    assert len(w.replicas) == len(w.engine_pools) == engines
    assert sorted(w.by_model) == sorted(scenario.models_served())
    S.build_router(w)
    S.build_fabric(w, trace=False)
    assert w.fabric is not None and w.lifecycle is not None    # the quickstart has a topology
    assert sorted(w.placement) == list(range(engines))         # every engine on its accelerators
    S.build_operations(w)
    S.start_demand(w)
    S.run(w)
    result = S.collect(w, wall_seconds=0.0)
    # every request that arrived ended somewhere, or is still in flight
    assert result.table.n == w.table.n
    assert len(result.replicas) == engines


def test_staged_run_is_the_run(scenario, run):
    """The stages called one by one give what simulate() gives."""
    result, _ = run
    w = S.World(scenario, scenario.spec.seed)
    for stage in (S.draw_demand, S.build_replicas, S.build_router):
        stage(w)
    S.build_fabric(w, trace=False)
    for stage in (S.build_operations, S.start_demand, S.run):
        stage(w)
    again = S.collect(w, wall_seconds=0.0)
    for name in ("state", "finished", "first_token", "replica"):
        assert np.array_equal(getattr(again.table, name), getattr(result.table, name), equal_nan=True)


def test_request_counts_account_for_every_request(run):
    result, summary = run
    counts = R.request_counts(result.table)
    assert counts == summary["requests"]
    assert sum(counts[k] for k, _ in R.ENDS) == counts["arrived"] == result.table.n


def test_window_and_throughput_by_hand(run):
    result, summary = run
    v = R.window_of(result)
    assert (v.w0, v.w1) == (10.0, 40.0) and v.seconds == 30.0
    table = result.table
    inside = (table.state == 1) & (table.finished >= 10.0) & (table.finished <= 40.0)
    assert R.throughputs(v)["requests_per_s"] == pytest.approx(inside.sum() / 30.0)
    assert R.throughputs(v) == summary["throughput"]
    assert int(v.measured.sum()) == summary["measured_requests"]


def test_fleet_sections_add_up(run):
    result, summary = run
    v = R.window_of(result)
    usage = busy_in_window(result, v.w0, v.w1)
    fleet = fleet_figures(v, usage, pool_of_requests(result))
    assert fleet.pools == summary["pools"]
    assert fleet.it_watts == pytest.approx(sum(p["it_watts"] for p in fleet.pools))
    assert fleet.devices_usd == pytest.approx(sum(p["usd_per_hour"] for p in fleet.pools))
    section = power(v, fleet)
    assert section == summary["power"]
    assert section["facility_watts"] == pytest.approx(fleet.it_watts * result.scenario.spec.economics.pue)
    assert R.replica_figures(v, usage) == summary["replicas"]
    assert R.assumptions(result.scenario) == summary["assumptions"]
