"""Token-length distributions: how many prompt or output tokens a request has.

In YAML a bare integer is a fixed length; otherwise `{dist: uniform|lognormal|exponential|
empirical, ...}`. `sim.demand.workload.draw_lengths` draws from them.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field, model_validator

from ..spec.base import MAX_TOKENS, Spec, Tokens

class FixedLength(Spec):
    dist: Literal["fixed"] = "fixed"
    value: Tokens


class UniformLength(Spec):
    dist: Literal["uniform"]
    min: Tokens
    max: Tokens

    @model_validator(mode="after")
    def _ordered(self):
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class LognormalLength(Spec):
    """Lognormal with the given mean and coefficient of variation, rounded, clipped to [min, max]."""

    dist: Literal["lognormal"]
    mean: float = Field(gt=0, le=MAX_TOKENS)
    cv: float = Field(gt=0, le=1000)
    min: Tokens = 1
    max: Tokens = 1_000_000


class ExponentialLength(Spec):
    """Geometric on 1, 2, ... with the given mean (the integer form of an exponential)."""

    dist: Literal["exponential"]
    mean: float = Field(ge=1, le=MAX_TOKENS)
    max: Tokens = 10_000_000


class EmpiricalLength(Spec):
    """Draws from listed values (with optional weights) or a column of a CSV file."""

    dist: Literal["empirical"]
    values: list[Tokens] | None = None
    weights: list[float] | None = None
    path: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.values is None) == (self.path is None):
            raise ValueError("give either values: [...] or path: FILE.csv with column: NAME")
        if self.path is not None and not self.column:
            raise ValueError("path: needs column: naming the CSV column to draw from")
        if self.values is not None:
            if not self.values or min(self.values) < 1:
                raise ValueError("values must be a non-empty list of positive token counts")
            if self.weights is not None and (len(self.weights) != len(self.values) or min(self.weights) < 0
                                             or sum(self.weights) <= 0):
                raise ValueError("weights must be non-negative, one per value, with a positive sum")
        return self


def _length_shorthand(v):
    return {"dist": "fixed", "value": v} if isinstance(v, int) and not isinstance(v, bool) else v


Length = Annotated[
    Annotated[Union[FixedLength, UniformLength, LognormalLength, ExponentialLength, EmpiricalLength],
              Field(discriminator="dist")],
    BeforeValidator(_length_shorthand),
]


def lognormal_parameters(mean: float, cv: float) -> tuple[float, float]:
    """mu and sigma of the underlying normal for a lognormal with this mean and coefficient
    of variation."""
    sigma2 = np.log1p(cv ** 2)
    return float(np.log(mean) - sigma2 / 2), float(np.sqrt(sigma2))


def draw_lengths(dist, n: int, rng: np.random.Generator) -> np.ndarray:
    """n token counts (>= 1) from a length distribution."""
    if isinstance(dist, FixedLength):
        return np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, UniformLength):
        return rng.integers(dist.min, dist.max + 1, n, dtype=np.int64)
    if isinstance(dist, LognormalLength):
        x = np.rint(rng.lognormal(*lognormal_parameters(dist.mean, dist.cv), n))
        return np.clip(x, dist.min, dist.max).astype(np.int64)
    if isinstance(dist, ExponentialLength):
        return np.minimum(rng.geometric(1.0 / dist.mean, n), dist.max).astype(np.int64)
    if isinstance(dist, EmpiricalLength):
        if dist.values is not None:
            values = np.asarray(dist.values, dtype=np.int64)
            w = None if dist.weights is None else np.asarray(dist.weights, float) / sum(dist.weights)
        else:
            values = _csv_column(dist.path, dist.column)
            w = None
        return rng.choice(values, n, p=w)
    raise TypeError(f"unknown length distribution {dist!r}")


def _csv_column(path: str, column: str) -> np.ndarray:
    frame = pd.read_csv(path)
    if column not in frame.columns:
        raise ValueError(f"{path} has no column '{column}'; columns: {', '.join(frame.columns)}")
    values = frame[column].to_numpy(np.int64)
    return np.maximum(values, 1)
