"""Serving engines as they ship: presets of each framework's defaults, by version.

A pool's `engine: {framework: vllm, version: 0.11.0}` takes every field it does not set
itself from `catalog/engines.yaml`, where each value cites the engine's source. Some
defaults depend on the device (vLLM's token budget on GPU memory, SGLang's chunk size and
memory fraction on memory and tp): tiers and rules below apply them. A pool that names no
framework runs its device's usual engine (`default_engine:` in the device catalog; vLLM
where it says none) at that engine's default version, and the run says so.

`effective` returns the engine the pool really runs, the host costs of its iterations, and
the `assumed:` lines that say what was chosen for the user.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from .. import catalog
from ..spec import source
from ..spec.units import parse_bytes, parse_duration

ENGINES_FILE = os.path.join(os.path.dirname(catalog.__file__), "engines.yaml")
MIB = 1024 ** 2
GIB = 1024 ** 3
# what a preset may set on the pool's engine (the rest of a preset is rules and sources)
ENGINE_FIELDS = ("max_batch_seqs", "max_batch_tokens", "chunked_prefill", "mixed_batches", "kv_reservation",
                 "kv_watermark", "batch_size_tuning", "block_size", "memory_utilization", "memory_of",
                 "graph_max_tokens", "graph_decode_only", "overlap", "iteration_overhead", "host_per_seq", "launch")


@functools.lru_cache(maxsize=1)
def _source() -> source.Source:
    return source.load(ENGINES_FILE)


def frameworks() -> dict[str, dict]:
    return _source().data["engines"]


def versions(framework: str) -> list[str]:
    return list(frameworks()[framework]["versions"])


def default_version(framework: str) -> str:
    return str(frameworks()[framework]["default_version"])


def preset(framework: str, version: str) -> dict:
    entry = frameworks()[framework]
    common, own = entry.get("common", {}), entry["versions"][version]
    values = {**common, **own}
    values["sources"] = {**common.get("sources", {}), **own.get("sources", {})}
    return values


@dataclass(frozen=True)
class Choice:
    framework: str
    version: str
    values: dict            # engine field -> value the preset gives this pool
    notes: tuple            # assumed: lines
    sglang_seqs: bool = False   # max_batch_seqs follows SGLang's rule once the KV pool is known


def choose(engine, device, model, precision: str, tp: int, pp: int) -> Choice:
    """The preset values for a pool (see the module docstring); fields the pool sets itself
    are left out, so they stand."""
    notes = []
    if model.diffusion is not None and engine.framework is None:
        # a diffusion transformer is served by its pipeline runtime, not by an LLM engine
        return Choice("native", default_version("native"), {k: v for k, v in _resolved_native().items()
                                                           if k not in engine.model_fields_set},
                      ("engine: a diffusion transformer runs in its pipeline's own runtime: no LLM engine preset",))
    framework = framework_for(engine, device)
    if engine.framework is None and device.default_engine is None:
        notes.append(f"engine: no engine.framework given and no default engine for {device.name}: vLLM assumed")
    elif engine.framework is None:
        notes.append(f"engine: no engine.framework given: {device.name}'s usual engine, "
                     f"{frameworks()[framework]['name']}")
    version = engine.version or default_version(framework)
    if engine.version is None:
        notes.append(f"engine: {framework} {version} (the preset's default version)")
    values = preset(framework, version)
    if values.get("assumed"):
        notes.append(f"engine: {values['assumed']}")
    tier = next((t for t in values.pop("tiers", []) if _matches(t, device)), {})
    values.update({k: v for k, v in tier.items() if k not in ("below_memory", "at_least_memory", "name_contains")})
    if device.runtime is not None and framework != "native":
        values.update(device.runtime.values())
        notes.append(f"engine: host times of {device.name}'s own runtime (device catalog, runtime), not the "
                     f"{framework} preset's")
    long_context = values.pop("long_context", None)
    if long_context and (model.max_context or 0) > long_context["above_context"]:
        values.update({k: v for k, v in long_context.items() if k != "above_context"})
    if values.get("max_batch_tokens") == "max_context":
        values["max_batch_tokens"] = max(model.max_context or 2048, 2048)
    if "max_batch_tokens" in engine.model_fields_set:   # the pool's own budget sizes what follows from it
        values["max_batch_tokens"] = engine.max_batch_tokens
    if values.get("graph_max_tokens") == "sglang_rule":
        values["graph_max_tokens"] = _sglang_graph_max(device.memory, tp)
    if values.get("memory_utilization") == "sglang_rule":
        values["memory_utilization"] = _sglang_memory_fraction(version, device.memory, tp * pp,
                                                               values["max_batch_tokens"],
                                                               values.get("graph_max_tokens", 0))
    if model.bidirectional:   # the engines do not split an encoder's input (vLLM: pooling models do not chunk)
        values["chunked_prefill"] = False
    if values.get("chunked_prefill") is True:
        values["chunked_prefill"] = values["max_batch_tokens"]
    elif values.get("chunked_prefill") is False:
        values["chunked_prefill"] = None
    _parse_durations(values)
    sglang_seqs = values.get("max_batch_seqs") == "sglang_rule" and "max_batch_seqs" not in engine.model_fields_set
    if values.get("max_batch_seqs") == "sglang_rule":
        values["max_batch_seqs"] = 2048     # the rule's floor, until the KV pool is known
    chosen = {k: v for k, v in values.items() if k in ENGINE_FIELDS and k not in engine.model_fields_set}
    return Choice(framework, version, chosen, tuple(notes), sglang_seqs)


def framework_for(engine, device) -> str:
    """The framework a pool runs: its own, else its device's usual engine, else vLLM."""
    return engine.framework or device.default_engine or "vllm"


