"""Accelerators as datasheets describe them, plus measured efficiency factors."""
from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator

from ..spec.base import Bytes, BytesPerSecond, FlopsPerSecond, Seconds, Spec, Watts

Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "fp4"]
PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8", "fp4")

BYTES_PER_ELEMENT = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5}
# Which peak-FLOP/s entry a GEMM at this precision runs on (fp16 and bf16 share tensor-core rates).
PEAK_KEY = {"fp32": "fp32", "fp16": "bf16", "bf16": "bf16", "fp8": "fp8", "int8": "int8", "fp4": "fp4"}


class PeakFlops(Spec):
    """Dense (no structured sparsity) peak per precision, per chip."""

    fp32: FlopsPerSecond | None = Field(default=None, description="FP32 peak; none: not supported")
    bf16: FlopsPerSecond | None = Field(default=None, description="BF16 (and FP16) tensor peak")
    fp8: FlopsPerSecond | None = Field(default=None, description="FP8 tensor peak")
    int8: FlopsPerSecond | None = Field(default=None, description="INT8 tensor peak (integer ops/s)")
    fp4: FlopsPerSecond | None = Field(default=None, description="FP4 tensor peak")

    def supported(self) -> list[str]:
        out = [p for p in ("fp32", "bf16", "fp8", "int8", "fp4") if getattr(self, p) is not None]
        if "bf16" in out:
            out.insert(out.index("bf16") + 1, "fp16")
        return out

    def for_precision(self, precision: str) -> float | None:
        return getattr(self, PEAK_KEY[precision])


