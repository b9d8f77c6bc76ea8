"""Parameter counts and KV sizes derived from shapes, checked against model cards."""
import pytest

from sim import catalog
from sim.catalog.models import ModelSpec


@pytest.mark.parametrize("key", sorted(catalog.model_entries()))
def test_computed_params_match_model_card(key):
    m = ModelSpec.model_validate(catalog.model_entries()[key])
    assert m.computed_params() == pytest.approx(m.params, rel=0.02), key
    if m.active_params:
        assert m.computed_active_params() == pytest.approx(m.active_params, rel=0.03), key


def test_llama_70b_kv_bytes_by_hand():
    m = ModelSpec.model_validate(catalog.model_entries()["llama-3.1-70b"])
    # 2 (K and V) x 8 KV heads x 128 dims per layer
    assert m.kv_elements_per_token_layer() == 2 * 8 * 128
    assert m.layers * m.kv_elements_per_token_layer() * 2 == 327_680  # bytes per token at bf16


def test_deepseek_mla_caches_the_latent():
    m = ModelSpec.model_validate(catalog.model_entries()["deepseek-v3"])
    assert m.attention == "mla"
    assert m.kv_elements_per_token_layer() == 512 + 64
    assert m.kv_groups() == 1


def test_moe_needs_experts():
    with pytest.raises(ValueError, match="experts"):
        ModelSpec.model_validate({"name": "x", "architecture": "moe", "params": 1e9, "layers": 2, "hidden": 64,
                                  "heads": 4, "kv_heads": 4, "head_dim": 16, "ffn": 128, "vocab": 100,
                                  "max_context": 1000})
