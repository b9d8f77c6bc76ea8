"""Arrival processes: the `arrival:` spec that says when a synthetic stream's requests arrive.

A stream's `rate:` is its mean rate; `arrival:` says how arrivals spread around that mean.

YAML forms of `arrival:` (one example each)

    arrival: poisson                          # shorthand for {process: poisson}
    arrival: {process: gamma, cv: 2.5}        # renewal, gaps with coefficient of variation cv
    arrival: {process: constant}              # evenly spaced, 1/rate apart

    arrival:                                  # MMPP, two states (each jumps to the other)
      process: mmpp
      states:
        - {rate_multiplier: 0.6, mean_sojourn: 60s}
        - {rate_multiplier: 4, mean_sojourn: 8s}

    arrival:                                  # MMPP, any number of states and a jump matrix
      process: mmpp
      states: [{rate_multiplier: 0.5, mean_sojourn: 2min}, {rate_multiplier: 1, mean_sojourn: 1min},
               {rate_multiplier: 6, mean_sojourn: 10s}]
      transitions: [[0, 1, 0], [0.8, 0, 0.2], [0, 1, 0]]

    arrival:                                  # any process above, modulated by a daily sinusoid
      process: poisson
      diurnal: {peak_to_trough: 3, peak_at: 14h, start: 9h, period: 24h}

    arrival:                                  # ... or by a table of (time of day, multiplier)
      process: gamma
      cv: 2
      diurnal: {table: [[0h, 0.3], [8h, 0.6], [12h, 1.4], [17h, 1.6], [22h, 0.7]], start: 8h}

    arrival:                                  # ... and/or by scheduled spikes (they compose)
      process: poisson
      spikes: [{at: 20min, duration: 5min, multiplier: 4, ramp: 1min}]

Trace replay (a stream's `trace:` instead of `arrival:`; `rate:` there rescales the timing)

    trace: {path: traces/conv.csv, start: 10min, duration: 30min, time_scale: 0.5}

Conventions
  * `rate` is the long-run mean: over the stationary distribution of an MMPP's states and
    over a whole period of a diurnal profile. Spikes come on top of it (they add arrivals).
  * MMPP: a state lasts an exponential time with mean `mean_sojourn`, then jumps: with two
    states to the other one; with more, to j with probability transitions[i][j] (zero
    diagonal, rows summing to 1; default: uniformly to the others). The multipliers are
    scaled so that their mean weighted by the fraction of time in each state is 1, so state
    i arrives at rate * m_i / sum_j(pi_j m_j). The run starts in a state drawn from that
    stationary distribution, so the process is stationary from t = 0.
  * Gamma: likewise stationary from t = 0; the first arrival falls a uniform fraction into a
    length-biased gap, as if the process had run before the start (cv at most 100).
  * Diurnal multipliers are normalized to mean 1 over the period (only their ratios matter).
    Formula: m(t) = 1 + a cos(2 pi (t + start - peak_at) / period), a = (R - 1) / (R + 1) for
    R = peak_to_trough. Table: linear between points, wrapping from the last to the first.
    Times of day (peak_at, start, table times) are durations since midnight: 14h or 870min,
    not 14:00, which YAML reads as the number 840. `start` is the time of day at t = 0, so a
    run shorter than a period sees the part of the day it covers, not the mean.
  * Spikes: `at` is seconds from the start of the run. The rate is multiplied by
    `multiplier` for `duration`, rising linearly over the first `ramp` and falling over the
    last `ramp` of it, so a spike brings (multiplier - 1) * rate * (duration - ramp) extra
    arrivals on a flat profile. Overlapping spikes multiply; multiplier < 1 is a dip, 0 a pause.
  * Modulation is a time change: the base process runs at `rate` on an operational clock
    s = M(t) = integral of m(u) du over [0, t], and an arrival at s happens at t = M^-1(s).
    Poisson becomes the inhomogeneous Poisson process of intensity rate * m(t); a renewal or
    MMPP keeps its shape on the operational clock (an MMPP's sojourns shrink at the peak).

Drawing the instants from a spec is `sim.demand.arrival_times`; fitting an MMPP to a trace's
burstiness is `sim.demand.mmpp`.
"""
from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..spec import units
from ..spec.base import Seconds, Spec, _unit

DAY = 86400.0
# Gamma gaps with cv c are nearly all close to 0, with rare long ones between: arrivals come in
# near-simultaneous bursts of the order of c^2 requests. 100 (bursts of thousands) is far burstier
# than published traces (cv 1-5); at 10^12 one burst alone would fill memory.
GAMMA_CV_LIMIT = 100.0
TimeOfDay = Annotated[float, _unit(units.parse_duration), Field(ge=0)]

# ---- schema ------------------------------------------------------------------------------


def _non_negative_multiplier(v: float, what: str) -> float:
    if v < 0:
        raise ValueError(f"{what} must be >= 0 (1 leaves the rate as it is, 0 stops arrivals), got {v:g}")
    return v


