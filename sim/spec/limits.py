"""Sizes no capacity question needs, refused up front with a message that says how to raise them.

A typo (a rate of 1e9/s, a duration of 1e30 s, a YAML alias bomb) would otherwise run for
hours or exhaust memory. Each limit can be raised with an environment variable, e.g.
`DCSIM_MAX_REQUESTS=500000000 dcsim run big.yaml`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    name: str           # environment variable that raises it
    default: float
    what: str           # what it counts, for the message

    @property
    def value(self) -> float:
        raw = os.environ.get(self.name)
        if raw is None:
            return self.default
        try:
            return float(raw)
        except ValueError:
            return self.default

    def message(self, found: float | str) -> str:
        return (f"{self.what}: {found}, over the limit of {self.value:,.0f} (a capacity question never needs "
                f"that much: a typo?); to go beyond it, set the environment variable {self.name}")


FILE_BYTES = Limit("DCSIM_MAX_FILE_BYTES", 64 * 2 ** 20, "the file's size in bytes")
YAML_VALUES = Limit("DCSIM_MAX_YAML_VALUES", 200_000, "the number of values the YAML expands to (aliases included)")
YAML_DEPTH = Limit("DCSIM_MAX_YAML_DEPTH", 64, "the YAML's nesting depth")
REQUESTS = Limit("DCSIM_MAX_REQUESTS", 100_000_000, "the expected number of requests (rate x duration)")
DEVICES = Limit("DCSIM_MAX_DEVICES", 1_000_000, "the number of devices")
SWEEP_POINTS = Limit("DCSIM_MAX_SWEEP_POINTS", 100_000, "the number of sweep points")
DURATION_S = Limit("DCSIM_MAX_DURATION_S", 366 * 86400, "the simulated duration in seconds")
