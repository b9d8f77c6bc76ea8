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


@pytest.mark.parametrize("framework, version, reservation", [("trtllm", "1.0.0", "to_completion"),
                                                            ("trtllm", "0.20.0", "to_completion"),
                                                            ("vllm", "0.11.0", "on_demand"),
                                                            ("sglang", "0.5.10", "estimated"),
                                                            ("sglang", "0.4.6", "estimated")])
def test_each_engine_holds_kv_for_outputs_as_it_does(write_scenario, framework, version, reservation):
    """TensorRT-LLM reserves a request's whole output, vLLM allocates on demand, SGLang admits
    beside an estimate of the running requests' remaining output; a pool's own value wins."""
    engine = {"framework": framework, "version": version}
    sc = load_scenario(write_scenario({"fleet.0.count": 1, "fleet.0.serve.engine": engine}))
    assert sc.pools[0].spec.serve.engine.kv_reservation == reservation
    own = load_scenario(write_scenario({"fleet.0.count": 1, "fleet.0.serve.engine": {**engine,
                                                                                      "kv_reservation": "on_demand"}}))
    assert own.pools[0].spec.serve.engine.kv_reservation == "on_demand"


@pytest.mark.parametrize("version, tuning", [("0.20.0", True), ("1.0.0", False)])
def test_tensorrt_engines_tune_their_batch_and_the_pytorch_backend_does_not(write_scenario, version, tuning):
    sc = load_scenario(write_scenario({"fleet.0.count": 1,
                                       "fleet.0.serve.engine": {"framework": "trtllm", "version": version}}))
    assert sc.pools[0].spec.serve.engine.batch_size_tuning is tuning


@pytest.mark.parametrize("device, overhead, overlap", [("google-tpu-v6e", 6.6e-3, True),
                                                       ("aws-trainium2", 437e-6, False),
                                                       ("aws-inferentia2", 437e-6, False)])
def test_a_device_with_its_own_runtime_replaces_the_presets_host_times(write_scenario, device, overhead, overlap):
    sc = load_scenario(write_scenario({"fleet.0.device": device, "fleet.0.count": 1,
                                       "fleet.0.serve.model": "llama-3.2-1b",
                                       "fleet.0.serve.engine": {"framework": "vllm"}}))
    own = sc.pools[0].spec.serve.engine
    assert own.iteration_overhead == pytest.approx(overhead) and own.overlap is overlap
    assert own.launch == 0.0 and own.host_per_seq == 0.0
    # the pool's own figure still wins
    assert limits(write_scenario, device, framework="vllm", iteration_overhead="1ms").iteration_overhead == 1e-3


def test_every_device_but_two_has_a_cited_hop_latency():
    from sim.catalog import device_entries
    devices = device_entries()
    missing = sorted(k for k, d in devices.items() if "scale_up_latency" not in d)
    assert missing == ["intel-gaudi3", "nvidia-a100-80gb"]
    for key, d in devices.items():
        if "scale_up_latency" in d:
            assert d["sources"].get("scale_up_latency"), key


def test_sram_chip_pipelines_pay_a_hop_between_stages(write_scenario):
    from sim.serving.pipeline import Pipeline
    from sim.timing import kernels as K
    sc = load_scenario(write_scenario({"fleet.0.device": "groq-lpu", "fleet.0.count": 64,
                                       "fleet.0.serve.model": "llama-3.2-1b", "fleet.0.serve.tp": 8,
                                       "fleet.0.serve.pp": 8, "fleet.0.serve.precision": "int8"}))
    p = sc.pools[0].deployment.params
    assert p[K.K_LINK_LAT] == pytest.approx(1e-6)
    assert Pipeline(None, p).send_latency == pytest.approx(1e-6)
