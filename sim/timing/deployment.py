"""A model deployed on a tensor-parallel group of devices: memory budget and cost vector.

This is where shapes become numbers the kernels use: weights per device, KV bytes per
token, the KV block budget left after weights and activations, and the packed cost vector
`params` (layout in `sim.timing.kernels`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..catalog.hardware import BYTES_PER_ELEMENT, DeviceSpec
from ..catalog.models import ModelSpec
from ..spec.units import format_bytes
from . import kernels as K


class DeploymentError(ValueError):
    """The model cannot run this way on this device (does not fit, bad tp, no precision)."""


@dataclass(frozen=True)
class EngineLimits:
    block_size: int
    memory_utilization: float
    max_batch_tokens: int
    max_batch_seqs: int
    iteration_overhead: float
    activation_reserve: float | None = None
    tree_allreduce: bool = False
    custom_allreduce: bool = True   # the engine's own all-reduce kernel; False: NCCL's
    memory_of: str = "total"   # memory_utilization of all memory, or of what the weights leave (free_after_weights)


@dataclass
class Deployment:
    device: DeviceSpec
    model: ModelSpec
    precision: str
    kv_precision: str
    tp: int
    limits: EngineLimits
    device_key: str = ""
    model_key: str = ""
    pp: int = 1
    ep: int = 1
    weight_bytes: float = 0.0            # per device
    activation_reserve: float = 0.0      # per device
    kv_budget: float = 0.0               # per device, bytes
    kv_bytes_per_token: float = 0.0      # per device
    state_bytes_per_seq: float = 0.0     # per device (SSM recurrent state)
    block_bytes: float = 0.0
    total_blocks: int = 0
    per_seq_blocks: int = 0
    params: np.ndarray = field(default_factory=lambda: np.zeros(K.P_SIZE))
    assumptions: list[str] = field(default_factory=list)
    timing: str = "analytical"           # where iteration times come from (sim.timing's label)
    engine: str = ""                     # the serving engine and version whose preset the pool runs
    calibration: tuple | None = None     # (file name, sim.timing.calibration.Overlay) when one applies
    torus: object | None = None          # sim.fabric.topology.TorusGroup: its collectives run over a torus's links

    def blocks_for(self, tokens: int) -> int:
        """KV blocks a sequence holding `tokens` tokens occupies."""
        kv = -(-tokens // self.limits.block_size) if self.kv_bytes_per_token > 0 else 0
        return kv + self.per_seq_blocks

    @property
    def max_tokens_in_cache(self) -> int:
        if self.model.diffusion is not None:   # no cache: the tokens one step may hold
            return self.limits.max_batch_tokens
        if self.kv_bytes_per_token <= 0:
            return self.model.max_context
        return (self.total_blocks - self.per_seq_blocks) * self.limits.block_size


def deploy(device: DeviceSpec, model: ModelSpec, precision: str, kv_precision: str, tp: int,
           limits: EngineLimits, device_key: str = "", model_key: str = "", pp: int = 1,
           ep: int = 1) -> Deployment:
    """A model on tp x pp devices. With pipeline stages (pp > 1) each device holds 1/pp of the
    layers; the replica runs pp engines (vLLM's virtual engines) whose batches take turns in
    the stages, each engine with 1/pp of the KV blocks."""
    d = Deployment(device, model, precision, kv_precision, tp, limits, device_key, model_key, pp=pp, ep=ep)
    dev_name = device_key or device.name
    model_name = model_key or model.name
    _check_parallelism(d, dev_name, model_name)

    wb = BYTES_PER_ELEMENT[precision]
    ab = 2.0  # activations in 16-bit
    kvb = BYTES_PER_ELEMENT[kv_precision]
    usable = _budget_memory(d, wb, ab, kvb)
    if d.kv_budget <= 0:
        raise _does_not_fit(d, wb, usable, dev_name, model_name)
    _allocate_blocks(d, dev_name, model_name)
    d.params = _pack(d, wb, ab, kvb)
    return d


def _check_parallelism(d: Deployment, dev_name: str, model_name: str) -> None:
    """The precision is one the device computes in, and tp, pp and ep are ones the device's
    link and the model's layers, heads and experts allow; a DeploymentError otherwise."""
    device, model, precision, tp, pp, ep = d.device, d.model, d.precision, d.tp, d.pp, d.ep
    supported = device.peak_flops.supported()
    if precision not in supported:
        raise DeploymentError(f"{dev_name} has no {precision} compute; supported precisions: {', '.join(supported)}")
    if tp < 1:
        raise DeploymentError("tp must be at least 1")
    if (tp > 1 or pp > 1) and device.scale_up_bandwidth is None:
        raise DeploymentError(f"{dev_name} has no scale-up link in the catalog, so tp and pp must be 1 "
                              f"(got tp={tp}, pp={pp})")
    if ep > 1:
        if model.architecture != "moe":
            raise DeploymentError(f"ep={ep}: expert parallelism needs a mixture-of-experts model; {model_name} is "
                                  f"{model.architecture}")
        if model.experts % ep:
            raise DeploymentError(f"ep={ep} does not divide {model_name}'s {model.experts} experts")
        if tp > 1 or pp > 1:
            raise DeploymentError("expert parallelism here runs attention data-parallel on one device per "
                                  "rank: use tp: 1 and pp: 1 with ep")
        if device.scale_up_bandwidth is None:
            raise DeploymentError(f"{dev_name} has no scale-up link in the catalog, so ep must be 1")
    if model.diffusion is not None and (pp > 1 or ep > 1):
        raise DeploymentError(f"{model_name} is a diffusion transformer: its engine runs tensor parallelism "
                              f"only (tp); use pp: 1 and ep: 1")
    if pp < 1 or pp > model.layers:
        raise DeploymentError(f"pp must be between 1 and the model's {model.layers} layers (got {pp})")
    if model.has_attention and model.heads % tp:
        raise DeploymentError(f"tp={tp} does not divide {model_name}'s {model.heads} attention heads; "
                              f"valid tp: {', '.join(str(t) for t in _divisors(model.heads) if t <= 64)}")


def _budget_memory(d: Deployment, wb: float, ab: float, kvb: float) -> float:
    """Sets the deployment's weights, KV and state bytes, activation reserve and KV budget per
    device; returns the memory usable on a device."""
    model, limits, device, tp, pp, ep = d.model, d.limits, d.device, d.tp, d.pp, d.ep
    h = model.hidden

    # expert parallelism: the dense part (attention, shared experts, embeddings) on every rank,
    # the routed experts spread over the ranks
    routed = model.moe_layers * model.experts * model.expert_params()
    d.weight_bytes = (resident_params(model) - routed + routed / ep) * wb / (tp * pp)
    d.kv_bytes_per_token = _kv_bytes_per_token(model, tp, kvb) / pp   # a stage caches its layers
    d.state_bytes_per_seq = _state_bytes_per_seq(model, tp) / pp

    if limits.activation_reserve is not None:
        d.activation_reserve = limits.activation_reserve
    else:
        widest = max(model.ffn, model.expert_ffn * max(model.active_experts, 1), model.ssm_inner * 2)
        d.activation_reserve = (limits.max_batch_tokens * (4 * h + 2 * widest / tp) * ab
                                + limits.max_batch_seqs * model.vocab * 4.0 / tp)
        d.assumptions.append(
            "activation reserve estimated as max_batch_tokens x (4 x hidden + 2 x widest FFN / tp) x 2 B "
            "+ fp32 logits for max_batch_seqs; set engine.activation_reserve to override")
    usable = device.memory * limits.memory_utilization
    d.kv_budget = usable - d.weight_bytes - d.activation_reserve
    if limits.memory_of == "free_after_weights":
        usable = device.memory
        d.kv_budget = (device.memory - d.weight_bytes - d.activation_reserve) * limits.memory_utilization
    return usable


def _does_not_fit(d: Deployment, wb: float, usable: float, dev_name: str, model_name: str) -> DeploymentError:
    """The error for a model whose weights and activations leave no KV budget, with the
    smallest tp or pp, or a cheaper precision, that would fit."""
    device, model, limits, precision, tp, pp = d.device, d.model, d.limits, d.precision, d.tp, d.pp
    supported = device.peak_flops.supported()
    total = resident_params(model)
    linked = device.scale_up_bandwidth is not None    # no link (a MIG slice): no tp or pp to suggest
    min_tp = next((t for t in _divisors(model.heads or 1) if linked and t >= tp and
                   total * wb / (t * pp) + d.activation_reserve < usable), None)
    min_pp = next((s for s in range(pp, model.layers + 1) if linked and
                   total * wb / (tp * s) + d.activation_reserve < usable), None)
    hint = f"; try tp={min_tp}" if min_tp else ""
    if min_pp and model.diffusion is None:
        hint += f"{' or' if hint else '; try'} pp={min_pp} (pipeline stages)"
    if model.diffusion is not None:
        hint += (" (weights include the text encoders and VAE, "
                 f"{format_bytes((model.diffusion.text_encoder_params + model.diffusion.vae_params) * wb / tp)} "
                 "per device; lower max_batch_tokens to shrink the activation reserve)")
    cheaper = [p for p in ("fp8", "int8", "fp4") if p in supported and BYTES_PER_ELEMENT[p] < wb]
    if cheaper:
        hint += f" or precision {cheaper[0]}"
    return DeploymentError(
        f"{model_name} at {precision} does not fit on {dev_name} with tp={tp}"
        + (f", pp={pp}" if pp > 1 else "") + ": weights "
        f"{format_bytes(d.weight_bytes)} + activations {format_bytes(d.activation_reserve)} per device "
        f"exceed {format_bytes(usable)} usable" + (
            f" ({format_bytes(device.memory)} x memory_utilization {limits.memory_utilization})"
            if limits.memory_of == "total" else "") + hint)


def _allocate_blocks(d: Deployment, dev_name: str, model_name: str) -> None:
    """Divides the KV budget into blocks (per pipeline engine) and sets the blocks each
    sequence holds besides its tokens; a DeploymentError if not even one block fits."""
    bs = d.limits.block_size
    if d.model.diffusion is not None:
        # no KV cache: a denoising step recomputes every token's keys and values; what is left
        # after weights and activations stays free. One nominal block keeps the occupancy
        # figures (used / total) defined; nothing ever holds it.
        d.total_blocks, d.per_seq_blocks, d.block_bytes = 1, 0, 0.0
        return
    if d.kv_bytes_per_token > 0:
        d.block_bytes = bs * d.kv_bytes_per_token
        d.per_seq_blocks = math.ceil(d.state_bytes_per_seq / d.block_bytes) if d.state_bytes_per_seq else 0
    else:  # pure SSM: one block is one sequence's recurrent state
        d.block_bytes = d.state_bytes_per_seq
        d.per_seq_blocks = 1
    d.total_blocks = int(d.kv_budget // d.block_bytes) // d.pp   # each of the pp engines gets a share
    if d.total_blocks < d.per_seq_blocks + 1:
        raise DeploymentError(f"{model_name} on {dev_name} with tp={d.tp} leaves {format_bytes(d.kv_budget)} for the "
                              f"KV cache, less than one {bs}-token block ({format_bytes(d.block_bytes)})")


def _divisors(n: int) -> list[int]:
    return [t for t in range(1, n + 1) if n % t == 0]


def cost_vector(device: DeviceSpec, model: ModelSpec, precision: str, tp: int, iteration_overhead: float,
                kv_precision: str = "bf16") -> np.ndarray:
    """The kernels' cost vector for a model on `tp` devices, without any memory check."""
    limits = EngineLimits(block_size=16, memory_utilization=1.0, max_batch_tokens=1, max_batch_seqs=1,
                          iteration_overhead=iteration_overhead)
    d = Deployment(device, model, precision, kv_precision, tp, limits)
    d.kv_bytes_per_token = _kv_bytes_per_token(model, tp, BYTES_PER_ELEMENT[kv_precision])
    d.state_bytes_per_seq = _state_bytes_per_seq(model, tp)
    return _pack(d, BYTES_PER_ELEMENT[precision], 2.0, BYTES_PER_ELEMENT[kv_precision])


def resident_params(model: ModelSpec) -> float:
    """Weights a replica holds: the model's, plus a diffusion pipeline's text encoders and VAE."""
    total = model.computed_params()
    if model.diffusion is not None:
        total += model.diffusion.text_encoder_params + model.diffusion.vae_params
    return total


def _kv_bytes_per_token(model: ModelSpec, tp: int, kvb: float) -> float:
    """KV bytes per token per device: heads split across ranks until each holds one group.
    A diffusion transformer keeps none (every step recomputes keys and values)."""
    if not model.has_attention or model.diffusion is not None:
        return 0.0
    groups = model.kv_groups()
    return model.layers * model.kv_elements_per_token_layer() * math.ceil(groups / tp) / groups * kvb


def _state_bytes_per_seq(model: ModelSpec, tp: int) -> float:
    """SSM recurrent state (fp32) plus convolution window (16-bit) per sequence per device."""
    if model.architecture != "ssm":
        return 0.0
    di = model.ssm_inner / tp
    return model.layers * (di * model.ssm_state * 4.0 + di * max(model.ssm_conv - 1, 0) * 2.0)


def _pack(d: Deployment, wb: float, ab: float, kvb: float) -> np.ndarray:
    """The deployment's cost vector `params` (layout in `sim.timing.kernels`)."""
    m, tp = d.model, d.tp
    p = np.zeros(K.P_SIZE)
    _pack_device(p, d, wb, ab, kvb)
    _pack_layers(p, m, tp, kvb)
    if m.diffusion is not None:   # no LM head: the slot runs the per-sample weights, once per sample-pass
        p[K.K_HEAD_W] = m.diffusion.per_sample_params / tp
    else:
        p[K.K_HEAD_W] = 0.0 if m.modality == "embedding" else m.vocab * m.hidden / tp  # an encoder has no LM head
    p[K.K_BIDIRECTIONAL] = 1.0 if m.bidirectional else 0.0
    p[K.K_HIDDEN] = m.hidden
    p[K.K_ALLREDUCES] = 1.0 if m.architecture == "ssm" else 2.0
    p[K.K_LAYERS] = m.layers
    return p


def _pack_device(p: np.ndarray, d: Deployment, wb: float, ab: float, kvb: float) -> None:
    """The cost vector's parallelism, scale-up link, host overhead, scales, rates and element sizes."""
    dev, tp = d.device, d.tp
    p[K.K_TP] = tp
    p[K.K_PP] = d.pp
    p[K.K_EP] = d.ep
    p[K.K_EP_ON_LINK] = 1.0
    p[K.K_TREE] = 1.0 if d.limits.tree_allreduce else 0.0
    if tp > 1 or d.pp > 1 or d.ep > 1:
        if dev.scale_up_eff is None:
            d.assumptions.append("all-reduce efficiency not in the catalog for this device; link peak used")
        p[K.K_LINK_BW] = dev.scale_up_bandwidth * (dev.scale_up_eff or 1.0)
        if dev.scale_up_latency is None:
            d.assumptions.append("scale-up hop latency not in the catalog for this device; taken as 0")
        p[K.K_LINK_LAT] = dev.scale_up_latency or 0.0
    p[K.K_OVERHEAD] = d.limits.iteration_overhead
    p[K.K_COMPUTE_SCALE] = p[K.K_MEMORY_SCALE] = p[K.K_LINK_SCALE] = p[K.K_HOST_SCALE] = 1.0
    p[K.K_GRAPH_MAX] = np.inf    # no eager launches unless an engine preset says where its graphs end
    p[K.K_GEMM_RATE] = dev.peak_flops.for_precision(d.precision) * dev.gemm_eff(d.precision)
    p[K.K_ATTN_RATE] = dev.attention_rate()
    p[K.K_MEM_RATE] = dev.memory_bandwidth * dev.mem_eff
    p[K.K_WBYTES], p[K.K_ABYTES], p[K.K_KVBYTES] = wb, ab, kvb


def _pack_layers(p: np.ndarray, m: ModelSpec, tp: int, kvb: float) -> None:
    """The cost vector's layers: dense (or SSM) MLPs, MoE experts, attention and SSM scans."""
    h = m.hidden
    attn_act = _attention_activations(m, tp)
    if m.architecture == "ssm":
        di = m.ssm_inner
        plain_act = 2 * h + 3 * di / tp
    else:
        f = m.ffn
        plain_act = attn_act + 2 * h + ((3 if m.ffn_gated else 2) * f) / tp
        if m.has_cross_attention:   # its two projections per token: in and out of each
            plain_act += 2 * h + 2 * m.heads * m.head_dim / tp
    p[K.K_PLAIN_LAYERS] = m.plain_layers
    p[K.K_PLAIN_W] = m.token_layer_params() / tp
    p[K.K_PLAIN_ACT] = plain_act
    p[K.K_MOE_LAYERS] = m.moe_layers
    if m.moe_layers:
        ef = m.expert_ffn
        p[K.K_MOE_DENSE_W] = m.moe_layer_dense_params() / tp
        p[K.K_MOE_DENSE_ACT] = attn_act + m.shared_experts * (2 * h + 3 * ef / tp)
        p[K.K_EXPERTS] = m.experts
        p[K.K_ACTIVE] = m.active_experts
        p[K.K_EXPERT_W] = m.expert_params() / tp
        p[K.K_EXPERT_ACT] = 2 * h / tp + 3 * ef / tp
    if m.has_attention:
        qk, v = m.attention_dims()
        p[K.K_ATTN_LAYERS] = m.layers
        p[K.K_HEADS] = m.heads / tp
        p[K.K_QK_DIM], p[K.K_V_DIM] = qk, v
        # per layer per device; an engine's iteration runs every stage, so all layers count
        p[K.K_KV_ELEMS] = _kv_bytes_per_token(m, tp, kvb) / (m.layers * kvb)
        if m.diffusion is not None:   # nothing cached, but the attention kernel still reads K and V
            p[K.K_KV_ELEMS] = m.kv_elements_per_token_layer() * math.ceil(m.kv_groups() / tp) / m.kv_groups()
    if m.architecture == "ssm":
        p[K.K_SSM_LAYERS] = m.layers
        p[K.K_SSM_FLOPS] = 9.0 * m.ssm_inner * m.ssm_state / tp
        p[K.K_SSM_STATE] = _state_bytes_per_seq(m, tp) / m.layers


def _attention_activations(m: ModelSpec, tp: int) -> float:
    """Activation elements per token read and written by one layer's attention GEMMs."""
    h = m.hidden
    if not m.has_attention:
        return 0.0
    if m.attention == "mla":
        qk = m.qk_nope_dim + m.qk_rope_dim
        q = (m.q_lora_rank + m.heads * qk / tp) if m.q_lora_rank else m.heads * qk / tp
        kv = m.kv_lora_rank + m.qk_rope_dim + m.heads * (m.qk_nope_dim + m.v_head_dim) / tp
        return 2 * h + q + kv + 2 * m.heads * m.v_head_dim / tp
    qkv_out = (m.heads + 2 * m.kv_heads) * m.head_dim / tp
    return 2 * h + qkv_out + m.heads * m.head_dim / tp
