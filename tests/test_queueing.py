"""Queueing-theory oracles: with one sequence per batch a replica is a single server.

Service times come from the simulator itself (each request's admitted -> finished), so the
comparison checks the queueing dynamics: Pollaczek-Khinchine for M/G/1 (deterministic and
near-exponential service), independent queues behind a random router, and Erlang C for a
central queue in front of c servers. Tolerances come from the spread across seeds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.core.metrics import COMPLETED
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.tools import oracles

SEEDS = range(6)


def single_server(write_scenario, *, replicas, output, rate, policy="random", dispatch="immediate", prompt=64):
    return write_scenario({
        "duration": "1500s", "warmup": "100s",
        "fleet.0.count": replicas,
        "fleet.0.serve.engine": {"max_batch_seqs": 1, "chunked_prefill": None},
        "router": {"policy": policy, "dispatch": dispatch},
        "workload.0.rate": rate,
        "workload.0.prompt_tokens": prompt,
        "workload.0.output_tokens": output,
    })


def waits_and_service(path, seed):
    res = simulate(load_scenario(path), seed=seed)
    t, spec = res.table, res.scenario.spec
    assert np.all(t.state == COMPLETED)
    measured = (t.arrival >= spec.warmup) & (t.arrival < spec.duration)
    wait = (t.admitted - t.arrival)[measured]
    service = (t.finished - t.admitted)
    return wait.mean(), service, float(measured.sum()) / (spec.duration - spec.warmup)


def check(means, theory):
    means = np.asarray(means)
    se = means.std(ddof=1) / math.sqrt(len(means))
    print(f"simulated {means.mean():.5f} +- {se:.5f}  theory {theory:.5f}")
    assert abs(means.mean() - theory) < 3 * se + 0.03 * theory, (means.mean(), theory, se)


def service_time(write_scenario, output):
    path = single_server(write_scenario, replicas=1, output=output, rate="0.01/s")
    _, s, _ = waits_and_service(path, 0)
    return s


def test_md1_pollaczek_khinchine(write_scenario):
    s = service_time(write_scenario, 20)
    assert np.ptp(s) < 1e-12  # fixed lengths: deterministic service
    S = float(s[0])
    rho = 0.7
    lam = rho / S
    path = single_server(write_scenario, replicas=1, output=20, rate=lam)
    means = [waits_and_service(path, seed)[0] for seed in SEEDS]
    check(means, rho * S / (2 * (1 - rho)))


def test_mg1_near_exponential_service(write_scenario):
    out = {"dist": "exponential", "mean": 30}
    probe = single_server(write_scenario, replicas=1, output=out, rate="1/s")
    _, s, _ = waits_and_service(probe, 0)
    lam = float(0.7 / s.mean())
    path = single_server(write_scenario, replicas=1, output=out, rate=lam)
    means, theory = [], []
    for seed in SEEDS:
        w, s, _ = waits_and_service(path, seed)
        means.append(w)
        theory.append(oracles.pollaczek_khinchine_wait(lam, s))
    check(means, float(np.mean(theory)))


def test_random_router_gives_independent_queues(write_scenario):
    S = float(service_time(write_scenario, 20)[0])
    c, rho = 3, 0.6
    path = single_server(write_scenario, replicas=c, output=20, rate=c * rho / S, policy="random")
    means = [waits_and_service(path, seed)[0] for seed in SEEDS]
    check(means, rho * S / (2 * (1 - rho)))


def test_central_queue_matches_erlang_c(write_scenario):
    out = {"dist": "exponential", "mean": 60}
    c, rho = 4, 0.75
    probe = single_server(write_scenario, replicas=1, output=out, rate="1/s", prompt=1)
    _, s, _ = waits_and_service(probe, 0)
    lam = float(c * rho / s.mean())
    path = single_server(write_scenario, replicas=c, output=out, rate=lam, policy="round-robin",
                         dispatch="central", prompt=1)
    means, theory = [], []
    for seed in SEEDS:
        w, s, _ = waits_and_service(path, seed)
        means.append(w)
        # Erlang C, with the Allen-Cunneen factor for service cv^2 (0.98 here; exact at 1)
        theory.append(oracles.mgc_wait(lam, c, s))
    check(means, float(np.mean(theory)))


def test_least_outstanding_beats_random(write_scenario):
    S = float(service_time(write_scenario, 20)[0])
    c, rho = 3, 0.7
    waits = {}
    for policy in ("random", "least-outstanding", "power-of-two"):
        path = single_server(write_scenario, replicas=c, output=20, rate=c * rho / S, policy=policy)
        waits[policy] = np.mean([waits_and_service(path, seed)[0] for seed in range(3)])
    assert waits["least-outstanding"] < waits["power-of-two"] < waits["random"]


def test_erlang_c_by_hand():
    # M/M/1: probability of waiting is rho; M/M/2 at a=1: C = (1/2)/(1 + 1 + 1/2)... = 1/3
    assert oracles.erlang_c(1, 0.6) == pytest.approx(0.6)
    assert oracles.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert oracles.pollaczek_khinchine_wait(0.5, np.ones(10)) == pytest.approx(0.5)  # M/D/1 at rho 0.5
