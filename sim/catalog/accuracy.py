"""How far the simulator's answers are from measurements: intervals from held-out errors.

`make validate` records every held-out case's error in `sim/catalog/accuracy.json`, with the
class of the pool that produced it: level (step or serving), timing source (measured or
analytical), vendor, and whether a replica spans several devices. A run looks up the class
of its own pools and gets a 90 % interval for a figure from that class's errors:

- Errors are kept as *optimism* in log space, o = ln(simulated speed / real speed): a time
  the simulator predicts too short, or a rate too high, is o > 0. A time T then lies in
  [T e^(c - h), T e^(c + h)] and a rate R in [R e^(-c - h), R e^(-c + h)].
- c is the class's median optimism and h its split-conformal half-width: the
  ceil((n + 1) 0.9)-th smallest |o_i - c| of its n cases. That interval holds a new case of
  the class with probability >= 90 % whatever the errors' distribution, if the case is like
  the ones measured; it needs n >= 9.
- A class with fewer cases takes the next broader one (dropping parallelism, then vendor,
  then timing source, then level), widened to cover the cases of the narrowest class that
  has any, or by half when the class and every narrower one have none, and says so.

`coverage` checks the claim: each held-out case's interval computed without it must hold it.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.9
MIN_CASES = 9                       # the fewest cases a 90 % conformal interval can use
NO_CASE_WIDENING = 1.5              # a class without any case gets its parent's interval, half again wider
PATH = os.path.join(os.path.dirname(__file__), "accuracy.json")
END_TO_END = ("step", "serving")


@dataclass(frozen=True)
class Entry:
    """One held-out case's error and the class of the pool that produced it."""
    id: str
    level: str                      # kernel, step or serving
    source: str                     # measured, analytical or roofline (kernel cases)
    vendor: str
    parallel: bool                  # a replica spans several devices (tp x pp x ep > 1)
    optimism: float                 # ln(simulated speed / real speed)

    def row(self) -> dict:
        return {"id": self.id, "level": self.level, "source": self.source, "vendor": self.vendor,
                "parallel": self.parallel, "optimism": round(self.optimism, 6)}


@dataclass(frozen=True)
class Interval:
    """A multiplicative 90 % interval in optimism space, and where it comes from."""
    center: float
    half_width: float
    cases: int
    basis: str                      # e.g. "31 held-out serving cases: measured timing, nvidia, multi-device"
    widened: str = ""               # why it is wider than its class's own cases give, if it is

    def time(self, value: float | None) -> tuple[float, float] | None:
        """Where a time the simulator gave as `value` really lies."""
        if value is None:
            return None
        return value * math.exp(self.center - self.half_width), value * math.exp(self.center + self.half_width)

    def rate(self, value: float | None) -> tuple[float, float] | None:
        """Where a rate (throughput, capacity) the simulator gave as `value` really lies."""
        if value is None:
            return None
        return value * math.exp(-self.center - self.half_width), value * math.exp(-self.center + self.half_width)

    def with_spread(self, log_half_width: float) -> Interval:
        """Add the run's own statistical spread (a 90 % half-width in log space), in quadrature."""
        if not log_half_width > 0:
            return self
        return Interval(self.center, math.hypot(self.half_width, log_half_width), self.cases, self.basis,
                        self.widened)

    def describe(self) -> str:
        out = f"{CONFIDENCE:.0%} interval from {self.basis}"
        return out + (f" ({self.widened})" if self.widened else "")


def class_of(deployments) -> tuple[str, str, bool]:
    """(timing source, vendor, multi-device) of the pools that produced a figure: measured only
    when every pool's timing is; `mixed` vendors when they differ."""
    sources = {d.timing.split()[0] for d in deployments}
    vendors = {d.device.vendor for d in deployments}
    return ("measured" if sources == {"measured"} else "analytical",
            vendors.pop() if len(vendors) == 1 else "mixed",
            any(d.tp * d.pp * d.ep > 1 for d in deployments))


def optimism(predicted: float, reference: float, is_time: bool) -> float:
    """ln(simulated speed / real speed): > 0 when the simulator is optimistic."""
    ratio = predicted / reference
    return -math.log(ratio) if is_time else math.log(ratio)


def load(path: str = PATH) -> list[Entry]:
    with open(path) as f:
        data = json.load(f)
    return [Entry(**row) for row in data["cases"]]


def save(entries: list[Entry], path: str = PATH) -> None:
    data = {"about": "held-out validation errors by class; written by `make validate` (dcsim validate-model), "
                     "read by sim.catalog.accuracy for the intervals every run prints",
            "confidence": CONFIDENCE,
            "cases": [e.row() for e in sorted(entries, key=lambda e: (e.level, e.id))]}
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def _describe(level, source, vendor, parallel) -> str:
    parts = []
    if source is not None:
        parts.append(f"{source} timing")
    if vendor is not None:
        parts.append(vendor)
    if parallel is not None:
        parts.append("multi-device" if parallel else "single-device")
    levels = "+".join(level) if isinstance(level, tuple) else level
    return f"{levels} cases" + (f": {', '.join(parts)}" if parts else "")


def conformal_half_width(values: np.ndarray, center: float) -> float:
    """The ceil((n + 1) 0.9)-th smallest distance of the n values from `center`."""
    n = len(values)
    k = math.ceil((n + 1) * CONFIDENCE)
    return float(np.sort(np.abs(values - center))[min(k, n) - 1])


def interval(entries: list[Entry], level: str, source: str, vendor: str, parallel: bool) -> Interval:
    """The 90 % interval for a figure of this class, from the narrowest class with enough cases."""
    def members(lv, src, vd, par):
        return np.array([e.optimism for e in entries
                         if (e.level in lv if isinstance(lv, tuple) else e.level == lv)
                         and (src is None or e.source == src) and (vd is None or e.vendor == vd)
                         and (par is None or e.parallel == par)])

    chain = [(level, source, vendor, parallel), (level, source, vendor, None), (level, source, None, None),
             (level, None, None, None), (END_TO_END, None, None, None)]
    nearest = None                  # the narrowest class with any case: the evidence closest to this one
    for klass in chain:
        values = members(*klass)
        if nearest is None and len(values):
            nearest = (klass, values)
        if len(values) < MIN_CASES:
            continue
        center = float(np.median(values))
        half = conformal_half_width(values, center)
        basis = f"{len(values)} held-out {_describe(*klass)}"
        if klass is chain[0]:
            return Interval(center, half, len(values), basis)
        near, own = nearest
        if near is not klass:
            half = max(half, float(np.max(np.abs(own - center))))
            why = f"widened to cover the {len(own)} held-out {_describe(*near)}; fewer than {MIN_CASES}"
        else:
            half *= NO_CASE_WIDENING
            why = f"widened by half: no held-out {_describe(*chain[0])}"
        return Interval(center, half, len(values), basis, why)
    raise ValueError(f"fewer than {MIN_CASES} held-out cases in all")


def coverage(entries: list[Entry]) -> dict[str, dict]:
    """Per level: how often a held-out case lies inside the interval built from all the others."""
    out = {}
    for level in ("kernel", "step", "serving"):
        mine = [e for e in entries if e.level == level]
        hits = 0
        for e in mine:
            others = [o for o in entries if o is not e]
            try:
                iv = interval(others, e.level, e.source, e.vendor, e.parallel)
            except ValueError:
                continue
            hits += abs(e.optimism - iv.center) <= iv.half_width
        if mine:
            out[level] = {"cases": len(mine), "inside": int(hits), "coverage": hits / len(mine)}
    return out
