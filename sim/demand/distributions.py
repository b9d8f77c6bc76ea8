"""One way to give a random quantity in a scenario: a bare value, or `{dist: ...}`.

    prompt_tokens: 512                                      # fixed
    output_tokens: {dist: lognormal, mean: 250, cv: 0.6}
    delay: {dist: exponential, mean: 0.8s}
    audio_seconds: {dist: mixture, weights: [0.9, 0.1], parts: [4s, {dist: uniform, min: 60s, max: 600s}]}

The kinds are fixed, uniform, lognormal (mean and coefficient of variation), exponential,
empirical (listed values with weights, or a CSV column) and mixture. Three quantities use
them, each with its own unit, bounds and clipping (`Quantity`):

- `Length`: token counts, whole numbers >= 1 (prompt, output, context, tool results);
- `Delay`: seconds >= 0 (tool calls, services), not clipped unless asked;
- `AudioSeconds`: seconds > 0 of media per request.

`draw(dist, n, rng)` draws from any of them; `mean(dist)` gives the mean before clipping.
"""
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field, model_validator

from ..spec.base import MAX_TOKENS, Seconds, Spec, Tokens

KINDS = ("fixed", "uniform", "lognormal", "exponential", "empirical", "mixture")


def lognormal_parameters(mean: float, cv: float) -> tuple[float, float]:
    """mu and sigma of the underlying normal for a lognormal with this mean and coefficient
    of variation."""
    sigma2 = np.log1p(cv ** 2)
    return float(np.log(mean) - sigma2 / 2), float(np.sqrt(sigma2))


@dataclass(frozen=True)
class Quantity:
    """What a distribution draws: its value type, whether whole, how values print in
    messages, and the clipping its lognormal and exponential kinds get by default."""
    name: str
    value: Any                      # the annotated type of one value
    whole: bool                     # token counts: rounded lognormals, geometric exponentials
    unit: str                       # appended to values in messages
    values_rule: str                # the message when empirical values break the bound
    positive: bool                  # values > 0 (else >= 0)
    mean: Any                       # the annotated type of a lognormal's mean
    exponential_mean: Any           # and of an exponential's
    lognormal_clip: tuple = (None, None)
    exponential_max: Any = None
    shorthand: tuple = (int,)       # YAML scalars read as a fixed value

    def show(self, x) -> str:
        return f"{x}" if self.whole else f"{x:g}{self.unit}"


def _family(q: Quantity):
    """The YAML type that accepts any kind of distribution of quantity q, and its fixed kind."""
    def shorthand(v):
        scalar = isinstance(v, q.shorthand) and not isinstance(v, bool)
        return {"dist": "fixed", "value": v} if scalar else v

    simple = (*_parametric(q), _empirical(q))
    any_simple = Union[simple]  # noqa: UP007 -- a tuple built at run time, which `X | Y` cannot spell
    kinds = (*simple, _mixture(q, Annotated[Annotated[any_simple, Field(discriminator="dist")],
                                            BeforeValidator(shorthand)]))
    for cls, kind in zip(kinds, KINDS, strict=True):
        cls.__name__ = cls.__qualname__ = f"{kind.capitalize()}{q.name}"
    any_kind = Union[kinds]  # noqa: UP007 -- a tuple built at run time, which `X | Y` cannot spell
    return Annotated[Annotated[any_kind, Field(discriminator="dist")], BeforeValidator(shorthand)], kinds[0]


def _parametric(q: Quantity) -> tuple:
    V = q.value

    class Fixed(Spec):
        quantity: ClassVar[Quantity] = q
        dist: Literal["fixed"] = Field(default="fixed", description="the kind (a bare value is short for it)")
        value: V = Field(description="the value every draw takes")

    class Uniform(Spec):
        quantity: ClassVar[Quantity] = q
        dist: Literal["uniform"] = Field(description="the kind of distribution")
        min: V = Field(description="the lowest value")
        max: V = Field(description="the highest value (whole quantities: included)")

        @model_validator(mode="after")
        def _ordered(self):
            if self.max < self.min:
                raise ValueError(f"max ({q.show(self.max)}) is below min ({q.show(self.min)})")
            return self

    class Lognormal(Spec):
        """Lognormal with the given mean and coefficient of variation, clipped to [min, max]."""
        quantity: ClassVar[Quantity] = q
        dist: Literal["lognormal"] = Field(description="the kind of distribution")
        mean: q.mean = Field(description="the mean before clipping")
        cv: float = Field(gt=0, le=1000, description="coefficient of variation: standard deviation / mean")
        min: V | None = Field(default=q.lognormal_clip[0], description="draws below are raised to it")
        max: V | None = Field(default=q.lognormal_clip[1], description="draws above are lowered to it")

    class Exponential(Spec):
        """Whole quantities: geometric on 1, 2, ... with the given mean."""
        quantity: ClassVar[Quantity] = q
        dist: Literal["exponential"] = Field(description="the kind of distribution")
        mean: q.exponential_mean = Field(description="the mean before clipping")
        max: V | None = Field(default=q.exponential_max, description="draws above are lowered to it")

    return Fixed, Uniform, Lognormal, Exponential


def _empirical(q: Quantity):
    low = 1 if q.whole else 0.0

    class Empirical(Spec):
        """Draws from listed values (with optional weights) or a column of a CSV file."""
        quantity: ClassVar[Quantity] = q
        dist: Literal["empirical"] = Field(description="the kind of distribution")
        values: list[q.value] | None = Field(default=None, description="the values to draw from")
        weights: list[float] | None = Field(default=None, description="one per value; none: equally likely")
        path: str | None = Field(default=None, description="or: a CSV file (relative to the file that names it)")
        column: str | None = Field(default=None, description="the CSV column to draw from")

        @model_validator(mode="after")
        def _one_source(self):
            if (self.values is None) == (self.path is None):
                raise ValueError("give either values: [...] or path: FILE.csv with column: NAME")
            if self.path is not None and not self.column:
                raise ValueError("path: needs column: naming the CSV column to draw from")
            if self.values is not None:
                if not self.values or min(self.values) < low or (q.positive and min(self.values) <= 0):
                    raise ValueError(q.values_rule)
                _check_weights(self.weights, len(self.values), "value")
            return self

    return Empirical