class Diurnal(Spec):
    """A periodic rate profile: a sinusoid (peak_to_trough, peak_at) or a table of points."""

    peak_to_trough: float | None = Field(default=None, ge=1, description="peak rate / trough rate")
    peak_at: TimeOfDay | None = Field(default=None, description="time of day of the peak, e.g. 14h")
    table: tuple[tuple[TimeOfDay, float], ...] | None = Field(
        default=None, description="[[time of day, multiplier], ...], linear in between, repeating")
    period: Seconds = Field(default=DAY, gt=0, description="length of the repeating profile")
    start: TimeOfDay = Field(default=0.0, description="time of day at which the run starts")

    @field_validator("table")
    @classmethod
    def _table(cls, rows):
        if rows is None:
            return rows
        if len(rows) < 2:
            raise ValueError("a diurnal table needs at least two [time of day, multiplier] points")
        for i, (t, m) in enumerate(rows):
            _non_negative_multiplier(m, f"table[{i}] multiplier")
            if i and t <= rows[i - 1][0]:
                raise ValueError(f"table times must increase: point {i} at {t:g}s is not after "
                                 f"point {i - 1} at {rows[i - 1][0]:g}s")
        if max(m for _, m in rows) <= 0:
            raise ValueError("a diurnal table needs at least one positive multiplier")
        return rows

    @model_validator(mode="after")
    def _one_form(self):
        if (self.peak_to_trough is None) == (self.table is None):
            raise ValueError("give either peak_to_trough: R with peak_at: TIME (a sinusoid) "
                             "or table: [[time of day, multiplier], ...]")
        if self.peak_to_trough is not None and self.peak_at is None:
            raise ValueError("peak_to_trough needs peak_at: the time of day of the peak, e.g. 14h")
        if self.table is not None:
            if self.peak_at is not None:
                raise ValueError("peak_at applies to the sinusoid (peak_to_trough) only; a table sets its own peak")
            if self.table[-1][0] >= self.period:
                raise ValueError(f"table times must lie within one period [0, {self.period:g}s); "
                                 f"the last is {self.table[-1][0]:g}s")
        return self

    def multiplier(self, t: np.ndarray) -> np.ndarray:
        """m(t) at run time t (seconds from the start), with mean 1 over a period."""
        x = np.mod(np.asarray(t, float) + self.start, self.period)
        if self.table is None:
            a = (self.peak_to_trough - 1) / (self.peak_to_trough + 1)
            return 1 + a * np.cos(2 * np.pi * (x - self.peak_at) / self.period)
        tx, mx = self._periodic_points()
        return np.interp(x, tx, mx)

    def _periodic_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The table padded by a point either side of the period (so interp wraps), mean 1."""
        tx = np.array([p[0] for p in self.table], float)
        mx = np.array([p[1] for p in self.table], float)
        tx = np.concatenate([[tx[-1] - self.period], tx, [tx[0] + self.period]])
        mx = np.concatenate([[mx[-1]], mx, [mx[0]]])
        area = np.sum(((mx[1:] + mx[:-1]) / 2 * np.diff(tx))[1:])  # first point to first + period
        return tx, mx / (area / self.period)

    def nodes(self, horizon: float) -> np.ndarray:
        """Run times where m(t) bends: the table's points, or a fine grid for the sinusoid."""
        if self.table is None:
            step = max(self.period / 1024, horizon / 1e6)
            return np.arange(0.0, horizon, step)
        first = np.array([p[0] for p in self.table]) - self.start
        k = np.arange(np.floor(-first.max() / self.period), np.ceil((horizon - first.min()) / self.period) + 1)
        return (first[None, :] + self.period * k[:, None]).ravel()


class Spike(Spec):
    """A scheduled burst: the rate times `multiplier` for `duration` from `at`, with linear ramps."""

    at: Seconds = Field(ge=0, description="start, seconds from the start of the run")
    duration: Seconds = Field(gt=0, description="how long the spike lasts, ramps included")
    multiplier: float = Field(description="rate multiplier at the spike's height (below 1 a dip, 0 a pause)")
    ramp: Seconds = Field(default=0.0, ge=0, description="rise (and fall) time, inside duration")

    @field_validator("multiplier")
    @classmethod
    def _multiplier(cls, v):
        return _non_negative_multiplier(v, "multiplier")

    @model_validator(mode="after")
    def _ramps_fit(self):
        if 2 * self.ramp > self.duration:
            raise ValueError(f"ramp ({self.ramp:g}s) rises and falls inside duration ({self.duration:g}s), "
                             f"so it must be at most half of it")
        return self

    def factor(self, t: np.ndarray, right: bool = True) -> np.ndarray:
        """The spike's multiplier at t; at a step (ramp 0) the limit from the right or left."""
        end = self.at + self.duration
        if self.ramp > 0:
            level = np.clip(np.minimum(t - self.at, end - t) / self.ramp, 0.0, 1.0)
        elif right:
            level = (t >= self.at) & (t < end)
        else:
            level = (t > self.at) & (t <= end)
        return 1 + (self.multiplier - 1) * level

    def nodes(self) -> np.ndarray:
        a, e = self.at, self.at + self.duration
        return np.array([a, a + self.ramp, e - self.ramp, e])


