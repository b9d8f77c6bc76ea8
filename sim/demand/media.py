"""Requests that are not chat text: how audio, images and video become engine work.

A workload stream that asks a speech, image or video model describes each request by its
media, and the request table keeps token-shaped columns the engines read:

| model modality  | stream field            | requests per arrival          | `prompt`                       | `output`                    |
|-----------------|-------------------------|-------------------------------|--------------------------------|-----------------------------|
| speech_to_text  | `audio_seconds: <dist>` | ceil(s / window) windows      | encoder positions + task tokens | text tokens of that window  |
| text_to_speech  | `audio_seconds: <dist>` | 1                             | text tokens + fixed prompt     | codec tokens of the audio   |
| image           | `image: {width, ...}`   | 1 (of `images` samples)       | latent tokens x images         | denoising steps             |
| video           | `video: {width, ...}`   | 1                             | latent tokens                  | denoising steps             |

Speech to text: a clip of s seconds is cut into windows of the model's `window_seconds`; every
window is its own request, all arriving with the clip, so a long recording is transcribed in
parallel windows as batched Whisper servers do. A window of w seconds has
`encoder_positions + prompt_tokens` prompt tokens (the encoder always sees a whole, padded
window) and max(1, round(text_tokens_per_second x w)) output tokens. The table's `clip`
column names each window's clip (the row of its first window) so the summary can report a
clip's latency: until its last window is done.

Text to speech: output = max(1, round(audio_tokens_per_second x s)); the prompt is the
stream's `prompt_tokens` when given, else round(text_tokens_per_second x s) (the text that
takes s seconds to say) + the model's fixed `prompt_tokens`.

Images and video: see `sim.catalog.models.DiffusionSpec` for the latent token count; `output` holds
the steps and `samples` the images a request asks for (each a sample of L tokens).

`media_seconds` holds the audio (or video) seconds of each request; `pixels` the output
pixels (x frames x images) the VAE decodes.
"""  # noqa: E501 -- the rows of a Markdown table cannot be wrapped
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from ..catalog.models import MODALITIES, ModelSpec
from ..spec.base import Spec
from .distributions import draw

KINDS = MODALITIES
# DDPM samples in 1,000 steps, today's samplers in 20-100; a step count held as a 64-bit integer
# must also stay far from overflowing once multiplied by a request's images
STEPS_LIMIT = 100_000
KIND_CODE = {k: i for i, k in enumerate(KINDS)}   # the request table's `modality` column


# ---- images and video --------------------------------------------------------------------------

class ImageRequest(Spec):
    """Each request asks for `images` pictures of width x height pixels, denoised in `steps`
    (default: the model's)."""

    width: int = Field(gt=0, description="pixels")
    height: int = Field(gt=0, description="pixels")
    steps: int | None = Field(default=None, gt=0, le=STEPS_LIMIT, description="denoising steps; default: the model's")
    images: int = Field(default=1, ge=1, description="images per request, denoised as one batch")


class VideoRequest(Spec):
    """Each request asks for one clip of `frames` frames of width x height pixels."""

    width: int = Field(gt=0, description="pixels")
    height: int = Field(gt=0, description="pixels")
    frames: int = Field(gt=0, description="frames of the clip")
    steps: int | None = Field(default=None, gt=0, le=STEPS_LIMIT, description="denoising steps; default: the model's")


# ---- one stream's requests ---------------------------------------------------------------------

@dataclass
class MediaColumns:
    """The requests of one stream, one row per request (an STT clip gives several)."""

    time: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    modality: int
    offset: np.ndarray          # STT: position of the window in its clip (0: the first); else 0
    media_seconds: np.ndarray   # audio (or video) seconds of the request; NaN where none
    samples: np.ndarray         # images (video: clips) per request; 0 for token models
    pixels: np.ndarray          # output pixels x frames x images (0 for token models)


