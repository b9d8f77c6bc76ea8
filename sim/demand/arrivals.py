"""Arrival processes: when the requests of a synthetic stream arrive, and how to fit one to a trace.

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

Fitting burstiness: `dispersion(times, window)` is the index of dispersion of counts
(variance / mean of the counts in consecutive windows); `fit_mmpp(times)` fits a 2-state
MMPP that reproduces a trace's mean rate and its dispersion at 1 s and 60 s, and
`arrival_block(fit)` turns the fit into the `arrival:` mapping above.
"""
from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..spec import units
from ..spec.base import Seconds, Spec, _unit

DAY = 86400.0
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
    period: Seconds = Field(default=DAY, gt=0)
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
    duration: Seconds = Field(gt=0)
    multiplier: float
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

    process: Literal["poisson", "gamma", "constant", "mmpp"] = "poisson"
    cv: float | None = Field(default=None, gt=0, description="gamma: coefficient of variation of the gaps")
    states: tuple[MmppState, ...] | None = Field(default=None, description="mmpp: the modulating states")
    transitions: tuple[tuple[float, ...], ...] | None = Field(default=None, description="mmpp: jump probabilities")
    diurnal: Diurnal | None = None
    spikes: tuple[Spike, ...] = ()

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

    path: str
    time_scale: float = Field(default=1.0, gt=0)
    start: Seconds = Field(default=0.0, ge=0)
    duration: Seconds | None = Field(default=None, gt=0)


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
    """A renewal process from t = 0, drawn in chunks sized to end past the horizon at once."""
    mean_gap = 1.0 / rate
    expected = rate * horizon
    chunk = int(expected + 6 * np.sqrt(expected) + 16)
    times: list[np.ndarray] = []
    t = 0.0
    while t < horizon:
        if arrival.process == "poisson":
            gaps = rng.exponential(mean_gap, chunk)
        elif arrival.process == "gamma":
            shape = 1.0 / arrival.cv ** 2
            gaps = rng.gamma(shape, mean_gap / shape, chunk)
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


# ---- MMPP algebra ------------------------------------------------------------------------


def mmpp_parameters(arrival: Arrival, rate: float):
    """(state rates, mean sojourns, jump matrix, stationary distribution), with the state
    rates scaled so that the stationary mean rate is `rate`."""
    mult = np.array([s.rate_multiplier for s in arrival.states], float)
    hold = np.array([s.mean_sojourn for s in arrival.states], float)
    n = len(mult)
    if arrival.transitions is not None:
        jump = np.asarray(arrival.transitions, float)
    else:
        jump = (np.ones((n, n)) - np.eye(n)) / (n - 1)
    pi = stationary(generator(hold, jump))
    return rate * mult / float(pi @ mult), hold, jump, pi


def generator(hold: np.ndarray, jump: np.ndarray) -> np.ndarray:
    """The CTMC generator Q: leave state i at rate 1/hold_i, to j with probability jump_ij."""
    q = jump / hold[:, None]
    np.fill_diagonal(q, -1 / hold)
    return q


def stationary(q: np.ndarray) -> np.ndarray:
    """pi with pi Q = 0 and sum(pi) = 1: the fraction of time spent in each state."""
    n = len(q)
    a = np.vstack([q.T, np.ones(n)])
    pi = np.linalg.lstsq(a, np.r_[np.zeros(n), 1.0], rcond=None)[0]
    return np.clip(pi, 0, None) / np.clip(pi, 0, None).sum()


def mmpp_idc(lam: np.ndarray, q: np.ndarray, window) -> np.ndarray:
    """Index of dispersion of counts of an MMPP (state rates lam, generator q) in a window T:
    Var N(T) = mean T + 2 * integral over [0, T] of (T - u) Cov(lambda(0), lambda(u)) du,
    with Cov(u) = (pi Lam) e^{Qu} lam - mean^2 summed over Q's eigenmodes. For two states
    (leaving rates r1, r2, r = r1 + r2) it is
    1 + 2 (l1 - l2)^2 r1 r2 / (mean r^3) * (1 - (1 - e^{-rT}) / (rT))."""
    lam = np.asarray(lam, float)
    pi = stationary(q)
    mean = float(pi @ lam)
    mu, v = np.linalg.eig(q)
    coef = ((pi * lam) @ v) * (np.linalg.solve(v, lam))
    keep = np.abs(mu) > 1e-12 * np.abs(mu).max()
    mu, coef = mu[keep], coef[keep]
    t = np.asarray(window, float)[..., None]
    extra = 2 * np.sum(coef * (np.expm1(mu * t) - mu * t) / mu ** 2, axis=-1)
    return 1 + np.real(extra) / (mean * t[..., 0])


def arrival_idc(arrival: Arrival, rate: float, window) -> np.ndarray:
    """The closed-form IDC of an unmodulated mmpp Arrival at mean rate `rate`."""
    lam, hold, jump, _ = mmpp_parameters(arrival, rate)
    return mmpp_idc(lam, generator(hold, jump), window)


# ---- burstiness of a trace and the MMPP that reproduces it --------------------------------


