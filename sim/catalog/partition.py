"""Hardware partitions: a pool's replicas on MIG slices of a GPU rather than whole GPUs.

A pool with `partition: 1g.10gb` (or `partition: {profile: 1g.10gb}`) counts slices in
`count:`. Each replica runs on one slice, which is a small GPU of its own (NVIDIA MIG): the
profile's share of the SMs computes at that share of every peak FLOP/s, and its memory
slices hold that share of the memory, its bandwidth and the L2 cache. The catalog's
`partitions.yaml` gives each device's profiles with their sources.

A slice has no NVLink to other slices, so tensor, pipeline and expert parallelism over
slices are refused. It costs, in price and in power, the share of its GPU that it takes:
the larger of its share of the compute slices and of the memory slices (a 1g.20gb slice
holds a quarter of the memory, so four fill a GPU however few SMs they use).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from .. import catalog
from ..spec.base import Spec
from ..spec.errors import Problem, ScenarioError, did_you_mean, format_path
from .hardware import DeviceSpec, NodeSpec, PeakFlops


class Partition(Spec):
    """The MIG profile a pool's replicas each run on, e.g. 1g.10gb."""

    profile: str = Field(description="the profile's name in the device's partitions (a bare name is short for "
                                     "{profile: NAME})")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        return {"profile": data} if isinstance(data, str) else data


class Profile(Spec):
    compute: int = Field(ge=1, description="compute slices")
    memory: int = Field(ge=1, description="memory slices")
    sms: int | None = Field(default=None, ge=1, description="SMs the instance gets")
    instances: int = Field(ge=1, description="how many fit on one GPU")


class Scheme(Spec):
    """How one device partitions: its slices, its SMs, and its profiles by name."""

    kind: Literal["mig"]
    compute_slices: int = Field(ge=1)
    memory_slices: int = Field(ge=1)
    sms: int | None = Field(default=None, ge=1)
    profiles: dict[str, Profile]
    sources: dict[str, str] = Field(default_factory=dict)

    def compute_fraction(self, p: Profile) -> float:
        """Share of the whole chip's compute: its SMs over the chip's, else its compute slices."""
        if p.sms is not None and self.sms is not None:
            return p.sms / self.sms
        return p.compute / self.compute_slices

    def memory_fraction(self, p: Profile) -> float:
        return p.memory / self.memory_slices

    def cost_share(self, p: Profile) -> float:
        """Share of the GPU a slice takes up, for price and power: whichever of compute and
        memory slices it uses the larger share of is what the GPU runs out of first."""
        return max(p.compute / self.compute_slices, p.memory / self.memory_slices)


def scheme_for(device_key: str) -> Scheme | None:
    """The partition scheme of a catalog device (an inline `{base: X, ...}` device: X's)."""
    raw = catalog.partition_entries().get(device_key.rstrip("*"))
    if raw is None:
        return None
    try:
        return Scheme.model_validate(raw)
    except ValidationError as exc:   # a broken catalog entry: name it, as for devices
        err = exc.errors(include_url=False)[0]
        raise ScenarioError.one(catalog.partition_loc(device_key.rstrip("*")),
                                f"partitions.{device_key}.{format_path(tuple(err['loc']))}", err["msg"]) from None


def slice_device(device: DeviceSpec, scheme: Scheme, name: str) -> DeviceSpec:
    """One slice of `device` as a device of its own: its shares of compute, memory, bandwidth
    and L2; no scale-up link; its share of the GPU's power and price (and of its server's)."""
    p = scheme.profiles[name]
    c, m, s = scheme.compute_fraction(p), scheme.memory_fraction(p), scheme.cost_share(p)
    peaks = {k: v * c for k, v in device.peak_flops.model_dump().items() if v is not None}
    node = device.node
    if node is not None:
        node = NodeSpec(devices=node.devices, power=_times(node.power, s), idle_power=_times(node.idle_power, s),
                        list_price_usd=_times(node.list_price_usd, s), sources=node.sources)
    sources = dict(device.sources)
    sources["partition"] = "; ".join(f"{k}: {v}" for k, v in scheme.sources.items())
    return device.model_copy(update={
        "name": f"{device.name} MIG {name}",
        "memory": device.memory * m,
        "memory_bandwidth": device.memory_bandwidth * m,
        "sram": _times(device.sram, m),
        "peak_flops": PeakFlops(**peaks),
        "scale_up_bandwidth": None, "scale_up_latency": None, "scale_up_eff": None,
        "tdp": _times(device.tdp, s),
        "idle_power": _times(device.idle_power, s),
        "list_price_usd": _times(device.list_price_usd, s),
        "hourly_usd": _times(device.hourly_usd, s),
        "node": node,
        "kernel_tables": None,    # the whole GPU's measurements do not time a slice
        "sources": sources,
    })


