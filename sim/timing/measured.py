"""Operator times read from measured kernel tables (`sim.timing.database`).

For a device the database covers (a catalog device's `kernel_tables:` names its system)
and a serving framework, each operator of `sim.timing.operators` is looked up at its real
shape in the framework's own measurements, interpolated in the measured grid
(`sim.timing.grid`):

- GEMM: latency by (m, n, k) at the weights' precision;
- attention: context attention by (batch, prompt length) and generation attention by
  (batch, KV length), for the device's share of heads, at the KV cache's precision;
- all-reduce by (ranks, message size): the framework's own all-reduce in CUDA-graph mode,
  else NCCL's; the logits gather by NCCL's all-gather;
- the fused MoE kernel by token count for the model's expert shape and tp;
- elementwise kernels (norms, rotary, activation, quantization, sampling), which the
  tables do not list one by one, by bytes moved on the measured curve of an elementwise
  kernel of the same framework (fp8 quantization: read 2 bytes, write 1 per element).

What the database lacks for a given operator (a precision, a head shape, a rank count) is
timed by the analytical model instead, and `notes` says so: the run prints it as an
`assumed:` line.
"""
from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from . import database as db
from .analytical import Analytical
from .grid import Grid
from .operators import AllGather, AllReduce, Attention, Elementwise, Experts, Gemm

MS = 1e-3
GEMM_DTYPE = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8", "fp4": "nvfp4"}
MOE_DTYPE = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8"}
KV_DTYPE = {"bf16": "bfloat16", "fp16": "bfloat16", "fp8": "fp8"}
# Attention kernel each framework runs by default, first match in the device's table: vLLM
# FlashAttention-3 on Hopper, FlashAttention-2 on Ampere and Ada, FlashInfer's TensorRT-LLM
# kernels on Blackwell; SGLang fa3 on Hopper, trtllm_mha on Blackwell, flashinfer elsewhere;
# TensorRT-LLM its own attention op ("torch_flow").
ATTENTION_KERNELS = {
    "vllm": ("vllm_flash_attn_fa3", "vllm_flash_attn", "vllm_flashinfer_trtllmprefill",
             "vllm_flashinfer_trtllmdecode", "vllm_flash_attn_fa2", "vllm_flashinfer"),
    "sglang": ("fa3", "trtllm_mha", "flash_attention", "flashinfer"),
    "trtllm": ("torch_flow",),
}


