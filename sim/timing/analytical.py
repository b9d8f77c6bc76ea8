"""Operator times from datasheet rates and microbenchmark efficiencies, shaped by size.

Each operator of `sim.timing.operators` at a number of rows: a GEMM takes its FLOPs at the
device's achievable GEMM rate and its bytes at the achievable memory bandwidth, overlapped
(8-bit weights also quantize their input and rescale their output, on the device's vector
units); an elementwise kernel its bytes; attention its matrix products (at an efficiency
that grows with the prompt's length, `attention_half_length`: the length at half the top
efficiency) and its softmax's exponentials, or its KV reads; a collective the ring (or
gather) over the scale-up link. Small kernels cost more than their work: every kernel takes
at least the device's floor for its kind (`kernel_floors`), added to its work, and a GEMM a
tail that grows with its work. `bound` says which of compute, memory or link limits an
operator, which is what a power cap (compute slows) or time slicing (everything slows) acts on.

The shape rules (floors, the GEMM's tail and overlap, 8-bit quantization's cost, attention's
length scale, K/V re-reads, softmax overlap and block set-up) come from one device's measured
kernels (H100, the calibration device) and are checked against every other device's
measurements in `sim.timing.crosscheck`.
"""
from __future__ import annotations

import numpy as np

from ..catalog.hardware import BYTES_PER_ELEMENT, DeviceSpec
from .operators import ACT_BYTES, AllGather, AllReduce, Attention, Elementwise, Experts, Gemm

COMPUTE, MEMORY, LINK = 0, 1, 2

# The shape rules below were set from one device's measured kernels (H100, the calibration
# device) and are checked against every other device's measurements by `sim.timing.crosscheck`.
#
# A GEMM costs its floor (launch and set-up: what the shortest GEMMs take), its work, and a tail
# that grows with the work up to GEMM_TAIL floors: a kernel of a few microseconds drains its tile
# pipeline almost as soon as it has filled it, a long one pays the fill and the drain in full
# (GEMM_TAIL_WORK: the work, in floors, at which the tail reaches 63% of its size). Near the ridge
# point a GEMM is neither purely compute- nor memory-bound, because its loads and its math
# overlap imperfectly: the two times combine as a p-norm (OVERLAP_NORM; the plain roofline's max
# is the limit of large p).
GEMM_TAIL = 0.5
GEMM_TAIL_WORK = 3.0
OVERLAP_NORM = 4.0

# An 8-bit GEMM quantizes its input per token (a scale per row, then each element scaled and
# rounded) and rescales its output. That work runs on the vector units and is bound by them,
# not by memory: in vLLM's measured fp8 GEMMs it costs the same time per element on H100 and
# H200 (same SMs and clock, 43% more bandwidth) and less on B200 (more vector FLOP/s). The
# quantization kernel runs one thread block per token, so its rows cost a block's time each,
# spread over the device's multiprocessors. The 8-bit path also adds a fixed cost: H100's
# smallest fp8 GEMMs take 2.4 us longer than its smallest bf16 ones. The GEMM itself is vLLM's
# CUTLASS kernel, which hands each multiprocessor whole output tiles (`gemm8_tiles`, the
# kernel's dispatch by rows), so its compute comes in whole waves (`Analytical._waves`). These
# costs are rules of vLLM's CUDA kernels: the catalog gives `vector_flops` and `gemm8_tiles`
# to NVIDIA GPUs only. The four constants are the least median error over H100's fp8 table.
QUANTIZE_FLOORS = 1.25      # elementwise floors
QUANTIZE_ROW_TIME = 0.83e-6 # one token's thread block on one multiprocessor, s
QUANTIZE_OPS = 85.0         # FP32 vector operations per input element (rows x k)
RESCALE_OPS = 8.5           # per output element (rows x n)

# Attention's matrix products run on the tensor cores at the GEMM rate, at an efficiency that
# grows with the prompt's length L as L / (L + attention_half_length). Its softmax takes one
# exponential per query-key pair and head on the special-function units (`exp_rate`: H100 has
# 989 TFLOP/s of 16-bit matrix products but 3.9 T exponentials/s, per FlashAttention-3), which
# FlashAttention overlaps with the products only in part: the two times combine as a
# SOFTMAX_OVERLAP_NORM-norm. Without an exp_rate the fused kernel's published efficiency
# (attention_eff) covers both. Query heads that share their keys and values (g per K/V head)
# reuse its tiles from L2, multi-head attention (g = 1) re-reads them: the products take
# 1 + KV_REREAD / g times as long. Each thread block (a QUERY_TILE-query tile of one head in a
# prefill, one sequence's K/V head in a decode) costs ATTENTION_BLOCK_TIME of set-up, spread
# over the multiprocessors.
SOFTMAX_OVERLAP_NORM = 1.5
KV_REREAD = 0.2
QUERY_TILE = 128
ATTENTION_BLOCK_TIME = 2.5e-6


