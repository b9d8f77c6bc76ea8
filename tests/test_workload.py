"""Arrival processes, length distributions and trace replay."""
from __future__ import annotations

import os

import numpy as np
import pytest

from sim.demand.distributions import draw as draw_lengths
from sim.demand.streams import Stream
from sim.demand.workload import arrival_times, generate, read_trace, rng_for, trace_arrivals
from tests.conftest import ROOT, SHARED_TRACES

SAMPLE = os.path.join(ROOT, "workloads", "traces", "sample-conv.csv")


def stream(**kw):
    base = {"name": "s", "rate": "50/s", "prompt_tokens": 100, "output_tokens": 10}
    base.update(kw)
    return Stream.model_validate(base)


def gaps(s, duration=4000.0):
    return np.diff(arrival_times(s, duration, rng_for(1, "x")))


def test_poisson_rate_and_cv():
    g = gaps(stream())
    assert 1 / g.mean() == pytest.approx(50, rel=0.02)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.03)


def test_gamma_is_bursty():
    g = gaps(stream(arrival={"process": "gamma", "cv": 3.0}))
    assert 1 / g.mean() == pytest.approx(50, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(3.0, rel=0.05)


def test_constant_arrivals():
    g = gaps(stream(arrival="constant"), duration=10.0)
    assert np.allclose(g, 0.02)


def test_lengths():
    rng = rng_for(0, "len")
    s = stream(prompt_tokens={"dist": "lognormal", "mean": 1000, "cv": 1.0, "max": 10**9})
    x = draw_lengths(s.prompt_tokens, 200_000, rng)
    assert x.mean() == pytest.approx(1000, rel=0.02) and x.std() / x.mean() == pytest.approx(1.0, rel=0.05)
    u = draw_lengths(stream(prompt_tokens={"dist": "uniform", "min": 5, "max": 9}).prompt_tokens, 10_000, rng)
    assert u.min() == 5 and u.max() == 9
    e = draw_lengths(stream(output_tokens={"dist": "exponential", "mean": 40}).output_tokens, 200_000, rng)
    assert e.min() >= 1 and e.mean() == pytest.approx(40, rel=0.02)
    emp = stream(prompt_tokens={"dist": "empirical", "values": [10, 20], "weights": [3, 1]}).prompt_tokens
    v = draw_lengths(emp, 40_000, rng)
    assert set(np.unique(v)) == {10, 20} and (v == 10).mean() == pytest.approx(0.75, abs=0.01)
    col = stream(prompt_tokens={"dist": "empirical", "path": SAMPLE, "column": "ContextTokens"}).prompt_tokens
    assert draw_lengths(col, 1000, rng).min() >= 1


def test_sample_trace_replay_and_time_scaling():
    frame = read_trace(SAMPLE)
    assert len(frame) == 1200 and frame["t"].iloc[0] == 0.0
    t1, p1, o1 = trace_arrivals(stream(rate=None, trace={"path": SAMPLE}, prompt_tokens=None, output_tokens=None), 1e9)
    t2, _, _ = trace_arrivals(stream(rate=None, trace={"path": SAMPLE, "time_scale": 0.5},
                                     prompt_tokens=None, output_tokens=None), 1e9)
    assert np.allclose(t2, t1 / 2)
    assert np.array_equal(p1, frame["ContextTokens"].to_numpy())
    t3, _, _ = trace_arrivals(stream(rate="20/s", trace={"path": SAMPLE}, prompt_tokens=None, output_tokens=None), 1e9)
    assert (len(t3) - 1) / t3[-1] == pytest.approx(20.0)


def test_merged_streams_are_time_ordered():
    a = generate([stream(name="a"), stream(name="b", rate="5/s")], 60.0, 3)
    assert np.all(np.diff(a.time) >= 0)
    assert set(np.unique(a.stream)) == {0, 1}


@pytest.mark.skipif(not os.path.isdir(SHARED_TRACES), reason="shared Azure traces not present")
@pytest.mark.parametrize("name, mean_in, mean_out", [("conv.csv", 1155, 211), ("code.csv", 2048, 28)])
def test_azure_trace_replays(name, mean_in, mean_out):
    path = os.path.join(SHARED_TRACES, name)
    t, p, o = trace_arrivals(stream(rate=None, trace={"path": path}, prompt_tokens=None, output_tokens=None), 1e9)
    assert len(t) > 8000 and np.all(np.diff(t) >= 0)
    assert p.mean() == pytest.approx(mean_in, rel=0.01) and o.mean() == pytest.approx(mean_out, rel=0.02)