def _parse_durations(values: dict) -> None:
    """The preset's host times, written as durations ("1.5ms"), in seconds."""
    for key in ("iteration_overhead", "host_per_seq", "launch"):
        if isinstance(values.get(key), str):
            values[key] = parse_duration(values[key])


def _resolved_native() -> dict:
    values = preset("native", default_version("native"))
    values["chunked_prefill"] = None
    _parse_durations(values)
    return {k: v for k, v in values.items() if k in ENGINE_FIELDS}


def _matches(tier: dict, device) -> bool:
    memory = device.memory
    if "below_memory" in tier and not memory < parse_bytes(tier["below_memory"]):
        return False
    if "at_least_memory" in tier and not memory >= parse_bytes(tier["at_least_memory"]):
        return False
    return "name_contains" not in tier or tier["name_contains"].lower() in device.name.lower()


def kv_precision(choice: Choice, precision: str) -> tuple[str, str]:
    """The KV cache's precision by the engine's rule, and the assumed: line saying so."""
    rule = preset(choice.framework, choice.version).get("kv_cache", "model")
    if rule == "fp8_with_fp8_weights" and precision == "fp8":
        return "fp8", f"kv_precision: fp8 ({choice.framework} sets an 8-bit KV cache with 8-bit weights)"
    kv = "fp16" if precision == "fp16" else "bf16"
    return kv, f"kv_precision: {kv} ({choice.framework}'s default: the model's 16-bit activation dtype)"


def sglang_max_running(kv_tokens: int, context: int) -> int:
    """SGLang's max_running_requests from its KV pool: 512 per context length of KV tokens,
    held between 2048 and 4096, and at most half the pool's tokens."""
    estimated = max(min(int(kv_tokens / max(context, 1) * 512), 4096), 2048)
    return max(1, min(estimated, kv_tokens // 2))


def _sglang_graph_max(memory: float, tp: int) -> int:
    """SGLang 0.5's largest decode CUDA graph by GPU memory (MiB) and tp."""
    mib = memory / MIB
    for below, small, large in ((20 * 1024, 8, 8), (35 * 1024, 24, 80), (60 * 1024, 32, 160),
                                (160 * 1024, 256, 512)):
        if mib < below:
            return small if tp < 4 else large
    return 512


def _sglang_memory_fraction(version: str, memory: float, parallel: int, chunk: int, graph_bs: int) -> float:
    """SGLang's mem_fraction_static (weights plus KV pool over GPU memory)."""
    mib = memory / MIB
    if version.startswith("0.4"):
        if mib <= 81920:
            fraction = next((f for at, f in ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)) if parallel >= at), 0.88)
        else:
            fraction = 0.88
        if mib > 96 * 1024:
            fraction = min(fraction + 48 * 1024 * (1 - fraction) / mib, (mib - 1024 * 18) / mib)
        return fraction
    reserved = 512 + max(chunk, 2048) * 1.5 + graph_bs * 2 + parallel / 8 * 1024
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)


def describe(choice: Choice) -> str:
    return f"{frameworks()[choice.framework]['name']} {choice.version}"


def preset_loc(framework: str, version: str | None = None):
    path = ("engines", framework) + (("versions", version) if version else ())
    return _source().loc_of(path)


