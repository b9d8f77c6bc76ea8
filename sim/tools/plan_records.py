"""What a plan search records: each simulation it ran (`Trial`, read from the run's summary),
the answer for one layout of a device (`Layout`) and a device's layouts (`DevicePlan`)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..results.provenance import timing_text
from ..spec.units import duration_or_dash

# size-only rejections: more replicas do not help
PERMANENT = ("exceeds_context", "exceeds_kv_cache", "prompt_exceeds_batch_tokens")


@dataclass
class Trial:
    """One simulation the search ran."""
    device: str
    precision: str
    tp: int
    pp: int
    replicas: int
    rate: float | None
    met: bool
    why: str
    ttft_p99: float | None
    tpot_p99: float | None
    usd_per_hour: float | None
    usd_per_m_tokens: float | None
    wall_s: float
    seed: int = 0
    pricing: str = ""
    optimism: float = 0.0               # the model interval of this layout's class (sim.catalog.accuracy)
    half_width: float = 0.0
    interval_basis: str = ""
    timing: str = ""                    # its pools' timing sources (sim.results.provenance.timing_text)

    @property
    def devices(self) -> int:
        return self.replicas * self.tp * self.pp

    def replica_range(self) -> tuple[int, int]:
        """The replicas a real fleet needs if it runs as much slower or faster than simulated as
        the 90 % interval of this class allows (capacity scales with the speed)."""
        lo = math.exp(self.optimism - self.half_width) * self.replicas
        hi = math.exp(self.optimism + self.half_width) * self.replicas
        return max(1, math.ceil(lo - 1e-9)), max(1, math.ceil(hi - 1e-9))

    def device_range(self) -> tuple[int, int]:
        lo, hi = self.replica_range()
        return lo * self.tp * self.pp, hi * self.tp * self.pp

    def rate_range(self) -> tuple[float, float] | None:
        """The load a real fleet sustains, if it runs as much slower or faster than simulated as
        the 90 % interval allows (the most load scales with the speed)."""
        if self.rate is None:
            return None
        return (self.rate * math.exp(-self.optimism - self.half_width),
                self.rate * math.exp(-self.optimism + self.half_width))

    def usd_range(self) -> tuple[float, float] | None:
        if self.usd_per_hour is None:
            return None
        lo, hi = self.replica_range()
        return self.usd_per_hour * lo / self.replicas, self.usd_per_hour * hi / self.replicas


def _miss_reason(s: dict) -> str:
    """Why a run's summary misses the SLO ('' when it meets it)."""
    req = s["requests"]
    why = ""
    permanent = {k: v for k, v in req["rejected_by_reason"].items() if k in PERMANENT}
    if permanent:
        why = "rejected " + ", ".join(f"{v} {k}" for k, v in permanent.items())
    elif not all(r["met"] for r in s["slo"]["results"].values()):
        why = "; ".join(f"{k} {duration_or_dash(r['value'])} > {duration_or_dash(r['target'])}"
                        for k, r in s["slo"]["results"].items() if not r["met"])
    elif req["rejected"] or req["in_flight"]:
        why = f"{req['rejected']} rejected, {req['in_flight']} left in flight"
    return why


def trial_of(s: dict, device: str, precision: str, tp: int, pp: int, replicas: int, rate: float | None,
             t0: float, seed: int) -> Trial:
    """The trial a run's summary makes, its wall time counted from `t0`."""
    why = _miss_reason(s)
    lat = s["latency_s"]
    model = s["intervals"]["model"]
    basis = s["intervals"]["basis"].split("; batch means")[0].split("; no batch means")[0]
    return Trial(device, precision, tp, pp, replicas, rate, not why, why, lat["ttft"]["p99"], lat["tpot"]["p99"],
                 s["cost"]["usd_per_hour"], s["cost"]["usd_per_m_tokens"], time.perf_counter() - t0, seed,
                 s["cost"]["pricing"], model["median_optimism"], model["half_width"], basis, timing_text(s))


@dataclass
class Layout:
    """A device with one parallelism, and what the search found for it."""
    device: str
    precision: str
    tp: int
    pp: int
    best: Trial | None = None
    below: Trial | None = None          # one step fewer replicas (missed)
    note: str = ""
    seeds_checked: list[int] = field(default_factory=list)   # the seeds the answer meets the SLO with


@dataclass
class DevicePlan:
    device: str
    layouts: list[Layout] = field(default_factory=list)
    note: str = ""                       # why nothing fits, or which precision stood in

    @property
    def best(self) -> Layout | None:
        ok = [lay for lay in self.layouts if lay.best is not None]
        return min(ok, key=_price) if ok else None


def _price(lay: Layout):
    b = lay.best
    return (b.usd_per_hour if b.usd_per_hour is not None else float("inf"), b.devices)


__all__ = ["Trial", "Layout", "DevicePlan", "trial_of"]