class Measured:
    def __init__(self, system: str, framework: str, version: str | None, analytical: Analytical):
        self.system = system
        self.framework = framework
        self.version = version
        self.fallback = analytical
        self.notes: list[str] = []
        self.read: dict[str, str] = {}     # family -> version whose measurements were used
        self.fell_back = False             # some operator the tables lack is timed analytically

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _unmeasured(self, what: str) -> None:
        """Note an operator the tables lack; the caller times it with the analytical model."""
        self.fell_back = True
        self._note(f"{what}: analytical")

    def _where(self, family: str, table: str) -> tuple | None:
        """(system, family, framework, version, table) of the closest measured version."""
        found = db.newest_with(self.system, family, self.framework, table, self.version)
        if found is None:
            return None
        self.read.setdefault(family, f"{self.framework} {found[0]}")
        return self.system, family, self.framework, found[0], table

    def row_points(self, ops) -> list[np.ndarray]:
        """Row counts at which the measurements of the per-row operators change slope: the
        measured m of the GEMMs, token counts of the MoE kernel, and message sizes of the
        all-reduce, so that a table built on them is exact at every measured point."""
        points = []
        for op in ops.tokens + ops.logits:
            if isinstance(op, Gemm):
                where = self._where("gemm", "gemm_perf")
                dtype = GEMM_DTYPE.get(op.precision or self.fallback.precision)
                grid = _gemm_grid(where, dtype) if where and dtype else None
            elif isinstance(op, Experts):
                where = self._where("moe", "moe_perf")
                dtype = MOE_DTYPE.get(self.fallback.precision)
                grid = _experts_grid(where, dtype, op.hidden, op.inter, op.topk, op.experts, op.tp) \
                    if where and dtype else None
            elif isinstance(op, AllReduce):
                grid = self._collective_grid("all_reduce", op.ranks)
                if grid is not None:
                    points.append(grid.axes[0] * 2.0 / op.nbytes)
                continue
            else:
                continue
            if grid is not None:
                points.append(grid.axes[0])
        return points

    # ---- GEMMs -------------------------------------------------------------------------------
    def gemm(self, rows, op: Gemm) -> np.ndarray:
        precision = op.precision or self.fallback.precision
        where = self._where("gemm", "gemm_perf")
        dtype = GEMM_DTYPE.get(precision)
        grid = _gemm_grid(where, dtype) if where and dtype else None
        if grid is None:
            self._unmeasured(f"{precision} GEMMs not measured on {self.system} under {self.framework}")
            return self.fallback.gemm(rows, op)
        return grid(rows, op.n, op.k) * MS

    # ---- attention ------------------------------------------------------------------------------
    def context_attention(self, batch, isl, att: Attention) -> np.ndarray:
        grid, scale = self._attention_grid("context", att)
        if grid is None:
            return self.fallback.context_attention(batch, isl, att)
        # past the longest measured prompt a prefill's work grows with its query-key pairs,
        # s(s+1)/2, not linearly as the grid would extend it
        s = np.asarray(isl, float)
        top = grid.axes[1][-1]
        longer = np.where(s > top, s * (s + 1.0) / (top * (top + 1.0)), 1.0)
        return grid(batch, np.minimum(s, top)) * longer * scale * MS

    def generation_attention(self, batch, kv, att: Attention) -> np.ndarray:
        grid, scale = self._attention_grid("generation", att)
        if grid is None:
            return self.fallback.generation_attention(batch, kv, att)
        return grid(batch, kv) * scale * MS

    def attention_axes(self, kind: str, att: Attention) -> tuple[np.ndarray, np.ndarray] | None:
        grid, _ = self._attention_grid(kind, att)
        return None if grid is None else (grid.axes[0], grid.axes[1])

    def _attention_grid(self, kind: str, att: Attention) -> tuple[Grid | None, float]:
        where = self._where("attention", f"{kind}_attention_perf")
        if where is None:
            self._unmeasured(f"{kind} attention not measured on {self.system} under {self.framework}")
            return None, 1.0
        kv = KV_DTYPE.get(att.kv_precision)
        if kv not in set(db.read(*where)["kv_cache_dtype"].unique()):
            self._note(f"{att.kv_precision} KV cache not measured for attention on {self.system}: "
                       f"16-bit KV kernel times used")
            kv = "bfloat16"
        found = _attention_grid(where, kind, kv, att.heads, att.kv_heads, att.head_dim,
                                ATTENTION_KERNELS.get(self.framework, ()))
        if found is None:
            self._unmeasured(f"{kind} attention with {att.heads} heads, {att.kv_heads} KV heads of "
                             f"{att.head_dim} not measured on {self.system}")
            return None, 1.0
        grid, heads = found
        if heads != att.heads:
            self._note(f"{kind} attention: {att.heads} heads per device scaled from the measured {heads}")
        return grid, att.heads / heads

    # ---- collectives ------------------------------------------------------------------------------
    def allreduce(self, rows, op: AllReduce, eager: bool = False) -> np.ndarray:
        """The framework's all-reduce as it runs in a captured graph or, `eager`, outside one
        (where the tables measure both; else the same)."""
        grid = self._collective_grid("all_reduce", op.ranks, eager)
        if grid is None:
            self._unmeasured(f"all-reduce over {op.ranks} devices not measured on {self.system}")
            return self.fallback.allreduce(rows, op)
        return grid(np.asarray(rows, float) * op.nbytes / 2.0) * MS   # the tables count 16-bit elements

    def allgather(self, rows, op: AllGather) -> np.ndarray:
        grid = self._collective_grid("all_gather", op.ranks)
        if grid is None:
            self._unmeasured(f"all-gather over {op.ranks} devices not measured on {self.system}")
            return self.fallback.allgather(rows, op)
        return grid(np.asarray(rows, float) * op.nbytes / 2.0) * MS

    def _collective_grid(self, name: str, ranks: int, eager: bool = False) -> Grid | None:
        """The framework's own all-reduce (in a graph, or eager) unless the engine runs NCCL's,
        else the newest NCCL collection that measured this operation at this many ranks."""
        if name == "all_reduce" and self.fallback.custom_allreduce:
            where = self._where("comm", "custom_allreduce_perf")
            grid = _collective_grid(where, name, ranks, eager) if where else None
            if grid is not None:
                return grid
        for version in reversed(db.versions(self.system, "comm", "nccl")):
            grid = _collective_grid((self.system, "comm", "nccl", version, "nccl_perf"), name, ranks)
            if grid is not None:
                self.read.setdefault(f"comm {name}", f"nccl {version}")
                return grid
        return None

    # ---- experts --------------------------------------------------------------------------------
    def experts(self, rows, op: Experts) -> np.ndarray:
        where = self._where("moe", "moe_perf")
        dtype = MOE_DTYPE.get(self.fallback.precision)
        grid = None
        if where is not None and dtype is not None:
            grid = _experts_grid(where, dtype, op.hidden, op.inter, op.topk, op.experts, op.tp)
        if grid is None:
            self._unmeasured(f"MoE kernel ({op.experts} experts of {op.inter}, top-{op.topk}, tp {op.tp}) "
                             f"not measured on {self.system}")
            return self.fallback.experts(rows, op)
        return grid(rows) * MS

    # ---- elementwise kernels ----------------------------------------------------------------------
    def elementwise(self, rows, op: Elementwise) -> np.ndarray:
        where = self._where("quantize", "scale_matrix_perf")
        curve = _bytes_curve(where) if where else None
        if curve is None:
            self._note(f"no measured elementwise kernel on {self.system}: norms, rotary, activation and "
                       f"sampling by bytes at the catalog's memory bandwidth")
            return self.fallback.elementwise(rows, op)
        return curve(np.asarray(rows, float) * op.nbytes) * MS