def stt_windows(model: ModelSpec, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clip lengths -> (clip of each window, window offset in its clip, window seconds, output tokens)."""
    sp = model.speech
    W = sp.window_seconds
    count = np.maximum(np.ceil(seconds / W - 1e-9), 1).astype(np.int64)
    clip = np.repeat(np.arange(len(seconds)), count)
    first = np.repeat(np.cumsum(count) - count, count)
    offset = np.arange(len(clip)) - first
    length = np.minimum(W, seconds[clip] - offset * W)
    output = np.maximum(1, np.rint(sp.text_tokens_per_second * length)).astype(np.int64)
    return clip, offset, length, output


def stream_requests(stream, model: ModelSpec, t: np.ndarray, rng_for) -> MediaColumns:
    """The requests of a media stream (audio_seconds, image or video) at arrival times `t`.
    `rng_for(part)` gives the stream's generator for a named part (so each draw has its own)."""
    n = len(t)
    kind = model.modality
    code = KIND_CODE[kind]
    if kind == "speech_to_text":
        seconds = draw(stream.audio_seconds, n, rng_for("audio"))
        clip, offset, length, output = stt_windows(model, seconds)
        prompt = np.full(len(clip), model.speech.encoder_positions + model.speech.prompt_tokens, np.int64)
        zeros = np.zeros(len(clip), np.int64)
        return MediaColumns(t[clip], prompt, output, code, offset, length, zeros, zeros.astype(float))
    if kind == "text_to_speech":
        sp = model.speech
        seconds = draw(stream.audio_seconds, n, rng_for("audio"))
        output = np.maximum(1, np.rint(sp.audio_tokens_per_second * seconds)).astype(np.int64)
        if stream.prompt_tokens is not None:
            prompt = draw(stream.prompt_tokens, n, rng_for("prompt"))
        else:
            prompt = np.maximum(1, np.rint(sp.text_tokens_per_second * seconds)).astype(np.int64) + sp.prompt_tokens
        zeros = np.zeros(n, np.int64)
        return MediaColumns(t, prompt, output, code, zeros, seconds, zeros, zeros.astype(float))
    d = model.diffusion
    if kind == "image":
        req = stream.image
        L = d.latent_tokens(req.width, req.height)
        samples, frames, seconds = req.images, 1, np.nan
    else:
        req = stream.video
        L = d.latent_tokens(req.width, req.height, req.frames)
        samples, frames, seconds = 1, req.frames, req.frames / d.fps
    steps = req.steps or d.steps
    return MediaColumns(t, np.full(n, L * samples, np.int64), np.full(n, steps, np.int64), code,
                        np.zeros(n, np.int64), np.full(n, seconds), np.full(n, samples, np.int64),
                        np.full(n, float(req.width * req.height * frames * samples)))


def media_field(stream) -> str | None:
    """The media field a stream sets: 'audio_seconds', 'image', 'video', or None."""
    for name in ("audio_seconds", "image", "video"):
        if getattr(stream, name, None) is not None:
            return name
    return None


# ---- compute per request -------------------------------------------------------------------------

def request_flops(model: ModelSpec, prompt: np.ndarray, output: np.ndarray, samples: np.ndarray,
                  pixels: np.ndarray) -> np.ndarray:
    """Model FLOPs of requests to a speech or diffusion model.

    speech_to_text: every token of the stack (the window's encoder positions, its decoder
    tokens) runs `token_layer_params` per layer, and each output token the LM head; attention
    is not counted (as for text). Image and video: steps x passes x samples x
    `diffusion_pass_flops` (attention included: it is 20% of a FLUX 1024^2 pass and 72% of a
    Wan 720p one), plus the text encoders and the VAE decoder.
    """
    prompt = np.asarray(prompt, float)
    output = np.asarray(output, float)
    if model.diffusion is not None:
        d = model.diffusion
        s = np.maximum(np.asarray(samples, float), 1.0)
        L = prompt / s
        per_pass = np.array([model.diffusion_pass_flops(x) for x in L]) if len(L) else np.zeros(0)
        return (output * d.cfg_passes * s * per_pass + d.text_encoder_flops
                + d.vae_decode_flops_per_pixel * np.asarray(pixels, float))
    stack = model.layers * model.token_layer_params()
    head = 0.0 if model.modality == "embedding" else model.vocab * model.hidden
    return 2.0 * stack * (prompt + output) + 2.0 * head * output


__all__ = ["ImageRequest", "VideoRequest", "KINDS", "KIND_CODE", "stream_requests", "stt_windows",
           "request_flops", "media_field"]
