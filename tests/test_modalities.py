"""Requests beyond chat text: image and video diffusion, speech to text, text to speech,
embeddings. Oracles are hand arithmetic from the catalog's numbers; nothing is timed."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from pydantic import TypeAdapter

from sim import catalog
from sim.catalog.hardware import DeviceSpec
from sim.catalog.models import ModelSpec
from sim.core.metrics import COMPLETED, FAILED, IN_FLIGHT, REJECTED
from sim.demand import distributions, media
from sim.results.report import requests_frame
from sim.results.summary import summarize
from sim.results.summary.usage import pool_of_requests
from sim.results.summary.workloads import request_flops
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from sim.timing import kernels
from sim.timing.deployment import cost_vector
from tests.conftest import ROOT

NEW_MODELS = ["flux.1-dev", "flux.1-schnell", "wan2.1-t2v-14b", "whisper-large-v3", "orpheus-3b"]


def model(key: str) -> ModelSpec:
    return ModelSpec.model_validate(catalog.model_entries()[key])


H100 = DeviceSpec.model_validate(catalog.device_entries()["nvidia-h100-sxm"])
GEMM = 989e12 * 0.80        # H100 SXM dense bf16 peak x compute_eff (catalog)
ATTN = 989e12 * 0.75        # x attention_eff
MEM = 3.35e12 * 0.89        # HBM bandwidth x mem_eff
# a diffusion transformer runs in its pipeline's own runtime, whose host time per step has no
# public figure and is not modelled (catalog/engines.yaml, native)
OVERHEAD = 0.0


def scenario(write_scenario, model_key: str, stream: dict, count: int = 1, tp: int = 1, engine=None,
             duration: str = "60s", **top) -> str:
    data = {"name": "m", "seed": 1, "duration": duration,
            "fleet": [{"pool": "p", "device": "nvidia-h100-sxm", "count": count,
                       "serve": {"model": model_key, "tp": tp, "engine": engine or {}}}],
            "workload": [{"name": "w", **stream}]}
    data.update(top)
    return write_scenario({}, base=data)


def run(path: str, seed: int | None = None):
    result = simulate(load_scenario(path), seed)
    return result, summarize(result)


# ---- catalog ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", NEW_MODELS)
def test_new_models_load_cite_sources_and_count_their_weights(key):
    m = model(key)
    assert "http" in m.source and m.modality != "text"
    # parameters computed from the shapes (with per-sample, cross-attention, second-stream and
    # encoder weights) within 2% of the stated count
    assert m.computed_params() == pytest.approx(m.params, rel=0.02)


def test_flux_weights_by_hand():
    m = model("flux.1-dev")
    h = 3072
    per_block = 12 * h * h                   # qkv 3h^2 + proj h^2 + MLP 2 x h x 4h
    stated_modulation = 3.28e9
    assert m.computed_params() == pytest.approx(57 * per_block + 19 * per_block + stated_modulation)


def test_whisper_weights_by_hand():
    m = model("whisper-large-v3")
    h, f, v = 1280, 5120, 51866
    layer = 4 * h * h + 2 * h * f            # self-attention + MLP
    cross = 4 * h * h                        # decoder cross-attention
    assert m.computed_params() == pytest.approx(32 * layer + 32 * cross + 32 * layer + v * h)


def test_image_model_without_diffusion_or_with_vocab_is_refused():
    raw = dict(catalog.model_entries()["flux.1-dev"])
    with pytest.raises(ValueError, match="no token vocabulary"):
        ModelSpec.model_validate({**raw, "vocab": 64})
    with pytest.raises(ValueError, match="needs diffusion"):
        ModelSpec.model_validate({k: v for k, v in raw.items() if k != "diffusion"})
    text = dict(catalog.model_entries()["llama-3.1-8b"])
    with pytest.raises(ValueError, match="needs vocab"):
        ModelSpec.model_validate({k: v for k, v in text.items() if k != "vocab"})
    stt = dict(catalog.model_entries()["whisper-large-v3"])
    with pytest.raises(ValueError, match="encoder_layers"):
        ModelSpec.model_validate({**stt, "speech": {**stt["speech"], "encoder_layers": 2}})


# ---- kernels: one denoising step by hand ----------------------------------------------------------

def test_flux_pass_flops_by_hand():
    m = model("flux.1-dev")
    h, L = 3072, 64 * 64 + 512
    expected = 57 * 2 * L * 12 * h * h + 57 * 4 * h * L * L + 2 * 3.28e9
    assert m.diffusion_pass_flops(L) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(7.44e13, rel=0.01)


def flux_step_by_hand(samples: int = 1) -> float:
    """One FLUX 1024^2 step on one H100 with `samples` images: each operator's roofline."""
    h, L = 3072, 64 * 64 + 512
    tokens = samples * L
    w = 12 * h * h
    act = 16 * h                             # per token: attention 6h, MLP in/out 2h + 2 x 4h
    gemm = max(2 * tokens * w / GEMM, (w * 2 + tokens * act * 2) / MEM)
    attention = max(4 * h * samples * L * L / ATTN, 2 * h * 2 * tokens / MEM)
    per_sample = max(2 * samples * 3.28e9 / GEMM, (3.28e9 * 2 + samples * h * 2) / MEM)
    return 57 * gemm + 57 * attention + per_sample + OVERHEAD