def dispersion(times, window: float, span: float | None = None) -> float:
    """Variance / mean of the counts in consecutive windows covering [0, span) (whole
    windows only; span defaults to the last instant). 1 for Poisson, cv^2 for a renewal
    process at long windows, growing with the window for bursty traffic."""
    times = np.asarray(times, float)
    span = float(times.max()) if span is None else span
    n = int(span // window)
    if n < 2:
        raise ValueError(f"a {window:g}s window fits {n} time(s) in {span:g}s; need at least 2")
    inside = times[(times >= 0) & (times < n * window)]
    counts = np.bincount((inside // window).astype(np.int64), minlength=n)[:n]
    return float(counts.var(ddof=1) / counts.mean())


def _g(x: np.ndarray) -> np.ndarray:
    """1 - (1 - e^-x) / x: how much of its long-window excess IDC an MMPP-2 shows at rT = x."""
    x = np.asarray(x, float)
    small = x < 1e-6
    safe = np.where(small, 1.0, x)
    return np.where(small, x / 2 - x * x / 6, 1 + np.expm1(-safe) / safe)


def _fit_idc_curve(windows: np.ndarray, excess: np.ndarray) -> tuple[float, float]:
    """(r, A) so that A g(r T_i) matches excess_i = IDC(T_i) - 1 in relative least squares:
    A in closed form for each r, r on a log grid, then refined by golden section."""
    y = np.maximum(excess, 1e-9)

    def fit(log_r):
        g = _g(np.exp(log_r) * windows) / y
        amp = g.sum() / (g * g).sum()
        return float(np.sum((amp * g - 1) ** 2)), amp

    lo, hi = np.log(1e-4 / windows.max()), np.log(1e4 / windows.min())
    grid = np.linspace(lo, hi, 400)
    best = int(np.argmin([fit(x)[0] for x in grid]))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    phi = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        c, d = b - phi * (b - a), a + phi * (b - a)
        if fit(c)[0] <= fit(d)[0]:
            b = d
        else:
            a = c
    log_r = (a + b) / 2
    return float(np.exp(log_r)), float(fit(log_r)[1])


def _burst_fraction(rate: float, var: float, low_share: float = 0.25) -> float:
    """The IDC fixes the variance of the rate but not how it splits between the states:
    take them half the time each, unless that leaves the low state below `low_share` of the
    mean rate; then make the burst state rarer (and stronger) so the low state keeps it."""
    if var <= 0:
        return 0.5
    k = ((1 - low_share) * rate) ** 2 / var
    return min(0.5, k / (1 + k))


def fit_mmpp(times, windows=(1.0, 60.0), span: float | None = None,
             burst_fraction: float | None = None) -> dict:
    """A 2-state MMPP with the mean rate of `times` (arrival instants from 0; span defaults to
    the last) and its index of dispersion at each window. The IDC curve of an MMPP-2 is
    1 + A (1 - (1 - e^{-rT}) / (rT)): two windows fix the switching speed r = r_low + r_high
    and A = 2 var(rate) / (mean r); `burst_fraction` (share of time in the high state,
    default `_burst_fraction`) splits that variance between the two states.

    Returns rate, state rates `rates` [low, high], `mean_sojourns` [low, high] (s), the
    measured `idc` and the model's `idc_fit` per window, and `arrival`, the YAML block."""
    times = np.sort(np.asarray(times, float))
    span = float(times[-1]) if span is None else span
    rate = np.count_nonzero((times >= 0) & (times < span)) / span
    windows = np.asarray(windows, float)
    measured = np.array([dispersion(times, w, span) for w in windows])
    fit = {"rate": float(rate), "idc": dict(zip(windows.tolist(), measured.tolist()))}
    if np.all(measured <= 1.0):  # no more variable than Poisson: nothing to modulate
        return {**fit, "rates": [fit["rate"]] * 2, "mean_sojourns": [np.inf, np.inf],
                "idc_fit": {w: 1.0 for w in fit["idc"]}, "arrival": {"process": "poisson"}}
    r, amp = _fit_idc_curve(windows, measured - 1)
    var = amp * rate * r / 2
    p = _burst_fraction(rate, var) if burst_fraction is None else burst_fraction
    delta = np.sqrt(var / (p * (1 - p)))
    rates = [float(rate - p * delta), float(rate + (1 - p) * delta)]
    sojourns = [float(1 / (p * r)), float(1 / ((1 - p) * r))]  # leave low at p r, high at (1 - p) r
    fit.update(rates=rates, mean_sojourns=sojourns, switch_rate=r, burst_fraction=float(p),
               idc_fit=dict(zip(fit["idc"], (1 + amp * _g(r * windows)).tolist())))
    fit["arrival"] = arrival_block(fit)
    return fit


def arrival_block(fit: dict) -> dict:
    """The `arrival:` mapping for a scenario from a `fit_mmpp` result (use rate: fit['rate'])."""
    if not np.all(np.isfinite(fit["mean_sojourns"])):
        return {"process": "poisson"}
    states = [{"rate_multiplier": float(f"{lam / fit['rate']:.4g}"), "mean_sojourn": f"{s:.4g}s"}
              for lam, s in zip(fit["rates"], fit["mean_sojourns"])]
    return {"process": "mmpp", "states": states}
