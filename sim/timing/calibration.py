"""A calibration overlay: factors fitted to one's own cluster, applied to a scenario's pools.

`dcsim calibrate` writes it (`sim.tools.calibrate`); a scenario names it with `calibration:
my-cluster.yaml` (relative to the scenario file). Each pool that runs the overlay's device and
model (and tensor-parallel degree, when it names one) then runs with its device time scaled by
`time_scale` (compute, memory and link alike) and, when the overlay fitted one from measured
step times, the host time per iteration it measured. The run's intervals come from the
overlay's own held-out error instead of the validation suite's (`interval`).

    calibration:
      device: nvidia-h100-sxm
      model: llama-3.1-8b
      tp: 1
      time_scale: 1.25
      iteration_overhead: 3ms     # only when fitted from step times
      fitted_on: [...]
      held_out: {figures: [...], optimism: [...], median_abs_error_before: 0.2, median_abs_error_after: 0.01}
"""
from __future__ import annotations

import math
import os

import numpy as np
from pydantic import Field

from ..catalog import accuracy
from ..spec import source
from ..spec.base import Seconds, Spec
from ..spec.errors import Loc, ScenarioError
from ..spec.validate import validate
from . import kernels as K

# Student's t, one-sided 0.95, by degrees of freedom: the 90 % prediction interval of a few cases
T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895}


class HeldOut(Spec):
    figures: list[str] = Field(default_factory=list, description="the held-out measurements, file:line metric")
    optimism: list[float] = Field(default_factory=list, description="ln(simulated speed / measured) of each, "
                                                                     "after calibration")
    median_abs_error_before: float | None = None
    median_abs_error_after: float | None = None


class Overlay(Spec):
    device: str
    model: str
    tp: int | None = Field(default=None, ge=1)
    time_scale: float = Field(gt=0, description="device time x this (compute, memory and link)")
    iteration_overhead: Seconds | None = Field(default=None, ge=0, description="host time per iteration, s")
    fitted_on: list[str] = Field(default_factory=list)
    held_out: HeldOut = HeldOut()

    def matches(self, pool) -> bool:
        return (pool.device_key == self.device and pool.model_key == self.model
                and (self.tp is None or pool.deployment.tp == self.tp))


def load(path: str, at: Loc | None) -> Overlay:
    if not os.path.isfile(path):
        raise ScenarioError.one(at, "calibration", f"no such file: {path} (dcsim calibrate writes one)")
    src = source.load(path)
    if not isinstance(src.data, dict) or "calibration" not in src.data:
        raise ScenarioError.one(Loc(path, 1), "calibration", "a calibration file holds `calibration:` "
                                                             "(written by dcsim calibrate)")
    return validate(Overlay, src.data["calibration"], src, ("calibration",))


def scaled(params: np.ndarray, time_scale: float, iteration_overhead: float | None) -> np.ndarray:
    """A cost vector with the device's time x `time_scale` (compute, memory and link) and, when
    given, the measured host time per iteration in place of the engine's host costs."""
    p = params.copy()
    for key in (K.K_COMPUTE_SCALE, K.K_MEMORY_SCALE, K.K_LINK_SCALE):
        p[key] *= time_scale
    if iteration_overhead is not None:   # measured step times include the host's work
        p[K.K_OVERHEAD] = iteration_overhead
        p[K.K_HOST_PER_SEQ] = 0.0
        p[K.K_HOST_OVERLAP] = 0.0
    return p


def apply(overlay: Overlay, name: str, pools) -> list[str]:
    """Scale the matching pools; return notes for the run (which pools, or that none matched)."""
    hit = [p for p in pools if overlay.matches(p)]
    for pool in hit:
        dep = pool.deployment
        dep.params = scaled(dep.params, overlay.time_scale, overlay.iteration_overhead)
        dep.calibration = (name, overlay)
        host = ("" if overlay.iteration_overhead is None
                else f", host {overlay.iteration_overhead * 1e3:.2f} ms/iteration")
        dep.timing += f"; calibrated by {name} (device time x {overlay.time_scale:.3f}{host})"
    if hit:
        return []
    tp = f" at tp {overlay.tp}" if overlay.tp else ""
    return [f"calibration {name} ({overlay.device}, {overlay.model}{tp}) matches no pool; not applied"]


def interval(name: str, overlay: Overlay) -> accuracy.Interval | None:
    """The 90 % interval from the overlay's held-out figures: split-conformal with 9 or more,
    Student's t prediction interval with 2 to 8 (wider, as few cases warrant), none with fewer."""
    o = np.asarray(overlay.held_out.optimism, float)
    n = len(o)
    if n < 2:
        return None
    center = float(np.median(o)) if n >= accuracy.MIN_CASES else float(np.mean(o))
    basis = f"{n} held-out measurements of your cluster (calibration {name})"
    if n >= accuracy.MIN_CASES:
        return accuracy.Interval(center, accuracy.conformal_half_width(o, center), n, basis)
    half = T95[n - 1] * float(np.std(o, ddof=1)) * math.sqrt(1.0 + 1.0 / n)
    return accuracy.Interval(center, half, n, basis,
                             f"fewer than {accuracy.MIN_CASES}: Student's t prediction interval")
