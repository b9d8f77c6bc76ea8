"""One iteration of a transformer as the kernels a device of its tensor-parallel group runs.

Per layer (GQA attention and a gated MLP, as vLLM, SGLang and TensorRT-LLM run Llama-class
models), on one of `tp` devices:

    RMSNorm -> QKV GEMM -> rotary -> attention -> O GEMM -> all-reduce
    -> fused residual add + RMSNorm -> gate/up GEMM -> SiLU x up -> down GEMM -> all-reduce

An MoE layer replaces the MLP by the router GEMM, the fused routed-expert kernel and any
shared experts. Once per iteration: the embedding gather and the final norm (every token),
the LM head GEMM, the logits gather across ranks and sampling (one row per sequence that
produces a token). With 8-bit weights every GEMM's input is quantized first: the engines'
8-bit GEMMs include that pass (vLLM's measured FP8 GEMM does), so it belongs to the GEMM.

Each operator says how its work grows: per `tokens` row (every token of the iteration) or
per `logits` row (every sequence producing a token). Attention is apart: its time depends
on sequence lengths, not on a row count. Shapes are per device (heads and FFN width divided
by tp; KV heads replicated when tp exceeds them, as the engines do).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..catalog.hardware import BYTES_PER_ELEMENT
from ..catalog.models import ModelSpec

ACT_BYTES = 2.0   # activations travel in 16-bit


@dataclass(frozen=True)
class Gemm:
    name: str
    n: int
    k: int
    count: float          # calls per iteration (layers x calls per layer)
    precision: str = ""   # "": the weights' precision


@dataclass(frozen=True)
class Elementwise:
    """A memory-bound kernel (norm, rotary, activation, quantization, sampling): `nbytes`
    read and written per row."""
    name: str
    nbytes: float
    count: float


@dataclass(frozen=True)
class AllReduce:
    name: str
    nbytes: float         # message bytes per row
    ranks: int
    count: float


@dataclass(frozen=True)
class AllGather:
    name: str
    nbytes: float         # gathered bytes per row (the whole result)
    ranks: int
    count: float


@dataclass(frozen=True)
class Experts:
    """The fused routed-expert kernel of an MoE layer (dispatch, grouped GEMMs, combine)."""
    name: str
    hidden: int
    inter: int            # one expert's FFN width (the whole expert; `tp` says how it is split)
    topk: int
    experts: int
    tp: int
    count: float


@dataclass(frozen=True)
class Attention:
    heads: int            # query heads per device
    kv_heads: int         # KV heads per device
    head_dim: int
    kv_precision: str
    layers: int


@dataclass
class Operators:
    tokens: list = field(default_factory=list)   # ops with one row per token
    logits: list = field(default_factory=list)   # ops with one row per sequence producing a token
    attention: Attention | None = None
    gemm_precision: str = "bf16"


def unsupported(model: ModelSpec, ep: int) -> str | None:
    """Why this model's iteration has no kernel-by-kernel composition (None: it has one)."""
    if model.architecture == "ssm":
        return "state-space layers"
    if model.attention == "mla":
        return "multi-head latent attention"
    if model.bidirectional or model.diffusion is not None or model.has_cross_attention:
        return f"{model.modality} models (bidirectional or cross attention)"
    if ep > 1:
        return "expert parallelism"
    return None


def operators(model: ModelSpec, tp: int, precision: str, kv_precision: str) -> Operators:
    """The kernels of one iteration on one device of a tp group (see the module docstring)."""
    h, hd = model.hidden, model.head_dim
    hq = model.heads // tp
    hkv = math.ceil(model.kv_heads / tp)
    quantized = BYTES_PER_ELEMENT[precision] < ACT_BYTES
    row = ACT_BYTES * h
    ops = Operators(gemm_precision=precision)
    ops.attention = Attention(hq, hkv, hd, kv_precision, model.layers)
    L = float(model.layers)

    def gemm(name, n, k, count):
        ops.tokens.append(Gemm(name, int(n), int(k), count))

    ops.tokens.append(Elementwise("embedding", 2.0 * row, 1.0))
    ops.tokens.append(Elementwise("input_norm", 2.0 * row, L))
    gemm("qkv", (hq + 2 * hkv) * hd, h, L)
    ops.tokens.append(Elementwise("rotary", 2.0 * ACT_BYTES * (hq + hkv) * hd, L))
    gemm("o_proj", h, hq * hd, L)
    ops.tokens.append(Elementwise("residual_norm", 4.0 * row, L))   # add + norm: x and residual in and out
    ffn_layers = float(model.plain_layers)
    if ffn_layers:
        _mlp(gemm, ops, model.ffn, model.ffn_gated, tp, h, ffn_layers)
    if model.moe_layers:
        moe = float(model.moe_layers)
        gemm("router", model.experts, h, moe)
        ops.tokens.append(Experts("experts", h, model.expert_ffn, model.active_experts, model.experts, tp, moe))
        if model.shared_experts:
            _mlp(gemm, ops, model.shared_experts * model.expert_ffn, True, tp, h, moe, "shared_")
    if tp > 1:
        ops.tokens.append(AllReduce("allreduce", row, tp, 2.0 * L))
    ops.tokens.append(Elementwise("final_norm", 2.0 * row, 1.0))
    if model.vocab:
        vocab = model.vocab
        # quantized checkpoints keep the LM head in 16-bit
        ops.logits.append(Gemm("lm_head", vocab // tp, h, 1.0, "bf16" if quantized else ""))
        if tp > 1:
            ops.logits.append(AllGather("logits_gather", ACT_BYTES * vocab, tp, 1.0))
        # softmax and sampling over fp32 logits: read them, write the probabilities
        ops.logits.append(Elementwise("sampling", 2.0 * 4.0 * vocab, 1.0))
    return ops


def _mlp(gemm, ops: Operators, ffn: int, gated: bool, tp: int, h: int, count: float, prefix: str = "") -> None:
    f = ffn // tp
    gemm(f"{prefix}gate_up", (2 if gated else 1) * f, h, count)
    ops.tokens.append(Elementwise(f"{prefix}activation", (3.0 if gated else 2.0) * ACT_BYTES * f, count))
    gemm(f"{prefix}down", h, f, count)