def test_flux_step_time_by_hand():
    p = cost_vector(H100, model("flux.1-dev"), "bf16", 1, OVERHEAD)
    L = 4608
    t = kernels.diffusion_step_time(L, 1, L * L, L, 0.0, 0.0, 0.0, 0.0, p)
    assert t == pytest.approx(flux_step_by_hand(), rel=1e-12)
    assert 0.09 < t < 0.11                   # 7.4e13 FLOPs at ~790 TFLOP/s


def test_bidirectional_prefill_counts_every_pair():
    n = 400
    lens, zero = np.array([n]), np.zeros(1, np.int64)
    empty = np.zeros(0, np.int64)
    bge = cost_vector(H100, model("bge-large-en-v1.5"), "bf16", 1, 0.0)
    assert kernels.batch_time(lens, zero, lens, empty, bge) == \
        pytest.approx(kernels.iteration_time(n, 1, 1, n * n, n, 0.0, 1, bge), rel=1e-12)
    llama = cost_vector(H100, model("llama-3.1-8b"), "bf16", 1, 0.0)
    assert kernels.batch_time(lens, zero, lens, empty, llama) == \
        pytest.approx(kernels.iteration_time(n, 1, 1, n * (n + 1) / 2, n, 0.0, 1, llama), rel=1e-12)


def test_whisper_cost_vector_maps_encoder_and_decoder_onto_one_stack():
    h = 1280
    p = cost_vector(H100, model("whisper-large-v3"), "bf16", 1, 0.0)
    # per token per layer: self-attention 4h^2 + MLP 2 x h x 4h + half the cross-attention (2h^2)
    assert p[kernels.K_PLAIN_W] == 4 * h * h + 8 * h * h + 2 * h * h
    assert p[kernels.K_BIDIRECTIONAL] == 1.0 and p[kernels.K_HEAD_W] == 51866 * h
    assert cost_vector(H100, model("orpheus-3b"), "bf16", 1, 0.0)[kernels.K_BIDIRECTIONAL] == 0.0


# ---- image generation ----------------------------------------------------------------------------

def test_image_latency_on_an_idle_replica(write_scenario):
    """50 steps, the text encoders in the first and the VAE decode in the last, nothing else."""
    path = scenario(write_scenario, "flux.1-dev", {"rate": "1/s", "requests": 1,
                                                  "image": {"width": 1024, "height": 1024}})
    result, summary = run(path)
    t = result.table
    assert t.prompt[0] == 4608 and t.output[0] == 50 and t.samples[0] == 1
    encode = max(4.86e12 / GEMM, 4.885e9 * 2 / MEM)
    decode = max(9.99e6 * 1024 * 1024 / GEMM, 8.4e7 * 2 / MEM)
    expected = 50 * flux_step_by_hand() + encode + decode
    assert t.finished[0] - t.arrival[0] == pytest.approx(expected, rel=1e-9)
    assert t.admitted[0] == t.arrival[0] and np.isnan(t.first_token[0]) and t.generated[0] == 50
    image = summary["modalities"]["image"]
    assert image["latency_s"]["p50"] == pytest.approx(expected, rel=1e-9)
    assert image["time_per_step_s"]["p50"] == pytest.approx(expected / 50, rel=1e-9)


