"""Latency targets (service-level objectives) a scenario or a tenant sets."""
from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .base import Spec
from .errors import did_you_mean
from .units import UnitError, parse_duration

SLO_METRICS = ("ttft", "tpot", "e2e", "queue_wait")
SLO_STATS = ("p50", "p90", "p99", "mean")


class Slo(Spec):
    """Latency targets, e.g. ttft_p99: 2s. A request meets the SLO when every metric is within target."""

    targets: dict[str, float] = Field(default_factory=dict, description="`<metric>_<stat>` -> seconds, collected "
                                                                       "from the keys written beside it")

    @model_validator(mode="before")
    @classmethod
    def _collect(cls, data):
        if not isinstance(data, dict) or "targets" in data:
            return data
        valid = [f"{m}_{s}" for m in SLO_METRICS for s in SLO_STATS]
        targets = {}
        for key, value in data.items():
            if key not in valid:
                raise PydanticCustomError("unknown_field", "unknown field '{field}'{hint}",
                                          {"field": key, "hint": did_you_mean(str(key), valid, "SLO targets")})
            try:
                targets[key] = parse_duration(value)
            except UnitError as exc:
                raise ValueError(f"{key}: {exc}") from None
            if not targets[key] > 0 or targets[key] == float("inf"):
                raise ValueError(f"{key}: a latency target must be a positive, finite duration, got {value!r}")
        return {"targets": targets}
