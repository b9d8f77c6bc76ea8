"""Engine presets: which defaults a pool gets from its framework, version and device."""
from __future__ import annotations

import pytest

from sim.scenario import load_scenario


def limits(write_scenario, device, **engine):
    sc = load_scenario(write_scenario({"fleet.0.device": device, "fleet.0.count": 1,
                                       "fleet.0.serve.model": "llama-3.2-1b", "fleet.0.serve.engine": engine}))
    return sc.pools[0].deployment.limits


@pytest.mark.parametrize("memory, tokens", [("24GB", 2048), ("48GB", 4096), ("80GB", 8192), ("192GB", 16384)])
def test_the_first_memory_tier_a_device_matches_sets_sglangs_token_budget(write_scenario, memory, tokens):
    device = {"base": "nvidia-h100-sxm", "memory": memory}
    assert limits(write_scenario, device, framework="sglang", version="0.5.10").max_batch_tokens == tokens


def test_vllm_sizes_its_batch_by_the_device(write_scenario):
    h100 = limits(write_scenario, "nvidia-h100-sxm", framework="vllm", version="0.11.0")
    a100 = limits(write_scenario, "nvidia-a100-80gb", framework="vllm", version="0.11.0")
    assert (h100.max_batch_tokens, h100.max_batch_seqs) == (8192, 1024)
    assert (a100.max_batch_tokens, a100.max_batch_seqs) == (2048, 256)


def test_a_field_the_pool_sets_overrides_the_preset(write_scenario):
    own = limits(write_scenario, "nvidia-h100-sxm", framework="vllm", version="0.11.0", max_batch_seqs=48)
    assert own.max_batch_seqs == 48 and own.max_batch_tokens == 8192
