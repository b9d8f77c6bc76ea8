"""The sweep file's fields (`SweepSpec`, format in `sim.tools.sweep`): its axes, each a list or
a range of values, and the checks across them that no single field can make."""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from ..spec import limits
from ..spec.base import Name, Spec


class Range(Spec):
    from_: float = Field(alias="from")
    to: float
    step: float = Field(gt=0)

    def count(self) -> int:
        return max(int((self.to - self.from_) / self.step + 1e-9) + 1, 0)

    def values(self) -> list[float]:
        return [_tidy(self.from_ + k * self.step) for k in range(self.count())]


class Axis(Spec):
    name: str | None = Field(default=None, description="column name (default: the path)")
    path: str = Field(description="a --set path, or 'variant'")
    values: list[Any] | None = None
    range: Range | None = None
    unit: str = Field(default="", description="appended to each value when it is set, e.g. /s or GB")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.values is None) == (self.range is None):
            raise ValueError("give an axis either values: [...] or range: {from, to, step}")
        if self.values is not None and not self.values:
            raise ValueError("values is empty")
        return self

    @property
    def label(self) -> str:
        return self.name or self.path

    def size(self) -> int:
        return len(self.values) if self.values is not None else self.range.count()

    def points(self) -> list[Any]:
        return list(self.values) if self.values is not None else self.range.values()


class SweepSpec(Spec):
    name: Name
    base: str
    variant: str | None = None
    set: dict[str, Any] = Field(default_factory=dict, description="overrides for every point")
    mode: Literal["grid", "zip"] = "grid"
    axes: list[Axis] = Field(min_length=1)
    seeds: int | list[int] | None = Field(default=None, description="a count, or the seeds")
    workers: int | None = Field(default=None, ge=1)
    cluster: str | None = None

    def problems(self) -> list[tuple[tuple, str]]:
        """What the fields cannot say alone: (path in the file, message)."""
        out = []
        sizes = [a.size() for a in self.axes]
        points = math.prod(sizes) if self.mode == "grid" else max(sizes)
        if points > limits.SWEEP_POINTS.value:    # before any list of points is made
            return [(("axes",), limits.SWEEP_POINTS.message(f"{points:,} ({' x '.join(f'{n:,}' for n in sizes)})"))]
        labels = [a.label for a in self.axes]
        for i, label in enumerate(labels):
            if labels.index(label) != i:
                out.append((("axes", i), f"two axes are named '{label}': give each a name"))
            if label in RESERVED:
                out.append((("axes", i), f"an axis may not be named '{label}' (a column of sweep.parquet); "
                                         f"give it a name: other than {', '.join(sorted(RESERVED))}"))
        if self.mode == "zip" and len(set(sizes)) > 1:
            sizes = ", ".join(f"{a.label}: {n}" for a, n in zip(self.axes, sizes, strict=True))
            out.append((("mode",), f"mode: zip takes the i-th value of every axis; they need as many values ({sizes})"))
        if isinstance(self.seeds, int) and self.seeds < 1:
            out.append((("seeds",), "a count of at least 1, or a list of seeds"))
        return out


RESERVED = {"point", "seed", "status", "error", "wall_s", "folder", "key"}


def _tidy(x: float):
    return int(x) if float(x).is_integer() else round(x, 12)


__all__ = ["Axis", "Range", "SweepSpec", "RESERVED"]