class MmppState(Spec):
    rate_multiplier: float = Field(description="this state's rate relative to the others (rescaled to mean 1)")
    mean_sojourn: Seconds = Field(gt=0, description="mean time spent in the state per visit")

    @field_validator("rate_multiplier")
    @classmethod
    def _multiplier(cls, v):
        return _non_negative_multiplier(v, "rate_multiplier")


class Arrival(Spec):
    """How a synthetic stream's arrivals spread around its rate: a base process (renewal or
    MMPP), optionally modulated by a diurnal profile and scheduled spikes."""

    process: Literal["poisson", "gamma", "constant", "mmpp"] = Field(
        default="poisson", description="the base process: Poisson, gamma renewal (with cv), evenly spaced, or a "
                                       "Markov-modulated Poisson process (with states)")
    cv: float | None = Field(default=None, gt=0, le=GAMMA_CV_LIMIT,
                             description="gamma: coefficient of variation of the gaps")
    states: tuple[MmppState, ...] | None = Field(default=None, description="mmpp: the modulating states")
    transitions: tuple[tuple[float, ...], ...] | None = Field(default=None, description="mmpp: jump probabilities")
    diurnal: Diurnal | None = Field(default=None, description="a daily (periodic) rate profile")
    spikes: tuple[Spike, ...] = Field(default=(), description="scheduled bursts on top of the rate")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        return {"process": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _fields_for_process(self):
        if self.process == "gamma" and self.cv is None:
            raise ValueError("gamma arrivals need cv (coefficient of variation of inter-arrival times)")
        if self.process != "gamma" and self.cv is not None:
            raise ValueError(f"cv applies to gamma arrivals only, not {self.process}")
        if self.process != "mmpp":
            if self.states is not None or self.transitions is not None:
                raise ValueError(f"states/transitions apply to mmpp arrivals only, not {self.process}")
            return self
        if not self.states or len(self.states) < 2:
            raise ValueError("mmpp arrivals need states: at least two of {rate_multiplier: M, mean_sojourn: 30s} "
                             "(one state is plain poisson)")
        _check_transitions(self.transitions, len(self.states))
        if max(s.rate_multiplier for s in self.states) <= 0:
            raise ValueError("mmpp needs at least one state with a positive rate_multiplier")
        return self

    @property
    def modulated(self) -> bool:
        return self.diurnal is not None or bool(self.spikes)

    def multiplier(self, t: np.ndarray, right: bool = True) -> np.ndarray:
        """m(t): the diurnal profile times every spike (1 where there are none)."""
        t = np.asarray(t, float)
        m = self.diurnal.multiplier(t) if self.diurnal is not None else np.ones_like(t)
        for spike in self.spikes:
            m = m * spike.factor(t, right)
        return m


def _check_transitions(rows, n: int) -> None:
    """A jump matrix must be n x n, a probability per row, no self-jumps, and irreducible
    (every state reachable from every other) so the stationary distribution is unique."""
    if rows is None:
        return
    if len(rows) != n or any(len(r) != n for r in rows):
        raise ValueError(f"transitions must be a {n} x {n} matrix, one row per state")
    p = np.asarray(rows, float)
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-6):
        raise ValueError("each transitions row holds the probabilities of jumping to each state: "
                         "non-negative, summing to 1")
    if np.any(np.diag(p) != 0):
        raise ValueError("transitions[i][i] must be 0: the time spent in a state is its mean_sojourn")
    reach = (p > 0) | np.eye(n, dtype=bool)
    for _ in range(int(np.ceil(np.log2(n))) + 1):
        reach = (reach.astype(int) @ reach.astype(int)) > 0
    if not reach.all():
        raise ValueError("every state must be reachable from every other through transitions")


class Trace(Spec):
    """Replay of a CSV in the Azure LLM inference schema: TIMESTAMP,ContextTokens,GeneratedTokens.
    `start`/`duration` replay a slice (seconds from the trace's first request; arrival times
    are measured from the slice start); `time_scale` stretches (>1) or compresses (<1) time."""

    path: str = Field(description="the CSV file, relative to the file that names it")
    time_scale: float = Field(default=1.0, gt=0, description="stretches (> 1) or compresses (< 1) the trace's time")
    start: Seconds = Field(default=0.0, ge=0, description="replay from this time after the trace's first request")
    duration: Seconds | None = Field(default=None, gt=0, description="replay this much of it; none: to its end")