def resolve(pool, i: int, device: DeviceSpec, key: str, src) -> tuple[DeviceSpec, str]:
    """Pool i's device cut to its partition's profile, and the key it is known by
    (`nvidia-h100-sxm MIG 1g.10gb`); errors name the field and the valid profiles."""
    path = ("fleet", i, "partition") + (("profile",) if isinstance(_raw(src, i), dict) else ())
    name = pool.partition.profile
    scheme = scheme_for(_catalog_key(pool))
    if scheme is None:
        having = sorted(catalog.partition_entries())
        raise ScenarioError.one(src.loc_of(path), format_path(path),
                                f"{key} has no hardware partitions in the catalog (sim/catalog/partitions.yaml); "
                                f"devices with MIG profiles: {', '.join(having)}")
    if name not in scheme.profiles:
        raise ScenarioError.one(src.loc_of(path), format_path(path), f"unknown MIG profile '{name}' for {key}"
                                + did_you_mean(name, scheme.profiles, "profiles"))
    serve = pool.serve
    if serve.tp * serve.pp * serve.ep > 1:
        bad = next(f for f in ("tp", "pp", "ep") if getattr(serve, f) > 1)
        where = ("fleet", i, "serve", bad)
        raise ScenarioError.one(src.loc_of(where), format_path(where),
                                f"a MIG slice has no NVLink to other slices, so a replica runs on one slice: "
                                f"{bad} must be 1 on partition {name} (use a larger profile, or whole GPUs)")
    return slice_device(device, scheme, name), f"{key} MIG {name}"


def problems(pools, src) -> list[Problem]:
    """Sliced pools' cost rule, in their assumptions; weights loaded over the fabric are not
    modelled for slices (each slice of a GPU would load its own copy over one link)."""
    out = []
    for i, pool in enumerate(pools):
        part = pool.spec.partition
        if part is None:
            continue
        scheme = scheme_for(_catalog_key(pool.spec))
        p = scheme.profiles[part.profile]
        pool.deployment.assumptions.append(
            f"{pool.device_key}: a slice has {p.sms or p.compute}/{scheme.sms or scheme.compute_slices} of the "
            f"GPU's {'SMs' if p.sms else 'compute slices'} and {p.memory}/{scheme.memory_slices} of its memory, "
            f"memory bandwidth and L2, no NVLink; it costs {scheme.cost_share(p):.3g} of the GPU's price and power "
            f"(the larger of its compute-slice and memory-slice shares)")
        if pool.spec.serve.weights != "preloaded":
            where = ("fleet", i, "serve", "weights")
            out.append(Problem(src.loc_of(where), format_path(where), "loading weights over the fabric is not "
                               "modelled for MIG slices; use weights: preloaded"))
    return out


def accelerators(pool) -> int:
    """Accelerators a pool's slices fill: count / slices per GPU, rounded up (a pool's slices
    fill GPUs of their own; pools do not share a GPU's leftover slices)."""
    per = slices_per_gpu(pool)
    return math.ceil(pool.count / per)


def slices_per_gpu(pool) -> int:
    return scheme_for(_catalog_key(pool)).profiles[pool.partition.profile].instances


def _catalog_key(pool) -> str:
    """The catalog device a pool names, directly or as the `base:` of an inline device."""
    return pool.device if isinstance(pool.device, str) else str(pool.device.get("base", ""))


def _times(value, share):
    return None if value is None else value * share


def _raw(src, i):
    fleet = src.data.get("fleet") if isinstance(src.data, dict) else None
    return fleet[i].get("partition") if isinstance(fleet, list) and isinstance(fleet[i], dict) else None