class RuntimeSpec(Spec):
    """Host times of the device's own serving stack, which replace an engine preset's (measured
    on the CUDA path) when an LLM engine runs on this device: XLA on a TPU, the Neuron
    runtime on Trainium and Inferentia. Fields left out keep the preset's."""

    iteration_overhead: Seconds | None = Field(default=None, ge=0, description="host time per iteration")
    host_per_seq: Seconds | None = Field(default=None, ge=0, description="host time per sequence in the batch")
    overlap: bool | None = Field(default=None, description="the host prepares the next step while the device runs")
    launch: Seconds | None = Field(default=None, ge=0, description="host time to launch one kernel eagerly")

    def values(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class NodeSpec(Spec):
    """The server a device sits in, as far as power and price go: what it adds beyond its
    accelerators (CPUs, NICs, switches, fans, power-supply losses; chassis price)."""

    devices: int = Field(ge=1, description="accelerators per server")
    power: Watts | None = Field(default=None, ge=0, description="non-accelerator draw at full load, per server")
    idle_power: Watts | None = Field(default=None, ge=0,
                                     description="non-accelerator draw when idle; none: the full-load figure")
    list_price_usd: float | None = Field(default=None, ge=0, description="server price without its accelerators")
    sources: dict[str, str] = Field(default_factory=dict, description="field -> where its figure comes from")

    def watts(self, active: float) -> float | None:
        """Per-server overhead draw when its accelerators are active a fraction `active` of the time."""
        if self.power is None:
            return None
        idle = self.power if self.idle_power is None else self.idle_power
        return idle + (self.power - idle) * active


class GemmTile(Spec):
    """One rule of an 8-bit GEMM kernel's tile dispatch: GEMMs of up to `rows` rows and `cols`
    output columns (none: any number) compute their output in tiles of `tile_rows` x
    `tile_cols` per multiprocessor. A GEMM takes the first rule that serves it."""

    rows: int | None = Field(default=None, ge=1, description="the most rows this rule serves; none: any")
    cols: int | None = Field(default=None, ge=1, description="the most output columns (n) this rule serves; "
                                                             "none: any")
    tile_rows: int = Field(ge=1, description="output rows of one multiprocessor's tile")
    tile_cols: int = Field(ge=1, description="output columns of one multiprocessor's tile")

    def bounds(self) -> tuple[float, float]:
        return (self.rows or float("inf"), self.cols or float("inf"))


class KernelFloors(Spec):
    """The least time a kernel of each kind takes on the device, however small its work
    (launch and set-up inside a captured graph, first and last tiles): what small kernels cost
    beyond their FLOPs and bytes."""

    gemm: Seconds | None = Field(default=None, ge=0, description="one GEMM")
    elementwise: Seconds | None = Field(default=None, ge=0, description="one elementwise kernel (norms, "
                                                                       "activations, quantization)")
    attention: Seconds | None = Field(default=None, ge=0, description="one attention call (per layer)")
    allreduce: Seconds | None = Field(default=None, ge=0, description="a small all-reduce over the scale-up link")


class DeviceSpec(Spec):
    """One accelerator chip. Bandwidths are per chip; scale-up bandwidth is per direction.

    `memory` is where weights and KV cache live: HBM for most chips; for SRAM-only chips
    (`memory_type: sram`, Groq- or Cerebras-class) it is the on-chip SRAM, and a large model
    must be pipelined over as many chips as its weights need."""

    name: str = Field(description="the device's full name, in results")
    vendor: str = Field(description="who makes it (nvidia, amd, google, ...)")
    kind: Literal["gpu", "tpu", "asic"] = Field(description="the kind of chip")
    memory: Bytes = Field(gt=0, description="memory for weights and KV cache, per chip")
    memory_type: Literal["hbm", "gddr", "lpddr", "sram"] = Field(
        default="hbm", description="sram: an SRAM-only chip, whose memory is its on-chip SRAM")
    memory_bandwidth: BytesPerSecond = Field(gt=0, description="peak memory bandwidth per chip")
    sram: Bytes | None = Field(default=None, ge=0, description="on-chip cache (L2 or SRAM)")
    peak_flops: PeakFlops = Field(description="dense peak FLOP/s per precision, per chip")
    scale_up_bandwidth: BytesPerSecond | None = Field(default=None, gt=0, description="scale-up link (NVLink, "
                                                                                     "xGMI, ICI) per chip, per "
                                                                                     "direction")
    scale_up_latency: Seconds | None = Field(default=None, ge=0, description="per-hop latency of the ring "
                                                                             "all-reduce model")
    tdp: Watts | None = Field(default=None, gt=0, description="power at full load (thermal design power)")
    idle_power: Watts | None = Field(default=None, ge=0, description="draw with an engine loaded and no request "
                                                                     "running; none: 20% of tdp")
    list_price_usd: float | None = Field(default=None, ge=0, description="purchase price per chip, for pricing: own")
    hourly_usd: float | None = Field(default=None, ge=0, description="rental price per chip-hour, for pricing: "
                                                                     "rent")
    vector_flops: FlopsPerSecond | None = Field(
        default=None, gt=0, description="peak FP32 FLOP/s of the vector (non-tensor) units, on which an "
                                        "8-bit GEMM's per-token input quantization and output rescaling run "
                                        "(CUDA kernels); none: both at memory speed")
    multiprocessors: int | None = Field(
        default=None, ge=1, description="streaming multiprocessors (compute units) a kernel's thread blocks "
                                        "spread over; read by the 8-bit GEMM's per-token quantization blocks")
    gemm8_tiles: list[GemmTile] | None = Field(
        default=None, description="the serving framework's 8-bit GEMM tile per multiprocessor by rows and "
                                  "columns, smallest first; none: 8-bit GEMMs timed without wave quantization")
    exp_rate: float | None = Field(
        default=None, gt=0, description="exponentials per second of the special-function units, which run "
                                        "attention's softmax; none: attention_eff covers the softmax")
    compute_eff: float = Field(gt=0, le=1, description="achieved/peak for large dense bf16 GEMMs")
    compute_eff_by_precision: dict[Precision, float] = Field(
        default_factory=dict, description="achieved/peak GEMM efficiency where a precision differs from bf16")
    attention_eff: float | None = Field(default=None, gt=0, le=1,
                                        description="achieved/peak (bf16) of fused attention kernels")
    mem_eff: float = Field(gt=0, le=1, description="achieved/peak memory bandwidth (a STREAM-like benchmark)")
    scale_up_eff: float | None = Field(default=None, gt=0, le=1,
                                       description="achieved all-reduce bus bandwidth / scale_up_bandwidth")
    kernel_floors: KernelFloors | None = Field(default=None, description="the least time a kernel of each kind "
                                                                        "takes")
    attention_half_length: float | None = Field(
        default=None, gt=0, description="prompt length at which prefill attention reaches half its top efficiency")
    node: NodeSpec | None = Field(default=None, description="the server around the chips: its power and price")
    runtime: RuntimeSpec | None = Field(default=None, description="host times of the device's own serving stack")
    default_engine: Literal["vllm", "sglang", "trtllm", "native"] | None = Field(
        default="vllm", description="the serving engine a pool on this device runs when it names none")
    kernel_tables: str | None = Field(
        default=None, description="system in aiconfigurator-core's measured kernel database that times this device "
                                  "(e.g. h100_sxm); none: the analytical model")
    sources: dict[str, str] = Field(default_factory=dict, description="field -> where its figure comes from")

    @field_validator("peak_flops")
    @classmethod
    def _some_precision(cls, v: PeakFlops) -> PeakFlops:
        if not v.supported():
            raise ValueError("peak_flops needs at least one precision (bf16, fp8, int8, fp4, fp32)")
        return v

    @field_validator("gemm8_tiles")
    @classmethod
    def _tile_rules_ordered_with_catch_all(cls, v: list[GemmTile] | None) -> list[GemmTile] | None:
        if v is None:
            return v
        bounds = [t.bounds() for t in v]
        if not bounds or bounds[-1] != (float("inf"), float("inf")):
            raise ValueError("the last tile rule must leave rows and cols out: it serves every GEMM the others do not")
        if any(a >= b for a, b in pairwise(bounds)):
            raise ValueError("tile rules must be in increasing rows, and within the same rows in increasing cols")
        return v

    def gemm_eff(self, precision: str) -> float:
        """GEMM efficiency at a precision: its own measured figure, else the bf16 one."""
        return self.compute_eff_by_precision.get(precision, self.compute_eff)

    def attention_rate(self) -> float:
        """Achievable FLOP/s of fused attention (run at 16-bit): its own measured efficiency,
        else the GEMM one."""
        peak = self.peak_flops.bf16 or max(v for v in (self.peak_flops.fp8, self.peak_flops.int8,
                                                         self.peak_flops.fp32) if v)
        return peak * (self.attention_eff if self.attention_eff is not None else self.compute_eff)

    def idle_watts(self) -> float | None:
        """Idle draw; without a measured figure, 20% of TDP (the summary lists this assumption)."""
        if self.idle_power is not None:
            return self.idle_power
        return None if self.tdp is None else 0.2 * self.tdp
