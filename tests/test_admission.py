"""Admission: per-tenant token buckets against hand counts, shedding by class under
overload, every request accounted for, and errors that name the field."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from sim.core.metrics import COMPLETED, FAILED, IN_FLIGHT, REASON_CODES, REJECTED, SHED
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import BASE

STREAM = {"prompt_tokens": 100, "output_tokens": 20, "arrival": "constant"}


def accounted(res) -> None:
    """arrived = completed + rejected + shed + failed + in flight, exactly."""
    s = summarize(res)["requests"]
    assert s["arrived"] == s["completed"] + s["rejected"] + s["shed"] + s["failed"] + s["in_flight"]
    states = res.table.state
    assert np.isin(states, [COMPLETED, REJECTED, SHED, FAILED, IN_FLIGHT]).all()


def test_a_request_bucket_admits_its_burst_then_its_rate(write_scenario):
    # 10/s evenly spaced against 4/s with a burst of 3: the bucket starts full, so the first
    # 3 pass; afterwards one passes each time 1/4 s of refill has built up a whole token
    base = copy.deepcopy(BASE)
    base["workload"] = [{"name": "free", "rate": "10/s", **STREAM}]
    path = write_scenario({"duration": "20s", "admission": {"rate_limits": [
        {"tenant": "free", "requests_per_s": 4, "burst": 3}]}}, base=base)
    res = simulate(load_scenario(path))
    accounted(res)
    t = res.table
    admitted = t.reason != REASON_CODES["rate_limited"]
    arrivals = np.sort(t.arrival)
    # hand count: replay the bucket over the arrival instants
    level, last, expect = 3.0, 0.0, 0
    for a in arrivals:
        level = min(3.0, level + (a - last) * 4.0)
        last = a
        if level >= 1.0:
            level -= 1.0
            expect += 1
    assert admitted.sum() == expect
    assert abs(expect - (3 + 4 * 20)) <= 2          # burst + rate x duration
    assert (t.state[~admitted] == REJECTED).all()
    assert summarize(res)["requests"]["rejected_by_reason"] == {"rate_limited": int((~admitted).sum())}


def test_a_token_bucket_limits_prompt_plus_output_tokens(write_scenario):
    # each request is 120 tokens; 600 tokens/s admits 5 requests/s of the 10/s offered
    base = copy.deepcopy(BASE)
    base["workload"] = [{"name": "w", "rate": "10/s", "tenant": "acme", **STREAM}]
    path = write_scenario({"duration": "40s", "admission": {"rate_limits": [
        {"tenant": "acme", "tokens_per_s": 600, "token_burst": 1200}]}}, base=base)
    res = simulate(load_scenario(path))
    accounted(res)
    admitted = int((res.table.reason != REASON_CODES["rate_limited"]).sum())
    assert abs(admitted - (10 + 5 * 40)) <= 2       # 1,200-token burst + 600/s x 40 s, in requests


def test_limits_are_per_tenant(write_scenario):
    base = copy.deepcopy(BASE)
    base["workload"] = [{"name": "a", "rate": "10/s", **STREAM}, {"name": "b", "rate": "10/s", **STREAM}]
    path = write_scenario({"duration": "10s", "admission": {"rate_limits": [
        {"tenant": "a", "requests_per_s": 2}]}}, base=base)
    res = simulate(load_scenario(path))
    t = res.table
    limited = t.reason == REASON_CODES["rate_limited"]
    assert limited[t.stream == 0].sum() > 50 and limited[t.stream == 1].sum() == 0
    tenants = {x["tenant"]: x for x in summarize(res)["tenants"]}
    assert tenants["a"]["rejected"] > 50 and tenants["b"]["rejected"] == 0


def overloaded(write_scenario, shed):
    """One replica offered more than it can serve (it serves about 10/s), mostly by the lower class."""
    base = copy.deepcopy(BASE)
    stream = {"prompt_tokens": 500, "output_tokens": 200}
    base["workload"] = [{"name": "batch", "rate": "12/s", "priority": 0, **stream},
                        {"name": "interactive", "rate": "6/s", "priority": 1, **stream}]
    return write_scenario({"duration": "20s", "fleet.0.count": 1, "drain": "0s",
                           "fleet.0.serve.engine": {"max_batch_seqs": 16, "chunked_prefill": 512,
                                                    "timing": "analytical", "iteration_overhead": "1ms",
                                                    "host_per_seq": 0},
                           **({"admission": {"shed": shed}} if shed else {})}, base=base)


def test_shedding_turns_away_the_lower_class_first(write_scenario):
    res = simulate(load_scenario(overloaded(write_scenario, {"waiting_per_replica": {0: 8, 1: 200}})))
    accounted(res)
    t = res.table
    shed = t.state == SHED
    assert (t.reason[shed] == REASON_CODES["overload"]).all()
    low, high = shed[t.stream == 0].sum(), shed[t.stream == 1].sum()
    assert low > 100 and high == 0, (low, high)
    # the queue the low class sees is held near its threshold, not left to grow
    plain = simulate(load_scenario(overloaded(write_scenario, None)))
    accounted(plain)
    summary, before = summarize(res), summarize(plain)
    assert summary["requests"]["shed_by_reason"] == {"overload": int(shed.sum())}
    assert before["requests"]["shed"] == 0
    by = {x["tenant"]: x for x in summary["tenants"]}
    assert by["interactive"]["latency_s"]["ttft"]["p99"] < before["latency_s"]["ttft"]["p99"]


@pytest.mark.parametrize("admission, field, words", [
    ({"rate_limits": [{"tenant": "fre", "requests_per_s": 1}]}, "admission.rate_limits[0].tenant",
     "did you mean 'free'"),
    ({"rate_limits": [{"tenant": "free"}]}, "admission.rate_limits[0]", "needs requests_per_s, tokens_per_s"),
    ({"rate_limits": [{"tenant": "free", "tokens_per_s": 5, "burst": 2}]}, "admission.rate_limits[0]",
     "burst sizes the requests bucket"),
    ({"shed": {"waiting_per_replica": {3: 4}}}, "admission.shed.waiting_per_replica[3]", "classes are 0, 1"),
    ({"shed": {"waiting_per_replica": {0: 40, 1: 4}}}, "admission.shed", "give higher classes higher thresholds"),
])
def test_bad_admission_names_the_field(write_scenario, admission, field, words):
    base = copy.deepcopy(BASE)
    base["workload"] = [{"name": "free", "rate": "1/s", "priority": 0, **STREAM},
                        {"name": "paid", "rate": "1/s", "priority": 1, **STREAM}]
    with pytest.raises(ScenarioError) as err:
        load_scenario(write_scenario({"admission": admission}, base=base))
    text = str(err.value)
    assert field in text and words in text, text
    assert ".yaml:" in text
