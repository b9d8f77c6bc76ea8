"""Markov-modulated Poisson processes: their algebra (state rates, stationary distribution,
index of dispersion of counts) and the MMPP that reproduces a trace's burstiness.

Fitting burstiness: `dispersion(times, window)` is the index of dispersion of counts
(variance / mean of the counts in consecutive windows); `fit_mmpp(times)` fits a 2-state
MMPP that reproduces a trace's mean rate and its dispersion at 1 s and 60 s, and
`arrival_block(fit)` turns the fit into the `arrival:` mapping (sim.demand.arrivals).
"""
from __future__ import annotations

import numpy as np

from .arrivals import Arrival

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
    fit = {"rate": float(rate), "idc": dict(zip(windows.tolist(), measured.tolist(), strict=True))}
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
               idc_fit=dict(zip(windows.tolist(), (1 + amp * _g(r * windows)).tolist(), strict=True)))
    fit["arrival"] = arrival_block(fit)
    return fit


def arrival_block(fit: dict) -> dict:
    """The `arrival:` mapping for a scenario from a `fit_mmpp` result (use rate: fit['rate'])."""
    if not np.all(np.isfinite(fit["mean_sojourns"])):
        return {"process": "poisson"}
    states = [{"rate_multiplier": float(f"{lam / fit['rate']:.4g}"), "mean_sojourn": f"{s:.4g}s"}
              for lam, s in zip(fit["rates"], fit["mean_sojourns"], strict=True)]
    return {"process": "mmpp", "states": states}
