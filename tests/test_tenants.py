"""Tenants and service classes: priority queueing against queueing theory, preemption of
lower classes, the compiled plans against stepping, and the per-tenant summary."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from sim.core.metrics import COMPLETED
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import BASE

SEEDS = range(6)


def two_classes(write_scenario, rate_high, rate_low, *, preempt=False, dispatch="immediate", output=20):
    """One replica, one sequence per batch: a single server with two classes of fixed-size
    requests (class 1 high, class 0 low)."""
    base = copy.deepcopy(BASE)
    stream = {"prompt_tokens": 64, "output_tokens": output}
    base["workload"] = [{"name": "high", "rate": rate_high, "priority": 1, **stream}]
    if rate_low:
        base["workload"].append({"name": "low", "rate": rate_low, "priority": 0, **stream})
    return write_scenario({
        "duration": "1500s", "warmup": "100s",
        "fleet.0.count": 1,
        "fleet.0.serve.engine": {"max_batch_seqs": 1, "chunked_prefill": None, "preempt_lower": preempt},
        "router": {"policy": "random", "dispatch": dispatch},
    }, base=base)


def class_waits(path, seed):
    """Mean queue wait (arrival to first admission) per stream, over the measured requests."""
    res = simulate(load_scenario(path), seed=seed)
    t, spec = res.table, res.scenario.spec
    assert np.all(t.state == COMPLETED)
    measured = (t.arrival >= spec.warmup) & (t.arrival < spec.duration)
    wait = t.admitted - t.arrival
    return [float(wait[measured & (t.stream == s)].mean()) for s in range(len(spec.workload))]


def service_time(write_scenario) -> float:
    res = simulate(load_scenario(two_classes(write_scenario, "0.01/s", None)), seed=0)
    s = res.table.finished - res.table.admitted
    assert np.ptp(s) < 1e-12
    return float(s[0])


def check(means, theory, slack=0.0):
    means = np.asarray(means)
    se = means.std(ddof=1) / math.sqrt(len(means))
    print(f"simulated {means.mean():.5f} +- {se:.5f}  theory {theory:.5f}")
    assert abs(means.mean() - theory) < 3 * se + 0.03 * theory + slack, (means.mean(), theory, se)


@pytest.mark.parametrize("dispatch", ["immediate", "central"])
def test_nonpreemptive_priority_matches_cobham(write_scenario, dispatch):
    """M/D/1 with two classes served highest first (at the replica's queue, or the router's):
    Cobham's waits W_k = W0 / ((1 - s_{k-1})(1 - s_k)), W0 = sum(lambda_i S^2) / 2, where
    s_k is the load of classes k and above."""
    S = service_time(write_scenario)
    lam_h, lam_l = 0.3 / S, 0.4 / S
    path = two_classes(write_scenario, lam_h, lam_l, dispatch=dispatch)
    waits = np.array([class_waits(path, seed) for seed in SEEDS])
    w0 = (lam_h + lam_l) * S * S / 2
    rho_h, rho = lam_h * S, (lam_h + lam_l) * S
    check(waits[:, 0], w0 / (1 - rho_h))
    check(waits[:, 1], w0 / ((1 - rho_h) * (1 - rho)))


def test_preempting_lower_classes_leaves_the_high_class_as_if_alone(write_scenario):
    """With preempt_lower, a high-class request waits only for high-class work, plus at most
    the end of the iteration running when it arrives: its waits match M/D/1 with its own
    traffic alone, and the simulation without the low class, within one iteration."""
    S = service_time(write_scenario)
    lam_h, lam_l = 0.3 / S, 0.4 / S
    rho_h = lam_h * S
    iteration = S / 20                      # about one decode step (20 output tokens)
    mixed = [class_waits(two_classes(write_scenario, lam_h, lam_l, preempt=True), seed)[0] for seed in SEEDS]
    alone = [class_waits(two_classes(write_scenario, lam_h, None), seed)[0] for seed in SEEDS]
    check(alone, rho_h * S / (2 * (1 - rho_h)))
    check(mixed, float(np.mean(alone)), slack=iteration)
    assert np.mean(mixed) < 0.5 * class_waits(two_classes(write_scenario, lam_h, lam_l), 0)[0] + iteration


def loaded_classes(write_scenario, fast_path: bool, preempt: bool):
    """Three classes on two batching replicas short of KV space, so that preemption by
    class, lower-class preemption and class-ordered admission all happen."""
    base = copy.deepcopy(BASE)
    w = base["workload"][0]
    base["workload"] = [{**w, "name": f"c{k}", "rate": "9/s", "priority": k} for k in range(3)]
    return write_scenario({
        "duration": "25s",
        "fleet.0.serve.engine": {"max_batch_seqs": 24, "chunked_prefill": 256, "memory_utilization": 0.22,
                                 "fast_path": fast_path, "preempt_lower": preempt},
    }, base=base)


@pytest.mark.parametrize("preempt", [False, True])
def test_class_plans_equal_stepping(write_scenario, preempt):
    """The compiled plans with classes (queue insertion behind started iterations,
    interruptions, class-ordered preemption) give what stepping one iteration at a time gives."""
    fast = simulate(load_scenario(loaded_classes(write_scenario, True, preempt)))
    step = simulate(load_scenario(loaded_classes(write_scenario, False, preempt)))
    assert fast.table.preemptions.sum() > 0
    for col in ("replica", "admitted", "first_token", "finished", "state", "preemptions"):
        a, b = getattr(fast.table, col), getattr(step.table, col)
        assert np.allclose(a, b, equal_nan=True, rtol=0, atol=1e-9), col
    by_class = [fast.table.preemptions[fast.table.priority == k].sum() for k in range(3)]
    assert by_class[2] <= by_class[0]    # the highest class is preempted least


def test_tenant_summary_partitions_the_run(write_scenario):
    base = copy.deepcopy(BASE)
    w = base["workload"][0]
    base["workload"] = [
        {**w, "name": "api-gold", "tenant": "gold", "rate": "4/s", "priority": 1, "slo": {"ttft_p99": "5s"}},
        {**w, "name": "api-gold-batch", "tenant": "gold", "rate": "2/s", "priority": 0},
        {**w, "name": "free", "rate": "6/s", "slo": {"ttft_p99": "1ms"}},
    ]
    res = simulate(load_scenario(write_scenario({}, base=base)))
    s = summarize(res)
    tenants = {t["tenant"]: t for t in s["tenants"]}
    assert set(tenants) == {"gold", "free"}
    assert tenants["gold"]["streams"] == ["api-gold", "api-gold-batch"] and tenants["gold"]["priority"] == [0, 1]
    assert sum(t["completed"] for t in tenants.values()) == int(
        ((res.table.state == COMPLETED) & (res.table.arrival >= 2) & (res.table.arrival < 30)).sum())
    assert sum(t["measured_requests"] for t in tenants.values()) == s["measured_requests"]
    # each tenant is held to its own targets
    assert tenants["gold"]["slo"]["targets"] == {"ttft_p99": 5.0} and tenants["gold"]["slo"]["met"]
    assert tenants["free"]["slo"]["targets"] == {"ttft_p99": 0.001} and not tenants["free"]["slo"]["met"]
    # the tenants' costs add up to the fleet's hour
    assert sum(t["usd_per_hour"] for t in tenants.values()) == pytest.approx(s["cost"]["usd_per_hour"], rel=1e-9)


def test_a_tenants_streams_must_agree_on_its_slo(write_scenario):
    base = copy.deepcopy(BASE)
    w = base["workload"][0]
    base["workload"] = [{**w, "name": "a", "tenant": "t", "slo": {"ttft_p99": "1s"}},
                        {**w, "name": "b", "tenant": "t", "slo": {"ttft_p99": "2s"}}]
    with pytest.raises(ScenarioError, match=r"workload\[1\]\.slo.*tenant 't' already has other SLO targets"):
        load_scenario(write_scenario({}, base=base))


def test_static_batching_cannot_honour_classes(write_scenario):
    base = copy.deepcopy(BASE)
    w = base["workload"][0]
    base["workload"] = [{**w, "name": "a", "priority": 1}, {**w, "name": "b"}]
    with pytest.raises(ScenarioError, match="static batching .* cannot honour priority"):
        load_scenario(write_scenario({"fleet.0.serve.engine.batching": "static",
                                      "fleet.0.serve.engine.chunked_prefill": None}, base=base))


def test_a_higher_class_does_not_wait_for_a_lower_class_prompt_in_chunks(write_scenario):
    """A 60k-token low-class prompt prefills in 512-token chunks for seconds; a short
    high-class request arriving meanwhile takes the prefill budget at the next iteration,
    where the same request in the same class waits for the long prompt's last chunk."""
    def run(high_class: int):
        base = copy.deepcopy(BASE)
        fixed = {"arrival": "constant", "requests": 1, "output_tokens": 4}
        base["workload"] = [{"name": "long", "rate": "4/s", "priority": 0, "prompt_tokens": 60000, **fixed},
                            {"name": "short", "rate": "1/s", "priority": high_class, "prompt_tokens": 100, **fixed}]
        path = write_scenario({"fleet.0.count": 1,
                               "fleet.0.serve.engine": {"max_batch_seqs": 8, "chunked_prefill": 512}}, base=base)
        t = simulate(load_scenario(path)).table
        assert t.stream.tolist() == [0, 1] and t.arrival[0] < t.arrival[1] < t.first_token[0]
        return t
    ranked, same = run(1), run(0)
    assert same.first_token[1] >= same.first_token[0]    # FIFO within a class: not before its last chunk
    ttft = ranked.first_token[1] - ranked.arrival[1]
    assert ttft < 0.05 < same.first_token[1] - same.arrival[1]
    assert ranked.first_token[1] < ranked.first_token[0]
    assert (ranked.state == COMPLETED).all()