# ---- grids, built once per process for each table and shape ----------------------------------------
# `where` is (system, family, framework, version, table) as database.read takes it.
def gemm_rows(frame: pd.DataFrame, dtype: str) -> pd.DataFrame:
    """The GEMMs measured at one dtype, by the kernel the table measured most of them with."""
    rows = frame[frame["gemm_dtype"] == dtype]
    if not len(rows):
        return rows
    kernel = rows["kernel_source"].value_counts().index[0]
    return rows[rows["kernel_source"] == kernel]


def attention_rows(rows: pd.DataFrame, kernels: tuple) -> pd.DataFrame:
    """Full-context (no sliding window), single-beam attention measurements by the first of
    `kernels` the rows have (else the first kernel there is; no rows where there is none)."""
    for col, want in (("window_size", 0), ("beam_width", 1)):
        if col in rows:
            rows = rows[rows[col] == want]
    present = list(rows["kernel_source"].unique())
    chosen = next((k for k in kernels if k in present), present[0] if present else None)
    return rows[rows["kernel_source"] == chosen]


@cache
def _gemm_grid(where, dtype) -> Grid | None:
    rows = gemm_rows(db.read(*where), dtype)
    return Grid.from_frame(rows, ["m", "n", "k"]) if len(rows) else None


@cache
def _attention_grid(where, kind, kv, heads, kv_heads, head_dim, kernels):
    """The measured grid for this head shape (or the nearest head count with the same KV
    heads, to be scaled by the head ratio) and the head count it was measured at."""
    frame = db.read(*where)
    rows = attention_rows(frame[(frame["kv_cache_dtype"] == kv) & (frame["head_dim"] == head_dim)], kernels)
    rows = rows[rows["num_key_value_heads"] == kv_heads]
    if not len(rows):
        return None
    measured = np.sort(rows["num_heads"].unique())
    at = int(measured[np.argmin(np.abs(measured - heads))])
    rows = rows[rows["num_heads"] == at]
    if kind == "context":
        return Grid.from_frame(rows, ["batch_size", "isl"]), at
    rows = rows.assign(kv_len=rows["isl"] + rows["step"])
    return Grid.from_frame(rows, ["batch_size", "kv_len"]), at


@cache
def _collective_grid(where, name, ranks, eager=False) -> Grid | None:
    frame = db.read(*where)
    if frame is None:
        return None
    if "nccl_dtype" in frame:   # NCCL's collectives, by operation
        rows = frame[(frame["op_name"] == name) & (frame["num_gpus"] == ranks) & (frame["nccl_dtype"] == "half")]
    else:                       # a framework's own all-reduce (vLLM and SGLang measure it in a graph and eager)
        rows = frame[frame["num_gpus"] == ranks]
        if "backend" in rows:
            rows = rows[rows["backend"].str.endswith("eager" if eager else "graph")]
    return Grid.from_frame(rows, ["message_size"]) if len(rows) else None


# A router does not spread tokens evenly over the experts: the tables measure each MoE shape
# with tokens drawn evenly and from power laws, and aiconfigurator-core's own models of MoE
# serving take the power law of exponent 1.2 (its sdk/config.py: workload_distribution
# "power_law"; sdk/models/moe.py: _power_law_alpha = 1.2). So do we, where it was measured.
ROUTING = ("power_law_1.2", "balanced")


@cache
def _experts_grid(where, dtype, hidden, inter, topk, experts, tp) -> Grid | None:
    frame = db.read(*where)
    rows = frame[(frame["moe_dtype"] == dtype) & (frame["hidden_size"] == hidden) & (frame["inter_size"] == inter)
                 & (frame["topk"] == topk) & (frame["num_experts"] == experts) & (frame["moe_tp_size"] == tp)
                 & (frame["moe_ep_size"] == 1)]
    routing = next((r for r in ROUTING if (rows["distribution"] == r).any()), None)
    if routing is None:
        return None
    rows = rows[rows["distribution"] == routing]
    kernel = rows["kernel_source"].value_counts().index[0]
    return Grid.from_frame(rows[rows["kernel_source"] == kernel], ["num_tokens"])


@cache
def _bytes_curve(where) -> Grid | None:
    """Latency against bytes moved (fp8 quantization reads 2 bytes and writes 1 per element):
    the median at each size, made non-decreasing (moving more bytes takes no less time)."""
    frame = db.read(*where)
    if not len(frame):
        return None
    nbytes = frame["m"].to_numpy(float) * frame["k"].to_numpy(float) * 3.0
    curve = pd.Series(frame["latency"].to_numpy(float)).groupby(nbytes).median()
    return Grid([curve.index.to_numpy(float)], np.maximum.accumulate(curve.to_numpy(float)))