def _mixture(q: Quantity, part):
    class Mixture(Spec):
        """Draws from `parts` in proportion to `weights` (e.g. short voice commands and a few
        long recordings)."""
        quantity: ClassVar[Quantity] = q
        dist: Literal["mixture"] = Field(description="the kind of distribution")
        weights: list[float] = Field(min_length=1, description="one per part: how often each is drawn from")
        parts: list[part] = Field(min_length=1, description="distributions of the same quantity")

        @model_validator(mode="after")
        def _matched(self):
            _check_weights(self.weights, len(self.parts), "part")
            return self

    return Mixture


def _check_weights(weights, n: int, what: str) -> None:
    if weights is not None and (len(weights) != n or min(weights) < 0 or sum(weights) <= 0):
        raise ValueError(f"weights must be non-negative, one per {what}, with a positive sum")


POSITIVE_SECONDS = Annotated[Seconds, Field(gt=0)]
TOKENS = Quantity("Length", Tokens, whole=True, unit="", positive=True,
                  values_rule="values must be a non-empty list of positive token counts",
                  mean=Annotated[float, Field(gt=0, le=MAX_TOKENS)],
                  exponential_mean=Annotated[float, Field(ge=1, le=MAX_TOKENS)], lognormal_clip=(1, 1_000_000),
                  exponential_max=10_000_000)
DELAYS = Quantity("Delay", Annotated[Seconds, Field(ge=0)], whole=False, unit="s", positive=False,
                  values_rule="values must be non-negative durations", mean=POSITIVE_SECONDS,
                  exponential_mean=POSITIVE_SECONDS,
                  shorthand=(str, int, float))
MEDIA_SECONDS = Quantity("Seconds", POSITIVE_SECONDS, whole=False, unit="s", positive=True,
                         values_rule="values must be positive durations", mean=POSITIVE_SECONDS,
                         exponential_mean=POSITIVE_SECONDS,
                         lognormal_clip=(0.1, 86400.0), exponential_max=86400.0, shorthand=(str, int, float))

Length, FixedLength = _family(TOKENS)
Delay, FixedDelay = _family(DELAYS)
AudioSeconds, FixedSeconds = _family(MEDIA_SECONDS)


def draw(dist, n: int, rng: np.random.Generator) -> np.ndarray:
    """n values from a distribution: int64 for token counts, floats for seconds."""
    q, kind = dist.quantity, dist.dist
    if kind == "fixed":
        return np.full(n, dist.value, dtype=np.int64) if q.whole else np.full(n, float(dist.value))
    if kind == "uniform":
        return (rng.integers(dist.min, dist.max + 1, n, dtype=np.int64) if q.whole
                else rng.uniform(dist.min, dist.max, n))
    if kind == "lognormal":
        x = rng.lognormal(*lognormal_parameters(dist.mean, dist.cv), n)
        x = np.rint(x) if q.whole else x
        if dist.min is not None or dist.max is not None:
            x = np.clip(x, dist.min, dist.max)
        if q.whole and q.positive:    # with `min: null`, a small draw rounds to 0: no count of tokens
            x = np.maximum(x, 1)
        return x.astype(np.int64) if q.whole else x
    if kind == "exponential":
        x = rng.geometric(1.0 / dist.mean, n) if q.whole else rng.exponential(dist.mean, n)
        x = x if dist.max is None else np.minimum(x, dist.max)
        return x.astype(np.int64) if q.whole else x
    if kind == "empirical":
        if dist.values is not None:
            values = np.asarray(dist.values, dtype=np.int64 if q.whole else float)
            w = None if dist.weights is None else np.asarray(dist.weights, float) / sum(dist.weights)
        else:
            values, w = _csv_column(dist.path, dist.column, q), None
        return rng.choice(values, n, p=w)
    w = np.asarray(dist.weights, float) / sum(dist.weights)     # mixture
    which = rng.choice(len(dist.parts), n, p=w)
    out = np.empty(n, dtype=np.int64 if q.whole else float)
    for k, part in enumerate(dist.parts):
        mine = which == k
        out[mine] = draw(part, int(mine.sum()), rng)
    return out


def mean(dist) -> float:
    """The distribution's mean before clipping (an empirical CSV's, read from the file)."""
    kind = dist.dist
    if kind == "fixed":
        return float(dist.value)
    if kind == "uniform":
        return (dist.min + dist.max) / 2.0
    if kind in ("lognormal", "exponential"):
        return float(dist.mean)
    if kind == "empirical":
        values = dist.values if dist.values is not None else _csv_column(dist.path, dist.column, dist.quantity)
        w = np.ones(len(values)) if dist.weights is None else np.asarray(dist.weights, float)
        return float(np.dot(w, values) / w.sum())
    w = np.asarray(dist.weights, float) / sum(dist.weights)
    return float(sum(wk * mean(p) for wk, p in zip(w, dist.parts, strict=True)))


def _csv_column(path: str, column: str, q: Quantity) -> np.ndarray:
    frame = pd.read_csv(path)
    if column not in frame.columns:
        raise ValueError(f"{path} has no column '{column}'; columns: {', '.join(frame.columns)}")
    if q.whole:
        return np.maximum(frame[column].to_numpy(np.int64), 1)
    return frame[column].to_numpy(float)
