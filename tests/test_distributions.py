"""One distribution spec for token lengths, delays and media seconds (sim.demand.distributions)."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from sim.demand import distributions as D

QUANTITIES = {"tokens": D.Length, "delay": D.Delay, "media": D.AudioSeconds}
EVERY_KIND = {
    "fixed": 8,
    "uniform": {"dist": "uniform", "min": 2, "max": 6},
    "lognormal": {"dist": "lognormal", "mean": 50, "cv": 1.0},
    "exponential": {"dist": "exponential", "mean": 20},
    "empirical": {"dist": "empirical", "values": [1, 3, 9], "weights": [1, 1, 2]},
    "mixture": {"dist": "mixture", "weights": [3, 1], "parts": [4, {"dist": "uniform", "min": 10, "max": 20}]},
}


def read(quantity, value):
    return TypeAdapter(QUANTITIES[quantity]).validate_python(value)


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("kind", EVERY_KIND)
def test_every_quantity_takes_every_kind(quantity, kind):
    dist = read(quantity, EVERY_KIND[kind])
    x = D.draw(dist, 4000, np.random.default_rng(1))
    assert dist.dist == kind and len(x) == 4000
    assert x.dtype == (np.int64 if quantity == "tokens" else np.float64)
    # the mean before clipping, against the draws (the lognormal's tail is clipped far out)
    assert x.mean() == pytest.approx(D.mean(dist), rel=0.1)


def test_token_draws_by_hand():
    rng, again = np.random.default_rng(3), np.random.default_rng(3)
    dist = read("tokens", {"dist": "lognormal", "mean": 250, "cv": 0.6, "max": 400})
    mu, sigma = D.lognormal_parameters(250, 0.6)
    assert np.array_equal(D.draw(dist, 1000, rng), np.clip(np.rint(again.lognormal(mu, sigma, 1000)), 1, 400))
    geometric = read("tokens", {"dist": "exponential", "mean": 40})
    assert np.array_equal(D.draw(geometric, 500, rng), np.minimum(again.geometric(1 / 40, 500), 10_000_000))


def test_token_counts_stay_positive_without_a_lower_clip():
    # `min: null` lifts the default clip at 1; a mean far below one token still draws 1s, not 0s
    dist = read("tokens", {"dist": "lognormal", "mean": 2e-10, "cv": 0.8, "min": None})
    assert dist.min is None
    x = D.draw(dist, 1000, np.random.default_rng(7))
    assert x.dtype == np.int64 and (x == 1).all()


def test_delays_are_not_clipped_unless_asked():
    rng, again = np.random.default_rng(5), np.random.default_rng(5)
    dist = read("delay", {"dist": "lognormal", "mean": "0.8s", "cv": 3})
    assert dist.min is None and dist.max is None
    mu, sigma = D.lognormal_parameters(0.8, 3)
    assert np.array_equal(D.draw(dist, 1000, rng), again.lognormal(mu, sigma, 1000))


@pytest.mark.parametrize("quantity, value, ok", [
    ("tokens", 0, False), ("delay", 0, True), ("media", 0, False),
    ("delay", "250ms", True), ("tokens", "250ms", False),
    ("media", {"dist": "uniform", "min": "2min", "max": "1min"}, False),
])
def test_each_quantity_keeps_its_bounds(quantity, value, ok):
    if ok:
        read(quantity, value)
    else:
        with pytest.raises(ValidationError):
            read(quantity, value)


def test_messages_name_values_in_their_unit():
    with pytest.raises(ValidationError, match=r"max \(60s\) is below min \(120s\)"):
        read("media", {"dist": "uniform", "min": "2min", "max": "1min"})
    with pytest.raises(ValidationError, match=r"max \(3\) is below min \(5\)"):
        read("tokens", {"dist": "uniform", "min": 5, "max": 3})
