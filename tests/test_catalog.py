"""The shipped catalog: every entry loads, every number cites a source."""
import pytest

from sim import catalog
from sim.catalog import engines
from sim.catalog.hardware import DeviceSpec
from sim.catalog.models import ModelSpec

REQUIRED_DEVICES = ["nvidia-a100-80gb", "nvidia-h100-sxm", "nvidia-h200", "nvidia-b200", "amd-mi300x",
                    "google-tpu-v5e", "google-tpu-v6e", "aws-inferentia2", "aws-trainium2", "intel-gaudi3"]
REQUIRED_MODELS = ["llama-2-7b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
                   "mixtral-8x7b", "deepseek-v3", "mamba-2.8b"]
NUMERIC = ["memory", "memory_bandwidth", "sram", "peak_flops", "scale_up_bandwidth", "scale_up_latency", "scale_up_eff",
           "compute_eff_by_precision", "attention_eff", "tdp",
           "idle_power", "list_price_usd", "hourly_usd", "compute_eff", "mem_eff"]


def test_required_entries_present():
    assert set(REQUIRED_DEVICES) <= set(catalog.device_entries())
    assert set(REQUIRED_MODELS) <= set(catalog.model_entries())


@pytest.mark.parametrize("key", REQUIRED_DEVICES)
def test_device_loads_and_cites_every_number(key):
    raw = catalog.device_entries()[key]
    spec = DeviceSpec.model_validate(raw)
    for field in NUMERIC:
        if raw.get(field) is not None:
            assert field in spec.sources and len(spec.sources[field]) > 10, f"{key}.{field} has no source"
    assert 0 < spec.compute_eff <= 1 and 0 < spec.mem_eff <= 1


@pytest.mark.parametrize("key", REQUIRED_MODELS)
def test_model_loads_and_cites_source(key):
    spec = ModelSpec.model_validate(catalog.model_entries()[key])
    assert "http" in spec.source


# preset fields whose value the source of another field states
SOURCED_WITH = {"graph_decode_only": "graph_max_tokens", "memory_of": "memory_utilization",
                "host_per_seq": "iteration_overhead", "long_context": "chunked_prefill", "tiers": "max_batch_tokens",
                "launch": "launch"}


@pytest.mark.parametrize("framework", sorted(engines.frameworks()))
def test_every_engine_preset_value_cites_its_source(framework):
    for version in engines.versions(framework):
        values = engines.preset(framework, version)
        for key in values:
            if key in ("sources", "assumed"):
                continue
            cited = SOURCED_WITH.get(key, key)
            assert values["sources"].get(cited), f"{framework} {version}: {key} has no source"


def test_dense_peaks_are_ordered():
    # fp8 peak is never below bf16 where both exist (sanity against sparse/dense mix-ups)
    for key, raw in catalog.device_entries().items():
        pf = DeviceSpec.model_validate(raw).peak_flops
        if pf.fp8 and pf.bf16:
            assert pf.fp8 >= pf.bf16, key