def test_batching_images_costs_less_than_running_them_apart(write_scenario):
    p = cost_vector(H100, model("flux.1-dev"), "bf16", 1, OVERHEAD)
    L = 4608.0

    def step(b):
        return kernels.diffusion_step_time(b * L, b, b * L * L, b * L, 0.0, 0.0, 0.0, 0.0, p)
    assert step(1) < step(2) < 2 * step(1)
    assert step(2) == pytest.approx(flux_step_by_hand(2), rel=1e-12)
    # the same through the engine: one request of two images against one of one
    one = scenario(write_scenario, "flux.1-dev",
                   {"rate": "1/s", "requests": 1, "image": {"width": 1024, "height": 1024}},
                   engine={"max_batch_tokens": 16384})
    two = scenario(write_scenario, "flux.1-dev", {"rate": "1/s", "requests": 1,
                                                  "image": {"width": 1024, "height": 1024, "images": 2}},
                   engine={"max_batch_tokens": 16384})
    e1 = run(one)[0].table
    e2 = run(two)[0].table
    assert e2.prompt[0] == 2 * 4608 and e2.samples[0] == 2
    lat1, lat2 = e1.finished[0] - e1.arrival[0], e2.finished[0] - e2.arrival[0]
    assert lat1 < lat2 < 2 * lat1


def test_requests_join_at_step_boundaries_and_static_batches_do_not(write_scenario):
    stream = {"rate": "1/s", "arrival": "constant", "requests": 2, "image": {"width": 1024, "height": 1024}}
    cont = run(scenario(write_scenario, "flux.1-dev", stream, engine={"max_batch_tokens": 16384}))[0].table
    static = run(scenario(write_scenario, "flux.1-dev", stream,
                          engine={"max_batch_tokens": 16384, "batching": "static"}))[0].table
    a, b = np.argsort(cont.arrival)
    assert cont.arrival[b] > cont.arrival[a] and cont.admitted[b] < cont.finished[a]     # joined midway
    a, b = np.argsort(static.arrival)
    assert static.admitted[b] == static.finished[a]                                   # waited for the batch


def test_oversized_request_is_an_error_at_its_line(write_scenario):
    path = scenario(write_scenario, "flux.1-dev", {"rate": "1/s", "image": {"width": 2048, "height": 2048}})
    with pytest.raises(ScenarioError, match=r"\.yaml:\d+: workload\[0\]\.image: a request puts 16,896 tokens"):
        load_scenario(path)
    path = scenario(write_scenario, "flux.1-dev", {"rate": "1/s", "image": {"width": 512, "height": 512, "images": 4}},
                    engine={"max_batch_seqs": 2})
    with pytest.raises(ScenarioError, match=r"workload\[0\]\.image\.images: 4 images per request exceed"):
        load_scenario(path)


# ---- video generation ------------------------------------------------------------------------------

def test_wan_token_counts():
    d = model("wan2.1-t2v-14b").diffusion
    assert d.latent_tokens(1280, 720, 81) == 21 * 45 * 80 == 75_600
    assert d.latent_tokens(832, 480, 81) == 21 * 30 * 52 == 32_760
    assert model("flux.1-dev").diffusion.latent_tokens(1024, 1024) == 64 * 64 + 512


def test_video_steps_with_guidance_and_cross_attention(write_scenario):
    """Two steps of a 480p clip on 8 GPUs: each step is both guidance passes over the
    clip's tokens, attending to every pair and to the 512 text tokens."""
    path = scenario(write_scenario, "wan2.1-t2v-14b", {"rate": "1/s", "requests": 1,
                                                      "video": {"width": 832, "height": 480, "frames": 81, "steps": 2}},
                    count=8, tp=8, engine={"max_batch_tokens": 65536, "max_batch_seqs": 1})
    result, summary = run(path)
    t = result.table
    L, c, x = 32_760.0, 2.0, 512.0
    p = result.scenario.pools[0].deployment.params
    step = kernels.diffusion_step_time(c * L, c, c * (L * L + L * x), c * (L + x), 0.0, 0.0, 0.0, 0.0, p)
    encode = max(9.69e12 / 8 / GEMM, 5.68e9 * 2 / 8 / MEM)
    decode = max(6.19e6 * 832 * 480 * 81 / 8 / GEMM, 1.27e8 * 2 / 8 / MEM)
    assert t.finished[0] - t.arrival[0] == pytest.approx(2 * step + encode + decode, rel=1e-9)
    assert t.media_seconds[0] == pytest.approx(81 / 16)
    assert summary["modalities"]["video"]["videos_per_s"] >= 0


def test_video_frames_must_fit_the_temporal_compression(write_scenario):
    path = scenario(write_scenario, "wan2.1-t2v-14b",
                    {"rate": "1/s", "video": {"width": 832, "height": 480, "frames": 80}},
                    count=8, tp=8, engine={"max_batch_tokens": 200000})
    with pytest.raises(ScenarioError, match=r"workload\[0\]\.video\.frames: .* frames must be 4n \+ 1 \(e\.g\. 77\)"):
        load_scenario(path)


