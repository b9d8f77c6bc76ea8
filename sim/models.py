"""Model architectures as their config files state them, and the shapes derived from them.

Parameter counts are computed from the shapes (attention, MLP or experts, embeddings) so the
catalog's stated `params` is a check on the arithmetic, not an input to it.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from .spec_base import Spec


class ModelSpec(Spec):
    name: str
    architecture: Literal["dense", "moe", "ssm"]
    params: float = Field(gt=0, description="total parameters as the model card states")
    active_params: float | None = Field(default=None, gt=0)
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(ge=0)
    kv_heads: int = Field(ge=0)
    head_dim: int = Field(ge=0)
    ffn: int = Field(ge=0)
    ffn_gated: bool = True
    vocab: int = Field(gt=0)
    max_context: int = Field(gt=0)
    tied_embeddings: bool = False
    attention: Literal["gqa", "mla"] = "gqa"
    # mixture of experts
    experts: int = Field(default=0, ge=0)
    active_experts: int = Field(default=0, ge=0)
    expert_ffn: int = Field(default=0, ge=0)
    shared_experts: int = Field(default=0, ge=0)
    dense_layers: int = Field(default=0, ge=0)
    # multi-head latent attention (DeepSeek)
    q_lora_rank: int = Field(default=0, ge=0)
    kv_lora_rank: int = Field(default=0, ge=0)
    qk_nope_dim: int = Field(default=0, ge=0)
    qk_rope_dim: int = Field(default=0, ge=0)
    v_head_dim: int = Field(default=0, ge=0)
    # state-space (Mamba)
    ssm_state: int = Field(default=0, ge=0)
    ssm_expand: int = Field(default=0, ge=0)
    ssm_conv: int = Field(default=0, ge=0)
    dt_rank: int = Field(default=0, ge=0)
    modality: Literal["text", "embedding"] = Field(
        default="text", description="embedding: an encoder that returns a vector (prefill only, no LM head)")
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self):
        if self.architecture == "moe":
            if not (self.experts and self.active_experts and self.expert_ffn):
                raise ValueError("an moe model needs experts, active_experts and expert_ffn")
            if self.active_experts > self.experts:
                raise ValueError(f"active_experts ({self.active_experts}) exceeds experts ({self.experts})")
            if self.dense_layers > self.layers:
                raise ValueError("dense_layers exceeds layers")
        if self.architecture == "ssm" and not (self.ssm_state and self.ssm_expand):
            raise ValueError("an ssm model needs ssm_state and ssm_expand")
        if self.architecture != "ssm":
            if not (self.heads and self.kv_heads and self.head_dim):
                raise ValueError("attention models need heads, kv_heads and head_dim")
            if self.heads % self.kv_heads:
                raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.attention == "mla" and not (self.kv_lora_rank and self.qk_rope_dim and self.v_head_dim):
            raise ValueError("mla attention needs kv_lora_rank, qk_rope_dim and v_head_dim")
        return self

    # ---- layer structure -------------------------------------------------------------
    @property
    def has_attention(self) -> bool:
        return self.architecture != "ssm"

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.architecture == "moe" else 0

    @property
    def plain_layers(self) -> int:
        """Layers whose feed-forward part is one dense MLP (or an SSM block)."""
        return self.layers - self.moe_layers

    @property
    def ssm_inner(self) -> int:
        return self.ssm_expand * self.hidden

    # ---- parameters per layer ------------------------------------------------------------
    def attention_params(self) -> float:
        h = self.hidden
        if self.architecture == "ssm":
            return 0.0
        if self.attention == "mla":
            qk = self.qk_nope_dim + self.qk_rope_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.heads * qk) if self.q_lora_rank else h * self.heads * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_dim) + self.kv_lora_rank * self.heads * (self.qk_nope_dim + self.v_head_dim)
            return float(q + kv + self.heads * self.v_head_dim * h)
        q_o = 2 * h * self.heads * self.head_dim
        k_v = 2 * h * self.kv_heads * self.head_dim
        return float(q_o + k_v)

    def mlp_params(self, ffn: int | None = None) -> float:
        f = self.ffn if ffn is None else ffn
        return float((3 if self.ffn_gated else 2) * self.hidden * f)

    def ssm_params(self) -> float:
        h, di, n = self.hidden, self.ssm_inner, self.ssm_state
        dt = self.dt_rank or math.ceil(h / 16)
        return float(h * 2 * di + di * self.ssm_conv + di * (dt + 2 * n) + dt * di + di * n + di + di * h)

    def expert_params(self) -> float:
        return self.mlp_params(self.expert_ffn)

    def plain_layer_params(self) -> float:
        if self.architecture == "ssm":
            return self.ssm_params()
        return self.attention_params() + self.mlp_params()

    def moe_layer_dense_params(self) -> float:
        """Weights every token uses in an MoE layer: attention, shared experts, router."""
        return self.attention_params() + self.shared_experts * self.expert_params() + self.hidden * self.experts

    def embedding_params(self) -> float:
        return float(self.vocab * self.hidden * (1 if self.tied_embeddings else 2))

    def computed_params(self) -> float:
        total = self.plain_layers * self.plain_layer_params() + self.embedding_params()
        total += self.moe_layers * (self.moe_layer_dense_params() + self.experts * self.expert_params())
        return total

    def computed_active_params(self) -> float:
        total = self.plain_layers * self.plain_layer_params() + self.embedding_params()
        total += self.moe_layers * (self.moe_layer_dense_params() + self.active_experts * self.expert_params())
        return total

    # ---- attention shapes ------------------------------------------------------------
    def kv_elements_per_token_layer(self) -> int:
        """Elements cached per token per layer (K and V; the latent for MLA)."""
        if not self.has_attention:
            return 0
        if self.attention == "mla":
            return self.kv_lora_rank + self.qk_rope_dim
        return 2 * self.kv_heads * self.head_dim

    def kv_groups(self) -> int:
        """How many ways the KV cache can be split across tensor-parallel ranks."""
        return 1 if self.attention == "mla" else self.kv_heads

    def attention_dims(self) -> tuple[int, int]:
        """(query-key dim, value dim) per head, as the attention kernel sees them."""
        if self.attention == "mla":  # absorbed form: attention runs over the latent
            return self.kv_lora_rank + self.qk_rope_dim, self.kv_lora_rank
        return self.head_dim, self.head_dim