class Analytical:
    def __init__(self, device: DeviceSpec, precision: str, torus=None, custom_allreduce: bool = True):
        self.device = device
        self.precision = precision
        self.torus = torus          # sim.fabric.topology.TorusGroup: the tensor-parallel group's collectives
        self.custom_allreduce = custom_allreduce   # the engine's own all-reduce kernel; False: NCCL's
        self.mem_rate = device.memory_bandwidth * device.mem_eff
        self.attn_rate = device.attention_rate()
        self.link_bw = (device.scale_up_bandwidth or 0.0) * (device.scale_up_eff or 1.0)
        self.link_lat = device.scale_up_latency or 0.0
        floors = device.kernel_floors
        self.floor = {kind: (getattr(floors, kind) or 0.0) if floors is not None else 0.0
                      for kind in ("gemm", "elementwise", "attention", "allreduce")}
        self.half_length = device.attention_half_length or 0.0
        self.vector_rate = device.vector_flops or 0.0
        self.multiprocessors = device.multiprocessors or 0
        self.exp_rate = device.exp_rate or 0.0
        # wave quantization needs both the tiles and the multiprocessors they spread over
        self.tiles = device.gemm8_tiles if self.multiprocessors else None

    def assumptions(self) -> list[str]:
        """What the model takes as zero for want of a figure."""
        missing = [k for k, v in self.floor.items() if v == 0.0]
        out = []
        if missing:
            out.append(f"{self.device.name}: no kernel floor for {', '.join(missing)} in the catalog; taken as 0")
        if not self.half_length:
            out.append(f"{self.device.name}: prefill attention efficiency taken as independent of length")
        if BYTES_PER_ELEMENT[self.precision] < ACT_BYTES and not self.vector_rate:
            out.append(f"{self.device.name}: no vector_flops in the catalog; 8-bit GEMMs' input quantization "
                       f"charged at memory speed")
        if not self.multiprocessors:
            out.append(f"{self.device.name}: no multiprocessors in the catalog; the set-up of attention's thread "
                       f"blocks (and of 8-bit GEMMs' per-token quantization blocks) taken as free")
        if BYTES_PER_ELEMENT.get(self.precision) == 1.0 and not self.tiles:
            out.append(f"{self.device.name}: no gemm8_tiles (or multiprocessors) in the catalog; 8-bit GEMMs' "
                       f"compute taken at the full rate whatever their shape, without wave quantization")
        if not self.exp_rate:
            out.append(f"{self.device.name}: no exp_rate in the catalog; attention's softmax taken as covered by "
                       f"its attention_eff")
        return out

    def gemm_rate(self, precision: str) -> float:
        dev = self.device
        rate = dev.peak_flops.for_precision(precision)
        if rate is None:   # a 16-bit head on a device quoted only at 8 bits
            rate = dev.peak_flops.for_precision(self.precision)
            precision = self.precision
        return rate * dev.gemm_eff(precision)

    # ---- the work of each operator ---------------------------------------------------------
    def gemm_work(self, rows, op: Gemm) -> tuple[np.ndarray, np.ndarray, float]:
        precision = op.precision or self.precision
        wb = BYTES_PER_ELEMENT[precision]
        m = np.asarray(rows, float)
        flops = 2.0 * m * op.n * op.k
        nbytes = m * op.k * wb + op.k * op.n * wb + m * op.n * ACT_BYTES
        return flops, nbytes, self.gemm_rate(precision)

    def experts_work(self, rows, op: Experts) -> tuple[np.ndarray, np.ndarray, float]:
        m = np.asarray(rows, float)
        wb = BYTES_PER_ELEMENT[self.precision]
        per_expert = 3.0 * op.hidden * op.inter / op.tp
        touched = op.experts * (1.0 - (1.0 - op.topk / op.experts) ** m)
        flops = 2.0 * m * op.topk * per_expert
        nbytes = touched * per_expert * wb + m * op.topk * (2.0 * op.hidden + 3.0 * op.inter / op.tp) * ACT_BYTES
        return flops, nbytes, self.gemm_rate(self.precision)

    @staticmethod
    def _context_pairs(batch, isl):
        s = np.asarray(isl, float)
        return np.asarray(batch, float) * s * (s + 1.0) / 2.0

    def context_work(self, batch, isl, att: Attention):
        pairs = self._context_pairs(batch, isl)
        kv_token = 2.0 * att.kv_heads * att.head_dim * BYTES_PER_ELEMENT[att.kv_precision]
        flops = 4.0 * att.heads * att.head_dim * pairs
        nbytes = (np.asarray(batch, float) * np.asarray(isl, float)
                  * (kv_token + 2.0 * att.heads * att.head_dim * ACT_BYTES))
        return flops, nbytes

    def generation_work(self, batch, kv, att: Attention):
        tokens = np.asarray(batch, float) * np.asarray(kv, float)
        kv_token = 2.0 * att.kv_heads * att.head_dim * BYTES_PER_ELEMENT[att.kv_precision]
        return 4.0 * att.heads * att.head_dim * tokens, tokens * kv_token

    # ---- times ---------------------------------------------------------------------------
    def gemm(self, rows, op: Gemm) -> np.ndarray:
        flops, nbytes, rate = self.gemm_work(rows, op)
        width = BYTES_PER_ELEMENT[op.precision or self.precision]
        if width >= ACT_BYTES:
            return self._shaped(flops / rate, nbytes / self.mem_rate)
        compute = self._waves(rows, op, rate) if self.tiles and width == 1.0 else flops / rate
        return self._shaped(compute, nbytes / self.mem_rate) + self.quantize(rows, op)

    def _waves(self, rows, op: Gemm, rate: float) -> np.ndarray:
        """An 8-bit GEMM's compute time in whole waves of output tiles: vLLM's CUTLASS kernels
        give each multiprocessor whole tiles (a data-parallel schedule, no split-K), so a GEMM
        with fewer tiles than multiprocessors leaves the rest idle, and one with a tile more
        than a wave pays a second wave."""
        m = np.asarray(rows, float)
        tile_rows = np.empty_like(m)
        tile_cols = np.empty_like(m)
        todo = np.ones(m.shape, bool)
        for t in self.tiles:
            most_rows, most_cols = t.bounds()
            if op.n > most_cols:
                continue
            hit = todo & (m <= most_rows)
            tile_rows[hit], tile_cols[hit] = t.tile_rows, t.tile_cols
            todo &= ~hit
        tiles = np.ceil(m / tile_rows) * np.ceil(op.n / tile_cols)
        waves = np.ceil(tiles / self.multiprocessors)
        return waves * 2.0 * tile_rows * tile_cols * op.k / (rate / self.multiprocessors)

    def _shaped(self, compute, memory) -> np.ndarray:
        """A GEMM-like kernel's time from its compute- and memory-bound times: its floor, the two
        overlapped (a p-norm), and the tail that grows with the work (module comment)."""
        big, small = np.maximum(compute, memory), np.minimum(compute, memory)
        ratio = np.divide(small, big, out=np.zeros_like(big), where=big > 0)
        work = big * (1.0 + ratio ** OVERLAP_NORM) ** (1.0 / OVERLAP_NORM)
        floor = self.floor["gemm"]
        if floor <= 0.0:
            return work
        return floor + work + GEMM_TAIL * floor * (1.0 - np.exp(-work / (GEMM_TAIL_WORK * floor)))

    def quantize(self, rows, op: Gemm) -> np.ndarray:
        """What an 8-bit GEMM adds: its fixed cost, a thread block per token spread over the
        multiprocessors, and its input quantized and its output rescaled at the device's vector
        rate. Without that figure, two passes over the input at memory speed: one finds each
        row's scale (reads it), one scales it (reads 2 bytes, writes 1)."""
        m = np.asarray(rows, float)
        if self.vector_rate:
            blocks = QUANTIZE_ROW_TIME * m / self.multiprocessors if self.multiprocessors else 0.0
            return (QUANTIZE_FLOORS * self.floor["elementwise"] + blocks
                    + (QUANTIZE_OPS * m * op.k + RESCALE_OPS * m * op.n) / self.vector_rate)
        return 2.0 * self.floor["elementwise"] + m * op.k * (2.0 * ACT_BYTES + 1.0) / self.mem_rate

    def experts(self, rows, op: Experts) -> np.ndarray:
        flops, nbytes, rate = self.experts_work(rows, op)
        return self._shaped(flops / rate, nbytes / self.mem_rate)

    def elementwise(self, rows, op: Elementwise) -> np.ndarray:
        return self.floor["elementwise"] + np.asarray(rows, float) * op.nbytes / self.mem_rate

    def allreduce(self, rows, op: AllReduce, eager: bool = False) -> np.ndarray:
        """A measured small-message latency (kernel_floors.allreduce, the engine's own kernel)
        and the bus bandwidth; where the engine runs NCCL's all-reduce, or without that figure,
        the ring: 2(n-1) hops of the link's latency."""
        n = op.ranks
        size = np.asarray(rows, float) * op.nbytes
        if self._on_torus(n):
            return self.floor["allreduce"] + self.torus.allreduce(size)
        custom, ring = self.floor["allreduce"], 2.0 * (n - 1) * self.link_lat
        latency = (custom or ring) if self.custom_allreduce else (ring or custom)
        return latency + 2.0 * (n - 1) / n * size / self.link_bw

    def allgather(self, rows, op: AllGather) -> np.ndarray:
        n = op.ranks
        size = np.asarray(rows, float) * op.nbytes
        if self._on_torus(n):    # an all-gather is the all-reduce's second half
            return self.floor["allreduce"] + 0.5 * self.torus.allreduce(size)
        latency = self.floor["allreduce"] or (n - 1) * self.link_lat
        return latency + (n - 1) / n * size / self.link_bw

    def _on_torus(self, ranks: int) -> bool:
        return self.torus is not None and int(np.prod(self.torus.dims)) == ranks

    def context_attention(self, batch, isl, att: Attention) -> np.ndarray:
        compute, memory, blocks = self._attention_parts("context", batch, isl, att)
        return self.floor["attention"] + np.maximum(compute, memory) + blocks

    def generation_attention(self, batch, kv, att: Attention) -> np.ndarray:
        compute, memory, blocks = self._attention_parts("generation", batch, kv, att)
        return self.floor["attention"] + np.maximum(compute, memory) + blocks

    def _attention_parts(self, kind: str, batch, length, att: Attention):
        """Compute-bound and memory-bound seconds of an attention call, and its thread blocks'
        set-up: a prefill's blocks are QUERY_TILE-query tiles of each head, a decode's each
        sequence's K/V heads."""
        b, s = np.asarray(batch, float), np.asarray(length, float)
        if kind == "context":
            flops, nbytes = self.context_work(b, s, att)
            compute = self._attention_compute(flops, att, s / (s + self.half_length))
            blocks = b * att.heads * np.ceil(s / QUERY_TILE)
        else:
            flops, nbytes = self.generation_work(b, s, att)
            compute = self._attention_compute(flops, att, 1.0)
            blocks = b * att.kv_heads
        set_up = ATTENTION_BLOCK_TIME * blocks / self.multiprocessors if self.multiprocessors else 0.0
        return compute, nbytes / self.mem_rate, set_up

    def _attention_compute(self, flops, att: Attention, efficiency) -> np.ndarray:
        """The matrix products (re-reading K/V tiles when few query heads share them) and the
        softmax's exponentials, overlapped in part (the attention comment above)."""
        reread = 1.0 + KV_REREAD * att.kv_heads / att.heads
        if not self.exp_rate:
            return flops / (self.attn_rate * efficiency) * reread
        products = flops / (self.gemm_rate("bf16") * efficiency) * reread
        softmax = flops / (4.0 * att.head_dim) / self.exp_rate      # one exponential per pair and head
        p = SOFTMAX_OVERLAP_NORM
        return (products ** p + softmax ** p) ** (1.0 / p)

    # ---- what limits each operator ----------------------------------------------------------
    def bound(self, op, rows) -> np.ndarray:
        """COMPUTE, MEMORY or LINK for an operator at each row count."""
        rows = np.asarray(rows, float)
        if isinstance(op, (AllReduce, AllGather)):
            return np.full(rows.shape, LINK)
        if isinstance(op, Elementwise):
            return np.full(rows.shape, MEMORY)
        flops, nbytes, rate = self.gemm_work(rows, op) if isinstance(op, Gemm) else self.experts_work(rows, op)
        return np.where(flops / rate >= nbytes / self.mem_rate, COMPUTE, MEMORY)

    def attention_bound(self, kind: str, batch, length, att: Attention) -> np.ndarray:
        compute, memory, _ = self._attention_parts(kind, batch, length, att)
        return np.where(compute >= memory, COMPUTE, MEMORY)