def test_video_model_that_does_not_fit_names_its_text_encoder(write_scenario):
    path = scenario(write_scenario, "wan2.1-t2v-14b",
                    {"rate": "1/s", "video": {"width": 832, "height": 480, "frames": 81}},
                    engine={"max_batch_tokens": 600000})
    with pytest.raises(ScenarioError, match=r"fleet\[0\]\.serve: wan2.1-t2v-14b at bf16 does not fit .*text encoders"):
        load_scenario(path)


# ---- speech to text --------------------------------------------------------------------------------

def test_stt_window_splitting_by_hand():
    clip, offset, seconds, output = media.stt_windows(model("whisper-large-v3"), np.array([75.0, 4.0, 30.0]))
    assert clip.tolist() == [0, 0, 0, 1, 2]
    assert offset.tolist() == [0, 1, 2, 0, 0]
    assert seconds.tolist() == [30.0, 30.0, 15.0, 4.0, 30.0]
    assert output.tolist() == [99, 99, 50, 13, 99]    # round(3.3 x seconds)


def test_stt_clip_latency_is_its_last_window(write_scenario):
    path = scenario(write_scenario, "whisper-large-v3", {"rate": "1/s", "requests": 1, "audio_seconds": "75s"})
    result, summary = run(path)
    t = result.table
    assert t.n == 3 and (t.arrival == t.arrival[0]).all() and t.clip.tolist() == [0, 0, 0]
    assert t.prompt.tolist() == [1504] * 3 and t.output.tolist() == [99, 99, 50]
    assert (t.state == COMPLETED).all()
    stt = summary["modalities"]["speech_to_text"]
    latency = t.finished.max() - t.arrival[0]
    assert stt["clips"] == 1 and stt["clips_completed"] == 1 and stt["windows_per_clip"] == 3
    assert stt["clip_latency_s"]["p50"] == pytest.approx(latency)
    assert stt["real_time_factor"]["p50"] == pytest.approx(latency / 75.0)
    assert t.finished.max() > t.finished.min()    # the short last window ends first
    frame = requests_frame(result)
    assert set(frame["modality"]) == {"speech_to_text"} and frame["media_seconds"].sum() == pytest.approx(75.0)


def test_stt_prefill_attends_to_every_encoder_pair():
    """A window's prefill: 1,504 tokens of the one stack, every query-key pair."""
    p = cost_vector(H100, model("whisper-large-v3"), "bf16", 1, 0.0)
    n = 1504
    assert kernels.prefill_time(p, n) == pytest.approx(kernels.iteration_time(n, 1, 1, n * n, n, 0.0, 1, p), rel=1e-12)


# ---- text to speech --------------------------------------------------------------------------------

def test_tts_tokens_and_time_to_first_audio(write_scenario):
    path = scenario(write_scenario, "orpheus-3b", {"rate": "1/s", "requests": 1, "audio_seconds": "10s"})
    result, summary = run(path)
    t = result.table
    assert t.output[0] == 820                     # 82 codec tokens per second
    assert t.prompt[0] == 33 + 8                  # round(3.3 x 10) text tokens + 8 fixed prompt tokens
    ttft = t.first_token[0] - t.arrival[0]
    tpot = (t.finished[0] - t.first_token[0]) / 819
    tts = summary["modalities"]["text_to_speech"]
    assert tts["time_to_first_audio_s"]["p50"] == pytest.approx(ttft + 27 * tpot, rel=1e-12)
    assert tts["real_time_factor"]["p50"] == pytest.approx((t.finished[0] - t.first_token[0]) / 10.0, rel=1e-12)
    # one sequence decoding alone: each step reads the weights once, so it writes faster than it plays
    assert tts["real_time_factor"]["p50"] < 1


def test_tts_prompt_tokens_may_be_given(write_scenario):
    path = scenario(write_scenario, "orpheus-3b", {"rate": "1/s", "requests": 1, "audio_seconds": "2s",
                                                  "prompt_tokens": 100})
    t = run(path)[0].table
    assert t.prompt[0] == 100 and t.output[0] == 164


# ---- mismatched streams -------------------------------------------------------------------------------

