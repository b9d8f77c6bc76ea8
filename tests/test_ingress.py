"""Requests entering over the fabric: payload before the replica sees it, replies after."""
from __future__ import annotations

import os

import pytest

from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import ROOT
from tests.test_simulation import assert_invariants, assert_same_records

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")


def with_ingress(write_scenario, extra=None, **ingress):
    return write_scenario({"topology": RAIL, "fleet.0.count": 8, "duration": "15s",
                           "ingress": {"node": "storage0", **ingress}, **(extra or {})})


def test_every_request_and_reply_crosses_the_fabric(write_scenario):
    res = simulate(load_scenario(with_ingress(write_scenario)))
    t = res.table
    done = t.state == 1
    assert done.all()
    assert res.fabric.flows_done == 2 * t.n
    assert res.fabric.bytes_delivered == pytest.approx(4.0 * float((t.prompt + t.output).sum()))
    assert_invariants(res)


def test_payload_delays_admission(write_scenario):
    # a huge per-token payload makes the ingress transfer visible in the queue wait
    slow = simulate(load_scenario(with_ingress(write_scenario, bytes_per_token=2e6, extra={"workload.0.rate": "2/s"})))
    t = slow.table
    transfer = t.prompt * 2e6 / 50e9  # over the storage node's 400 Gb/s link
    assert (t.admitted - t.arrival >= transfer * 0.99).all()


def test_fast_path_equals_stepping_with_ingress(write_scenario):
    path = with_ingress(write_scenario)
    assert_same_records(simulate(load_scenario(path, ["fleet.serve.engine.fast_path=true"])),
                        simulate(load_scenario(path, ["fleet.serve.engine.fast_path=false"])))


def test_ingress_errors(write_scenario):
    with pytest.raises(ScenarioError, match="no node 'storag0'"):
        load_scenario(with_ingress(write_scenario, node="storag0"))
    with pytest.raises(ScenarioError, match="ingress needs topology"):
        load_scenario(write_scenario({"ingress": {"node": "x"}}))
