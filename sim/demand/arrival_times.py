"""Arrival instants drawn from an `arrival:` spec (sim.demand.arrivals): the renewal and MMPP
base processes, and the operational clock through which a diurnal profile and spikes
modulate them.
"""
from __future__ import annotations

import numpy as np

from .arrivals import Arrival
from .mmpp import mmpp_parameters

# ---- generation --------------------------------------------------------------------------


def sample_times(arrival: Arrival, rate: float, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival instants in [0, duration) of a stream with mean rate `rate`."""
    if duration <= 0:
        return np.empty(0)
    if not arrival.modulated:
        return _base_times(arrival, rate, duration, rng)
    clock = OperationalClock(arrival, duration)
    t = np.maximum.accumulate(clock.inverse(_base_times(arrival, rate, clock.total, rng)))  # 1e-12 roundoff
    return t[t < duration]


def _base_times(arrival: Arrival, rate: float, horizon: float, rng: np.random.Generator) -> np.ndarray:
    if horizon <= 0:
        return np.empty(0)
    if arrival.process == "mmpp":
        return _mmpp_times(arrival, rate, horizon, rng)
    return _renewal_times(arrival, rate, horizon, rng)


def _renewal_times(arrival: Arrival, rate: float, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """A renewal process observed from t = 0, drawn in chunks sized to end past the horizon at once.

    Gamma gaps start in equilibrium, as if the process had been running before t = 0: the
    first arrival comes a uniform fraction into a length-biased gap, Gamma(shape + 1). Started
    with an arrival at 0 instead, a bursty process (cv > 1) front-loads (cv^2 - 1) / 2 extra
    arrivals on average: 4 at cv 3, half a million at cv 1,000. Poisson is memoryless, so its
    first gap is already in equilibrium; constant gaps keep their first arrival one gap in."""
    mean_gap = 1.0 / rate
    expected = rate * horizon
    chunk = int(expected + 6 * np.sqrt(expected) + 16)
    times: list[np.ndarray] = []
    t = 0.0
    shape = 1.0 / arrival.cv ** 2 if arrival.process == "gamma" else 0.0
    while t < horizon:
        if arrival.process == "poisson":
            gaps = rng.exponential(mean_gap, chunk)
        elif arrival.process == "gamma":
            gaps = rng.gamma(shape, mean_gap / shape, chunk)
            if not times:
                gaps[0] = rng.random() * rng.gamma(shape + 1.0, mean_gap / shape)
        else:
            gaps = np.full(chunk, mean_gap)
        ts = t + np.cumsum(gaps)
        times.append(ts)
        t = ts[-1]
    out = np.concatenate(times)
    return out[out < horizon]


def _mmpp_times(arrival: Arrival, rate: float, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """Exact MMPP: draw the state path (exponential sojourns, jumps by the jump matrix),
    then a Poisson count per sojourn, placed uniformly within it."""
    lam, hold, jump, pi = mmpp_parameters(arrival, rate)
    expected = horizon * float(pi @ (1 / hold))  # sojourns begun per second
    chunk = min(int(expected + 6 * np.sqrt(expected) + 16), 1 << 20)
    state, t, parts = int(rng.choice(len(pi), p=pi)), 0.0, []
    while t < horizon:
        path = _state_path(jump, state, chunk, rng)
        states, state = path[:-1], int(path[-1])
        stay = rng.exponential(hold[states])
        begin = t + np.cumsum(stay) - stay
        counts = rng.poisson(lam[states] * stay)
        parts.append(np.sort(np.repeat(begin, counts) + np.repeat(stay, counts) * rng.random(counts.sum())))
        t = begin[-1] + stay[-1]
    out = np.concatenate(parts)
    return out[out < horizon]


def _state_path(jump: np.ndarray, first: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """first, then `steps` jumps of the chain. Each step's jump is drawn for every possible
    current state at once (one uniform per step), and the steps are composed by a prefix
    scan of maps (log2(steps) vectorized passes) instead of a Python loop."""
    u = rng.random(steps)
    cum = np.cumsum(jump, axis=1)
    nxt = np.minimum((u[:, None, None] >= cum[None, :, :]).sum(-1), len(jump) - 1)  # (steps, n)
    shift = 1
    while shift < steps:  # nxt[k] becomes the composition of steps 0..k
        nxt[shift:] = np.take_along_axis(nxt[shift:], nxt[:-shift], axis=1)
        shift *= 2
    return np.concatenate([[first], nxt[:, first]])


class OperationalClock:
    """M(t) = integral of m over [0, t] on [0, horizon], and its inverse, for the rate profile
    of an Arrival. m is taken as linear between nodes (its bends and steps, plus a fine grid
    for the sinusoid), starting each segment at its right limit `a` and ending it at its left
    limit `b`, so steps are exact, M is piecewise quadratic and M^-1 has a closed form."""

    def __init__(self, arrival: Arrival, horizon: float):
        t = _profile_nodes(arrival, horizon)
        self.t0, self.h = t[:-1], np.diff(t)
        self.a = arrival.multiplier(t[:-1], right=True)
        self.b = arrival.multiplier(t[1:], right=False)
        self.slope = (self.b - self.a) / self.h
        self.m = np.concatenate([[0.0], np.cumsum((self.a + self.b) / 2 * self.h)])

    @property
    def total(self) -> float:
        return float(self.m[-1])

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """M(t) for run times t in [0, horizon]."""
        t = np.asarray(t, float)
        k = np.clip(np.searchsorted(self.t0, t, side="right") - 1, 0, len(self.h) - 1)
        x = t - self.t0[k]
        return self.m[k] + self.a[k] * x + self.slope[k] * x * x / 2

    def inverse(self, s: np.ndarray) -> np.ndarray:
        """t with M(t) = s: the root of a x + slope x^2 / 2 = s - M(t0) in the segment,
        written 2d / (a + sqrt(a^2 + 2 slope d)) to stay exact when the slope is 0."""
        s = np.asarray(s, float)
        k = np.clip(np.searchsorted(self.m, s, side="right") - 1, 0, len(self.h) - 1)
        d = s - self.m[k]
        a = self.a[k]
        root = a + np.sqrt(np.maximum(a * a + 2 * self.slope[k] * d, 0.0))
        x = np.divide(2 * d, root, out=np.zeros_like(d), where=root > 0)
        return self.t0[k] + np.minimum(x, self.h[k])


def _profile_nodes(arrival: Arrival, horizon: float) -> np.ndarray:
    parts = [np.array([0.0, horizon])]
    if arrival.diurnal is not None:
        parts.append(arrival.diurnal.nodes(horizon))
    parts += [s.nodes() for s in arrival.spikes]
    t = np.unique(np.concatenate(parts))
    return t[(t >= 0) & (t <= horizon)]


def expected_arrivals(arrival: Arrival, rate: float, t: np.ndarray) -> np.ndarray:
    """Lambda(t) = rate * M(t): the expected number of arrivals in [0, t]."""
    t = np.asarray(t, float)
    if not arrival.modulated:
        return rate * t
    return rate * OperationalClock(arrival, max(float(np.max(t)), 1.0))(t)