@pytest.mark.parametrize("model_key, stream, message", [
    ("llama-3.1-8b", {"image": {"width": 512, "height": 512}},
     r"workload\[0\]\.image: llama-3.1-8b is a text model, which takes prompt_tokens and output_tokens; image: "
     r"applies to image models"),
    ("flux.1-dev", {"prompt_tokens": 10, "output_tokens": 10},
     r"workload\[0\]: flux.1-dev is an image model: give image: \{width: 1024, height: 1024\}"),
    ("flux.1-dev", {"audio_seconds": "3s"},
     r"workload\[0\]\.audio_seconds: flux.1-dev is an image model, which takes image:; "
     r"audio_seconds: applies to speech"),
    ("whisper-large-v3", {"video": {"width": 64, "height": 64, "frames": 1}},
     r"workload\[0\]\.video: whisper-large-v3 is a speech_to_text model, which takes audio_seconds:"),
    ("whisper-large-v3", {"audio_seconds": "3s", "prompt_tokens": 5},
     r"workload\[0\]\.prompt_tokens: whisper-large-v3 reads 1500 encoder positions"),
])
def test_stream_fields_must_fit_the_models_modality(write_scenario, model_key, stream, message):
    path = scenario(write_scenario, model_key, {"rate": "1/s", **stream})
    with pytest.raises(ScenarioError, match=r"scenario\d+\.yaml:\d+: " + message):
        load_scenario(path)


def test_stream_with_two_media_or_media_and_tokens_is_refused(write_scenario):
    path = scenario(write_scenario, "flux.1-dev", {"rate": "1/s", "image": {"width": 64, "height": 64},
                                                  "output_tokens": 5})
    with pytest.raises(ScenarioError, match="image: sets the requests' sizes; remove output_tokens"):
        load_scenario(path)
    path = scenario(write_scenario, "flux.1-dev", {"rate": "1/s", "image": {"width": 64, "height": 64},
                                                  "audio_seconds": "2s"})
    with pytest.raises(ScenarioError, match="give one of audio_seconds, image, video"):
        load_scenario(path)


def test_diffusion_pool_refuses_chunked_prefill(write_scenario):
    path = scenario(write_scenario, "flux.1-dev", {"rate": "1/s", "image": {"width": 64, "height": 64}},
                    engine={"chunked_prefill": 512})
    with pytest.raises(ScenarioError, match=r"fleet\[0\]\.serve\.engine\.chunked_prefill: a diffusion transformer"):
        load_scenario(path)


def test_encoder_pools_refuse_chunked_prefill(write_scenario):
    for key, stream in (("whisper-large-v3", {"audio_seconds": "5s"}),
                        ("bge-large-en-v1.5", {"prompt_tokens": 100, "output_tokens": 1})):
        path = scenario(write_scenario, key, {"rate": "1/s", **stream}, engine={"chunked_prefill": 256})
        with pytest.raises(ScenarioError, match=r"engine\.chunked_prefill: .* is an encoder .* chunks would split"):
            load_scenario(path)


def test_diffusion_pool_refuses_priority_classes(write_scenario):
    data = {"name": "m", "duration": "10s",
            "fleet": [{"pool": "p", "device": "nvidia-h100-sxm", "count": 1, "serve": {"model": "flux.1-dev"}}],
            "workload": [{"name": "a", "rate": "1/s", "image": {"width": 64, "height": 64}},
                         {"name": "b", "rate": "1/s", "priority": 1, "image": {"width": 64, "height": 64}}]}
    with pytest.raises(ScenarioError, match=r"engine\.preempt_lower: the diffusion engine serves .* in arrival order"):
        load_scenario(write_scenario({}, base=data))


# ---- summary, records, compute ------------------------------------------------------------------------

def test_images_report_no_first_token(write_scenario):
    path = scenario(write_scenario, "flux.1-dev", {"rate": "0.5/s", "image": {"width": 512, "height": 512, "steps": 8}},
                    duration="30s")
    result, summary = run(path)
    assert summary["latency_s"]["ttft"]["p50"] is None and summary["latency_s"]["tpot"]["p50"] is None
    assert summary["latency_s"]["e2e"]["p50"] is not None
    frame = requests_frame(result)
    assert frame["ttft"].isna().all() and frame["tpot"].isna().all() and (frame["modality"] == "image").all()
    image = summary["modalities"]["image"]
    done = (result.table.state == COMPLETED) & (result.table.finished <= summary["window_s"][1])
    window = summary["window_s"][1] - summary["window_s"][0]
    assert image["images_per_s"] == pytest.approx(done.sum() / window)
    # the pool's hour (devices and power), idle time included, over the images it finished
    assert image["usd_per_image"] == pytest.approx(summary["cost"]["usd_per_hour"] * window / 3600 / done.sum())


