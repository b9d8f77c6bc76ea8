"""The analytical operator model held against every measured kernel of every device.

For each catalog device with measured tables, every GEMM (16- and 8-bit), context and
generation attention and all-reduce its serving framework measured is timed by
`sim.timing.analytical` from the device's datasheet and microbenchmark figures alone, and
compared with the measurement. The model's shape rules (`sim.timing.analytical`: kernel
floors, the GEMM's tail and overlap, 8-bit quantization and waves, attention's length scale, K/V
re-reads, softmax overlap and block set-up) were set from H100's tables, and L40S's
efficiencies from its own (no independent microbenchmark of it was found), so those two are
calibration devices; the others are held out. `make validate` prints the summary per device and family.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from .. import catalog
from ..catalog.hardware import DeviceSpec
from . import database as db
from .analytical import Analytical
from .measured import ATTENTION_KERNELS, GEMM_DTYPE, attention_rows, gemm_rows
from .operators import AllReduce, Attention, Gemm

# the shape rules were derived from H100's tables; L40S's efficiencies and floors come from its own
CALIBRATION_DEVICES = ("nvidia-h100-sxm", "nvidia-l40s")
FRAMEWORK = "vllm"
MS = 1e-3


@dataclass
class Family:
    device: str
    family: str          # gemm bf16, gemm fp8, context attention, generation attention, all-reduce
    role: str            # calibration | held-out
    errors: np.ndarray   # (predicted - measured) / measured, one per measured kernel

    def row(self) -> dict:
        e = self.errors
        return {"device": self.device, "family": self.family, "role": self.role, "kernels": int(len(e)),
                "median_abs_error": float(np.median(np.abs(e))) if len(e) else None,
                "median_error": float(np.median(e)) if len(e) else None,
                "p90_abs_error": float(np.percentile(np.abs(e), 90)) if len(e) else None}


def devices() -> list[str]:
    """Catalog devices whose measured tables are installed."""
    if db.data_root() is None:
        return []
    out = []
    for key, raw in catalog.device_entries().items():
        system = raw.get("kernel_tables")
        if system and db.versions(system, "gemm", FRAMEWORK):
            out.append(key)
    return out


def check(key: str) -> list[Family]:
    dev = DeviceSpec.model_validate(catalog.device_entries()[key])
    role = "calibration" if key in CALIBRATION_DEVICES else "held-out"
    system = dev.kernel_tables
    out = []
    for precision in ("bf16", "fp8"):
        if precision not in dev.peak_flops.supported():
            continue
        errs = _gemm(dev, system, precision)
        if len(errs):
            out.append(Family(key, f"gemm {precision}", role, errs))
    for kind in ("context", "generation"):
        errs = _attention(dev, system, kind)
        if len(errs):
            out.append(Family(key, f"{kind} attention", role, errs))
    errs = _allreduce(dev, system)
    if len(errs):
        out.append(Family(key, "all-reduce", role, errs))
    return out


def _latest(system: str, family: str, table: str):
    found = db.newest_with(system, family, FRAMEWORK, table, None)
    return None if found is None else found[1]


def _gemm(dev: DeviceSpec, system: str, precision: str) -> np.ndarray:
    frame = _latest(system, "gemm", "gemm_perf")
    if frame is None:
        return np.zeros(0)
    rows = gemm_rows(frame, GEMM_DTYPE[precision])
    if not len(rows):
        return np.zeros(0)
    model = Analytical(dev, precision)
    errs = []
    for (n, k), group in rows.groupby(["n", "k"]):
        predicted = model.gemm(group["m"].to_numpy(float), Gemm("gemm", int(n), int(k), 1.0))
        errs.append(predicted / (group["latency"].to_numpy(float) * MS) - 1.0)
    return np.concatenate(errs)


def _attention(dev: DeviceSpec, system: str, kind: str) -> np.ndarray:
    frame = _latest(system, "attention", f"{kind}_attention_perf")
    if frame is None:
        return np.zeros(0)
    rows = attention_rows(frame[frame["kv_cache_dtype"] == "bfloat16"], ATTENTION_KERNELS[FRAMEWORK])
    model = Analytical(dev, "bf16")
    fn = model.context_attention if kind == "context" else model.generation_attention
    errs = []
    for (heads, kv, hd), group in rows.groupby(["num_heads", "num_key_value_heads", "head_dim"]):
        att = Attention(int(heads), int(kv), int(hd), "bf16", 1)
        length = group["isl"].to_numpy(float) if kind == "context" else (group["isl"] + group["step"]).to_numpy(float)
        predicted = fn(group["batch_size"].to_numpy(float), length, att)
        errs.append(predicted / (group["latency"].to_numpy(float) * MS) - 1.0)
    return np.concatenate(errs) if errs else np.zeros(0)


def _allreduce(dev: DeviceSpec, system: str) -> np.ndarray:
    if dev.scale_up_bandwidth is None:
        return np.zeros(0)
    frame = _latest(system, "comm", "custom_allreduce_perf")
    if frame is None:
        return np.zeros(0)
    if "backend" in frame:
        frame = frame[frame["backend"].str.endswith("graph")]
    model = Analytical(dev, "bf16")
    errs = []
    for ranks, group in frame.groupby("num_gpus"):
        elements = group["message_size"].to_numpy(float)
        predicted = model.allreduce(elements, AllReduce("allreduce", 2.0, int(ranks), 1.0))
        errs.append(predicted / (group["latency"].to_numpy(float) * MS) - 1.0)
    return np.concatenate(errs) if errs else np.zeros(0)


def run() -> list[Family]:
    return [f for key in devices() for f in check(key)]


def headline(families: list[Family]) -> dict:
    """Median |error| over every held-out measured kernel, and per family's medians."""
    held = [f for f in families if f.role == "held-out"]
    errs = np.concatenate([np.abs(f.errors) for f in held]) if held else np.zeros(0)
    medians = [float(np.median(np.abs(f.errors))) for f in held if len(f.errors)]
    return {"kernels": int(len(errs)), "median_abs_error": float(np.median(errs)) if len(errs) else None,
            "median_of_family_medians": statistics.median(medians) if medians else None}
