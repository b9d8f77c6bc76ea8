"""Intervals from held-out errors: the arithmetic, the fallbacks, the coverage they claim, and
the figures of a run and a plan that carry them."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from sim.catalog import accuracy
from sim.catalog.accuracy import Entry, Interval
from sim.cli.sizing import within_error
from sim.results import intervals
from sim.tools import fidelity
from sim.tools.plan_records import Trial
from tests.conftest import ROOT


def entries(values, level="serving", source="measured", vendor="nvidia", parallel=True, prefix="c"):
    return [Entry(f"{prefix}{i}", level, source, vendor, parallel, float(v)) for i, v in enumerate(values)]


def test_the_conformal_interval_by_hand():
    # 19 cases: median 0, residuals 0.01..0.09 twice and 0; ceil(20 x 0.9) = 18th smallest = 0.09
    values = [0.0] + [s * k / 100 for k in range(1, 10) for s in (1, -1)]
    iv = accuracy.interval(entries(values), "serving", "measured", "nvidia", True)
    assert iv.center == 0.0 and iv.half_width == pytest.approx(0.09) and iv.cases == 19 and not iv.widened
    # a time's interval is e^(c +- h) around it; a rate's is the mirror
    lo, hi = iv.time(1.0)
    assert (lo, hi) == pytest.approx((math.exp(-0.09), math.exp(0.09)))
    shifted = Interval(0.1, 0.05, 9, "x")
    assert shifted.time(2.0) == pytest.approx((2 * math.exp(0.05), 2 * math.exp(0.15)))
    assert shifted.rate(2.0) == pytest.approx((2 * math.exp(-0.15), 2 * math.exp(-0.05)))


def test_optimism_sign_is_shared_by_times_and_rates():
    # predicting a step 20 % too short and a throughput 25 % too high are the same optimism
    assert accuracy.optimism(0.8, 1.0, is_time=True) == pytest.approx(accuracy.optimism(1.25, 1.0, is_time=False))
    assert accuracy.optimism(0.8, 1.0, is_time=True) > 0


def test_a_small_class_takes_its_parent_and_is_widened_to_cover_its_cases():
    broad = entries(np.linspace(-0.1, 0.1, 12), vendor="nvidia", prefix="n")
    few = entries([0.5, 0.6], vendor="amd", prefix="a")
    iv = accuracy.interval(broad + few, "serving", "measured", "amd", True)
    assert iv.cases == 14 and "widened to cover the 2" in iv.widened
    assert abs(0.6 - iv.center) <= iv.half_width + 1e-12
    # no case at all for the class: the parent's interval, half again wider
    parent = accuracy.interval(broad + few, "serving", "measured", None, None)
    none = accuracy.interval(broad + few, "serving", "measured", "groq", False)
    assert none.half_width == pytest.approx(parent.half_width * accuracy.NO_CASE_WIDENING)
    assert "widened by half" in none.widened


def test_too_few_cases_in_all_is_an_error():
    with pytest.raises(ValueError):
        accuracy.interval(entries([0.1] * 3), "serving", "measured", "nvidia", True)


SHIPPED = accuracy.load()


def test_the_shipped_intervals_cover_85_to_95_percent_of_held_out_cases():
    """Each held-out case's interval computed without it holds it (the claim of a 90 % interval);
    outside 75-98 % the intervals are wrong and this fails."""
    cover = accuracy.coverage(SHIPPED)
    assert set(cover) == {"kernel", "step", "serving"}
    for level, c in cover.items():
        assert 0.75 <= c["coverage"] <= 0.98, (level, c)


def test_the_recorded_errors_are_the_shipped_held_out_cases():
    """`make validate` rewrites accuracy.json; a case added or removed without it fails here."""
    cases = fidelity.load_cases(os.path.join(ROOT, "validation", "cases"))
    held_out = {c.id for c, _, _ in cases if c.role == "held-out" and c.level in ("kernel", "step", "serving")}
    assert {e.id for e in SHIPPED} == held_out


def test_a_run_prints_and_records_intervals(tmp_path, capsys):
    import json

    from sim.cli import main
    out = tmp_path / "run"
    assert main(["run", os.path.join(ROOT, "scenarios", "quickstart.yaml"), "--out", str(out),
                 "--set", "duration=60s", "--set", "warmup=10s"]) == 0
    text = capsys.readouterr().out
    assert "interval: 90% interval from" in text and "held-out serving cases" in text
    s = json.loads((out / "summary.json").read_text())
    iv = s["intervals"]
    assert iv["throughput_set_by"] == "the offered load"
    ttft = s["latency_s"]["ttft"]["p99"]
    lo, hi = iv["figures"]["latency_s.ttft.p99"]
    model = iv["model"]
    # the model's part alone is e^(c +- h); the run's own spread only widens it
    assert lo <= ttft * math.exp(model["median_optimism"] - model["half_width"]) + 1e-12
    assert hi >= ttft * math.exp(model["median_optimism"] + model["half_width"]) - 1e-12
    # set by the offered load: the throughput's interval is the run's spread around it
    tlo, thi = iv["figures"]["throughput.requests_per_s"]
    assert tlo <= s["throughput"]["requests_per_s"] <= thi
    assert f"{iv['figures']['latency_s.ttft.p99'][0] * 1000:.1f}ms" in text


def test_the_run_spread_is_batch_means_of_ten_stretches():
    # ten stretches with values e^(+-0.1): sd 0.1054 (ddof 1), t 1.833 / sqrt(10)
    values = [math.exp(0.1 * (-1) ** k) for k in range(10)]
    sd = float(np.std(np.log(values), ddof=1))
    assert intervals._spread(values) == pytest.approx(1.833 * sd / math.sqrt(10))
    assert intervals._spread(values[:9]) is None


def trial(device, usd, replicas, optimism=0.0, half=0.2):
    return Trial(device, "fp8", 1, 1, replicas, 1.0, True, "", 1.0, 0.05, usd, 0.1, 0.0, 0, "rent",
                 optimism, half)


def test_a_plan_answer_comes_with_the_fleet_a_real_system_needs():
    t = trial("a", 100.0, 40, optimism=0.05, half=0.1)
    lo, hi = t.replica_range()
    assert (lo, hi) == (math.ceil(40 * math.exp(-0.05)), math.ceil(40 * math.exp(0.15)))
    assert t.usd_range() == pytest.approx((100.0 * lo / 40, 100.0 * hi / 40))


def test_the_most_load_comes_with_the_load_a_real_fleet_sustains():
    t = trial("a", 1.0, 4, optimism=0.1, half=0.2)
    t.rate = 50.0
    assert t.rate_range() == pytest.approx((50 * math.exp(-0.3), 50 * math.exp(0.1)))


def test_a_cheapest_inside_the_error_is_flagged():
    cheap, close, far = trial("a", 100.0, 10), trial("b", 110.0, 11), trial("c", 300.0, 30)
    assert within_error(cheap, [cheap, close, far]) == [close]