def test_request_flops_of_an_image_and_a_window(write_scenario):
    path = scenario(write_scenario, "flux.1-dev",
                    {"rate": "1/s", "requests": 1, "image": {"width": 1024, "height": 1024}})
    result, _ = run(path)
    flops = request_flops(result, pool_of_requests(result))
    h, L = 3072, 4608
    per_pass = 57 * 2 * L * 12 * h * h + 57 * 4 * h * L * L + 2 * 3.28e9
    assert flops[0] == pytest.approx(50 * per_pass + 4.86e12 + 9.99e6 * 1024 * 1024, rel=1e-12)
    path = scenario(write_scenario, "whisper-large-v3", {"rate": "1/s", "requests": 1, "audio_seconds": "30s"})
    result, _ = run(path)
    flops = request_flops(result, pool_of_requests(result))
    h = 1280
    assert flops[0] == pytest.approx(2 * 32 * 14 * h * h * (1504 + 99) + 2 * 51866 * h * 99, rel=1e-12)


def test_multimodal_scenario_conserves_requests_and_repeats_under_its_seed():
    path = os.path.join(ROOT, "scenarios", "multimodal.yaml")
    short = ["duration=40s", "warmup=5s", "drain=20s", "workload[1].rate=6/min", "workload[1].video.steps=4"]
    a, b = simulate(load_scenario(path, short), 3), simulate(load_scenario(path, short), 3)
    t = a.table
    counts = [int(np.sum(t.state == s)) for s in (COMPLETED, REJECTED, FAILED, IN_FLIGHT)]
    assert sum(counts) == t.n > 0
    kinds = {media.KINDS[k] for k in np.unique(t.modality)}
    assert kinds == {"image", "video", "speech_to_text", "text_to_speech"}
    for name in ("arrival", "prompt", "output", "admitted", "first_token", "finished", "state", "clip",
                 "media_seconds", "samples", "pixels", "modality"):
        assert np.array_equal(getattr(a.table, name), getattr(b.table, name), equal_nan=True), name
    # no negative or NaN time for anything completed
    done = t.state == COMPLETED
    assert (t.finished[done] >= t.admitted[done]).all() and (t.admitted[done] >= t.arrival[done]).all()
    summary = summarize(a)
    assert set(summary["modalities"]) == kinds


def test_audio_seconds_accept_mixtures_and_units():
    spec = TypeAdapter(distributions.AudioSeconds).validate_python(
        {"dist": "mixture", "weights": [3, 1], "parts": ["4s", {"dist": "uniform", "min": "1min", "max": "3min"}]})
    x = distributions.draw(spec, 20000, np.random.default_rng(0))
    assert distributions.mean(spec) == pytest.approx(0.75 * 4 + 0.25 * 120)
    assert x.mean() == pytest.approx(33.0, rel=0.03)
    assert set(np.round(x[x < 10], 6)) == {4.0} and x.max() <= 180.0


def test_media_arrivals_repeat_under_a_seed(write_scenario):
    path = scenario(write_scenario, "whisper-large-v3", {"rate": "2/s", "audio_seconds":
                                                        {"dist": "lognormal", "mean": "40s", "cv": 1.0}})
    a, b = run(path, 3)[0].table, run(path, 3)[0].table
    c = run(path, 4)[0].table
    assert np.array_equal(a.media_seconds, b.media_seconds) and np.array_equal(a.clip, b.clip)
    assert not (len(a.media_seconds) == len(c.media_seconds) and np.array_equal(a.media_seconds, c.media_seconds))
    # a clip's windows are consecutive rows that point at the first
    first = a.clip[a.clip >= 0]
    assert (a.arrival[a.clip >= 0] == a.arrival[first]).all()
    assert math.isclose(float(np.nansum(a.media_seconds)), float(np.nansum(b.media_seconds)))


def test_library_workloads_describe_media_by_their_fields():
    import yaml
    for name, field in (("image-generation.yaml", "image"), ("video-generation.yaml", "video"),
                        ("speech-to-text.yaml", "audio_seconds"), ("text-to-speech.yaml", "audio_seconds")):
        with open(os.path.join(ROOT, "workloads", name)) as f:
            data = yaml.safe_load(f)
        assert field in data and "prompt_tokens" not in data and "output_tokens" not in data
