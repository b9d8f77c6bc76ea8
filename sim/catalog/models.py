"""Model architectures as their config files state them, and the shapes derived from them.

Parameter counts are computed from the shapes (attention, MLP or experts, embeddings) so the
catalog's stated `params` is a check on the arithmetic, not an input to it.

`modality` says what a request to the model is and how it maps onto device work:

- `text`: prompt tokens in, output tokens out (a causal decoder).
- `embedding`: an encoder: one bidirectional pass over the prompt, one vector out.
- `speech_to_text`: an encoder-decoder (Whisper). Its `speech:` block says how audio becomes
  tokens: each window of `window_seconds` is a request whose prompt is the encoder's
  positions (plus a few decoder prompt tokens) and whose output is the transcript.
- `text_to_speech`: a decoder that writes audio-codec tokens (Orpheus: SNAC codes); `speech:`
  gives the codec's tokens per second of audio and the chunk decoded before audio plays.
- `image`, `video`: a diffusion transformer (DiT). Its `diffusion:` block says how a picture
  or clip becomes latent tokens and how many denoising passes it takes. A DiT has no token
  vocabulary and no LM head: leave out `vocab`; its positions are rotary or interpolated, so
  leave out `max_context` too (a request's size is bounded by the engine's
  `max_batch_tokens` instead).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from ..spec.base import Spec

MODALITIES = ("text", "embedding", "speech_to_text", "text_to_speech", "image", "video")
DIFFUSION_MODALITIES = ("image", "video")   # served by the diffusion engine; the others by the token engine


def a_kind(kind: str) -> str:
    """'a text model', 'an image model': the kind with its article."""
    return ("an " if kind[0] in "aeiou" else "a ") + kind


class DiffusionSpec(Spec):
    """How a diffusion transformer turns a picture or a clip into denoiser work.

    The latent of a W x H image has ceil(W / pixels_per_token) x ceil(H / pixels_per_token)
    tokens (VAE downsampling x patch size); a video of F frames has (F - 1) / frames_per_latent
    + 1 latent frames of those. Each of `steps` denoising steps runs the transformer
    `cfg_passes` times over the sample's tokens (2 with classifier-free guidance: a conditional
    and an unconditional pass). Per token the transformer is a dense non-causal stack of
    `layers` blocks (the model's hidden, heads, ffn); what it does besides that per token:

    - `text_tokens`: text tokens joined to the image tokens in one sequence (MMDiT, FLUX);
    - `cross_attention_tokens`: text tokens every block attends to by cross-attention (Wan):
      not in the sequence; each block holds q, k, v, o projections for them (4 h^2 weights),
      of which q and o run per sequence token;
    - `joint_layers`: blocks that keep a second copy of their weights for the text tokens
      (FLUX's double-stream, MMDiT's joint blocks): weights, not extra FLOPs per token;
    - `per_sample_params`: weights run once per sample and pass, not per token (the adaLN
      modulation layers that turn the timestep into scales and shifts);
    - `text_encoder_flops` and `vae_decode_flops_per_pixel`: the text encoders once per request
      (all their passes: Wan encodes the prompt and the negative prompt), the VAE decoder once
      per output pixel (per frame for video);
    - `text_encoder_params`, `vae_params`: their weights, resident beside the transformer's.
    """

    steps: int = Field(gt=0, description="default sampling steps")
    cfg_passes: int = Field(default=1, ge=1, le=2, description="transformer passes per step: 2 with "
                                                                "classifier-free guidance")
    pixels_per_token: int = Field(default=16, gt=0, description="VAE downsampling x patch size")
    frames_per_latent: int = Field(default=0, ge=0, description="video: frames per latent frame (temporal "
                                                                "compression); 0 for an image model")
    fps: float | None = Field(default=None, gt=0, description="video: frames per second of the output")
    text_tokens: int = Field(default=0, ge=0, description="text tokens in the joint attention sequence")
    cross_attention_tokens: int = Field(default=0, ge=0, description="text tokens attended by cross-attention")
    joint_layers: int = Field(default=0, ge=0, description="blocks with a separate copy of weights for text tokens")
    per_sample_params: float = Field(default=0.0, ge=0, description="weights run once per sample and pass")
    text_encoder_flops: float = Field(default=0.0, ge=0, description="text encoders, per request")
    vae_decode_flops_per_pixel: float = Field(default=0.0, ge=0, description="VAE decoder, per output pixel")
    text_encoder_params: float = Field(default=0.0, ge=0, description="the text encoders' weights, resident")
    vae_params: float = Field(default=0.0, ge=0, description="the VAE's weights, resident")

    def latent_tokens(self, width: int, height: int, frames: int = 1) -> int:
        """Tokens of one sample's sequence: latent patches (x latent frames) + joint text tokens."""
        per_frame = -(-width // self.pixels_per_token) * -(-height // self.pixels_per_token)
        return self.latent_frames(frames) * per_frame + self.text_tokens

    def latent_frames(self, frames: int) -> int:
        return 1 if not self.frames_per_latent else (frames - 1) // self.frames_per_latent + 1


class SpeechSpec(Spec):
    """How seconds of audio become tokens.

    speech_to_text (Whisper): audio is cut into windows of `window_seconds`; each window's
    encoder sees `encoder_positions` positions (padded to the full window) through
    `encoder_layers` layers, and the decoder reads `prompt_tokens` task tokens and writes
    `text_tokens_per_second` tokens per second of speech.
    text_to_speech (Orpheus): the model reads the text (`text_tokens_per_second` tokens per
    second of the speech it will say, plus `prompt_tokens` of fixed prompt) and writes
    `audio_tokens_per_second` codec tokens per second of audio, `tokens_per_frame` per codec
    frame; the codec decodes `first_chunk_tokens` before the first audio can play.
    """

    text_tokens_per_second: float = Field(gt=0, description="text tokens per second of speech")
    prompt_tokens: int = Field(ge=0, description="STT: decoder prompt tokens per window; TTS: fixed prompt "
                                                 "tokens besides the text")
    # speech to text
    window_seconds: float | None = Field(default=None, gt=0, description="seconds of audio per window (request)")
    encoder_positions: int | None = Field(default=None, gt=0, description="encoder positions per window")
    encoder_layers: int | None = Field(default=None, gt=0, description="the audio encoder's layers")
    # text to speech
    audio_tokens_per_second: float | None = Field(default=None, gt=0, description="codec tokens per second of "
                                                                                 "audio")
    tokens_per_frame: int | None = Field(default=None, gt=0, description="codec tokens per codec frame")
    first_chunk_tokens: int | None = Field(default=None, gt=0, description="tokens decoded before audio plays")


STT_FIELDS = ("window_seconds", "encoder_positions", "encoder_layers")
TTS_FIELDS = ("audio_tokens_per_second", "tokens_per_frame", "first_chunk_tokens")


class ModelSpec(Spec):
    name: str = Field(description="the model's full name, in results")
    architecture: Literal["dense", "moe", "ssm"] = Field(description="dense transformer, mixture of experts, or "
                                                                     "state-space (Mamba)")
    params: float = Field(gt=0, description="total parameters as the model card states")
    active_params: float | None = Field(default=None, gt=0, description="parameters active per token as the card "
                                                                        "states (MoE); a check on the computed count")
    layers: int = Field(gt=0, description="transformer (or SSM) blocks")
    hidden: int = Field(gt=0, description="hidden size")
    heads: int = Field(ge=0, description="attention (query) heads")
    kv_heads: int = Field(ge=0, description="key-value heads (fewer than heads: grouped-query attention)")
    head_dim: int = Field(ge=0, description="size of one attention head")
    ffn: int = Field(ge=0, description="MLP intermediate size (of dense layers)")
    ffn_gated: bool = Field(default=True, description="gated MLP (SwiGLU: three matrices instead of two)")
    vocab: int = Field(default=0, ge=0, description="token vocabulary; none for image and video models")
    max_context: int | None = Field(default=None, gt=0, description="longest prompt + output; none for image "
                                                                    "and video models")
    tied_embeddings: bool = Field(default=False, description="the output head shares the input embedding's "
                                                             "weights")
    attention: Literal["gqa", "mla"] = Field(default="gqa", description="grouped-query or multi-head latent "
                                                                        "attention (DeepSeek)")
    # mixture of experts
    experts: int = Field(default=0, ge=0, description="MoE: routed experts per MoE layer")
    active_experts: int = Field(default=0, ge=0, description="MoE: routed experts per token")
    expert_ffn: int = Field(default=0, ge=0, description="MoE: intermediate size of one expert")
    shared_experts: int = Field(default=0, ge=0, description="MoE: always-on experts of size expert_ffn")
    dense_layers: int = Field(default=0, ge=0, description="MoE: leading layers with the dense ffn")
    # multi-head latent attention (DeepSeek)
    q_lora_rank: int = Field(default=0, ge=0, description="MLA: rank of the query compression (0: none)")
    kv_lora_rank: int = Field(default=0, ge=0, description="MLA: rank of the key-value compression (the cached "
                                                           "latent)")
    qk_nope_dim: int = Field(default=0, ge=0, description="MLA: per-head query/key size without rotary embedding")
    qk_rope_dim: int = Field(default=0, ge=0, description="MLA: per-head query/key size with rotary embedding")
    v_head_dim: int = Field(default=0, ge=0, description="MLA: per-head value size")
    # state-space (Mamba)
    ssm_state: int = Field(default=0, ge=0, description="SSM: state size")
    ssm_expand: int = Field(default=0, ge=0, description="SSM: inner size over hidden size")
    ssm_conv: int = Field(default=0, ge=0, description="SSM: convolution width")
    dt_rank: int = Field(default=0, ge=0, description="SSM: rank of the time-step projection (0: hidden / 16)")
    modality: Literal["text", "embedding", "speech_to_text", "text_to_speech", "image", "video"] = Field(
        default="text", description="what a request is and how it maps onto device work (module docstring)")
    diffusion: DiffusionSpec | None = Field(default=None, description="image and video models: how a request "
                                                                      "becomes denoiser work")
    speech: SpeechSpec | None = Field(default=None, description="speech models: how audio becomes tokens")
    source: str = Field(default="", description="where the figures come from")

    @model_validator(mode="after")
    def _consistent(self):
        self._check_modality()
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

    def _check_modality(self) -> None:
        """Each modality has the fields its mapping reads, and no others."""
        kind = self.modality
        if kind in DIFFUSION_MODALITIES:
            if self.diffusion is None:
                raise ValueError(f"{a_kind(kind)} model needs diffusion: (steps, cfg_passes, pixels_per_token, ...)")
            if self.vocab or self.max_context is not None:
                raise ValueError(f"{a_kind(kind)} model (a diffusion transformer) has no token vocabulary and no "
                                 f"context limit: leave out vocab and max_context (the engine's "
                                 f"max_batch_tokens bounds a request instead)")
            if self.architecture != "dense":
                raise ValueError(f"{a_kind(kind)} model is a dense diffusion transformer: architecture: dense")
            if (kind == "video") != bool(self.diffusion.frames_per_latent):
                raise ValueError("diffusion.frames_per_latent applies to video models, which need it" if kind == "video"
                                 else "diffusion.frames_per_latent applies to video models only")
            if kind == "video" and self.diffusion.fps is None:
                raise ValueError("a video model needs diffusion.fps (frames per second of its output)")
            if self.diffusion.joint_layers > self.layers:
                raise ValueError(f"diffusion.joint_layers ({self.diffusion.joint_layers}) exceeds layers "
                                 f"({self.layers})")
        else:
            if self.diffusion is not None:
                raise ValueError(f"diffusion: applies to image and video models; this one is {kind}")
            if not self.vocab or self.max_context is None:
                raise ValueError(f"{a_kind(kind)} model needs vocab (token vocabulary size) and max_context (longest "
                                 f"prompt + output); only image and video models leave them out")
        if kind in ("speech_to_text", "text_to_speech"):
            sp = self.speech
            if sp is None:
                raise ValueError(f"{a_kind(kind)} model needs speech: (how seconds of audio become tokens)")
            need, other = (STT_FIELDS, TTS_FIELDS) if kind == "speech_to_text" else (TTS_FIELDS, STT_FIELDS)
            missing = [f for f in need if getattr(sp, f) is None]
            if missing:
                raise ValueError(f"{a_kind(kind)} model needs speech.{', speech.'.join(missing)}")
            extra = [f for f in other if getattr(sp, f) is not None]
            if extra:
                raise ValueError(f"speech.{', speech.'.join(extra)} do not apply to {a_kind(kind)} model")
            if kind == "speech_to_text":
                if sp.encoder_layers != self.layers:
                    raise ValueError(f"speech.encoder_layers ({sp.encoder_layers}) must equal layers ({self.layers}): "
                                     f"the engine runs one stack of layers for the encoder pass (the prefill) and "
                                     f"the decoder (decode steps), as Whisper's same-shaped encoder and decoder do")
                if self.max_context < sp.encoder_positions + sp.prompt_tokens + 1:
                    raise ValueError(f"max_context ({self.max_context}) must hold a window's encoder positions and "
                                     f"decoder tokens: speech_to_text counts both (e.g. Whisper 1500 + 448)")
        elif self.speech is not None:
            raise ValueError(f"speech: applies to speech_to_text and text_to_speech models; this one is {kind}")

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
            kv = (h * (self.kv_lora_rank + self.qk_rope_dim)
                  + self.kv_lora_rank * self.heads * (self.qk_nope_dim + self.v_head_dim))
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

    @property
    def has_cross_attention(self) -> bool:
        """Each layer also attends to another sequence: Whisper's decoder to the encoder's
        output, Wan's blocks to the text encoder's tokens."""
        return self.modality == "speech_to_text" or bool(self.diffusion and self.diffusion.cross_attention_tokens)

    def cross_attention_params(self) -> float:
        """Weights of one layer's cross-attention: q, k, v, o projections."""
        return 4.0 * self.hidden * self.heads * self.head_dim if self.has_cross_attention else 0.0

    def token_layer_params(self) -> float:
        """Weights one token runs through in one layer (dense models): the layer's attention
        and MLP, plus half of a cross-attention's projections. For Whisper that half is q and o
        for a decoder token and k and v for an encoder position (its keys and values for the
        decoder's cross-attention), so every token of the one stack the engine runs costs the
        same; for Wan it is q and o (k and v run over the text tokens once per pass)."""
        return self.plain_layer_params() + self.cross_attention_params() / 2.0

    def extra_params(self) -> float:
        """Weights outside the token stack the layer formulas count: cross-attention,
        second-stream copies (FLUX double blocks), per-sample modulation, Whisper's encoder."""
        total = self.layers * self.cross_attention_params()
        if self.diffusion is not None:
            total += self.diffusion.joint_layers * self.plain_layer_params() + self.diffusion.per_sample_params
        if self.modality == "speech_to_text":
            total += self.speech.encoder_layers * self.plain_layer_params()
        return total

    def computed_params(self) -> float:
        total = self.plain_layers * self.plain_layer_params() + self.embedding_params() + self.extra_params()
        total += self.moe_layers * (self.moe_layer_dense_params() + self.experts * self.expert_params())
        return total

    def computed_active_params(self) -> float:
        total = self.plain_layers * self.plain_layer_params() + self.embedding_params() + self.extra_params()
        total += self.moe_layers * (self.moe_layer_dense_params() + self.active_experts * self.expert_params())
        return total

    # ---- requests of other kinds ----------------------------------------------------------
    @property
    def bidirectional(self) -> bool:
        """Prefill attention over all query-key pairs (encoders, diffusion transformers),
        not only the causal ones."""
        return self.modality in ("embedding", "speech_to_text", "image", "video")

    def diffusion_pass_flops(self, tokens: float) -> float:
        """FLOPs of one transformer pass over one sample's `tokens` latent tokens: weight
        GEMMs, attention over every pair (and over the cross-attention's text tokens), and the
        per-sample weights. Per step a sample takes cfg_passes of these. Left out: the
        cross-attention's k and v projections of the text tokens (Wan: 2 x 512 x 40 x 2h^2 =
        2.1e12 FLOPs, 0.03% of a 720p pass) and elementwise work (norms, rotary, modulation)."""
        d = self.diffusion
        L = float(tokens)
        cross = float(d.cross_attention_tokens)
        weights = 2.0 * L * self.layers * self.token_layer_params() + 2.0 * d.per_sample_params
        attention = 4.0 * self.heads * self.head_dim * self.layers * (L * L + L * cross)
        return weights + attention

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
