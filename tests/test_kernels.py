"""Timing kernels against hand arithmetic."""
import numpy as np
import pytest

from sim import catalog
from sim.catalog.hardware import DeviceSpec
from sim.catalog.models import ModelSpec
from sim.timing import kernels
from sim.timing.deployment import cost_vector


def device(key):
    return DeviceSpec.model_validate(catalog.device_entries()[key])


def model(key):
    return ModelSpec.model_validate(catalog.model_entries()[key])


def test_70b_decode_on_h100_is_weight_bytes_over_bandwidth():
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-70b")
    p = cost_vector(h100, m, "bf16", tp=1, iteration_overhead=0.0)
    t = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 1000.0, 1.0, p)
    read_per_token = (m.computed_params() - m.vocab * m.hidden) * 2  # the input embedding is only indexed
    expected = read_per_token / (h100.memory_bandwidth * h100.mem_eff)
    assert t == pytest.approx(expected, rel=0.03)
    assert 0.040 < t < 0.060  # ~141 GB at ~3 TB/s achieved


def test_prefill_is_compute_bound_and_scales_with_tokens():
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-8b")
    p = cost_vector(h100, m, "bf16", tp=1, iteration_overhead=0.0)

    def prefill(n):
        return kernels.iteration_time(float(n), 1.0, 1.0, n * (n + 1) / 2.0, float(n), 0.0, 1.0, p)

    t4k = prefill(4096)
    gemm_flops = 2 * 4096 * (m.computed_params() - m.vocab * m.hidden)
    compute_floor = gemm_flops / (h100.peak_flops.bf16 * h100.compute_eff)
    memory_floor = m.computed_params() * 2 / (h100.memory_bandwidth * h100.mem_eff)
    assert compute_floor > 10 * memory_floor
    assert compute_floor <= t4k < 1.25 * compute_floor  # causal attention adds a little
    ratio = prefill(8192) / t4k
    assert 2.0 <= ratio < 2.3  # linear in tokens plus the quadratic attention term


def test_ring_allreduce_by_hand():
    # 2(n-1)/n * S/B + 2(n-1) * latency with n=4, S=1 MB, B=100 GB/s, 1 us hops
    assert kernels.ring_allreduce_time(1e6, 4, 100e9, 1e-6) == pytest.approx(15e-6 + 6e-6)
    assert kernels.ring_allreduce_time(1e6, 1, 100e9, 1e-6) == 0.0


def test_tensor_parallel_adds_allreduce_and_splits_weights():
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-70b")
    t1 = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, cost_vector(h100, m, "bf16", 1, 0.0))
    t4 = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, cost_vector(h100, m, "bf16", 4, 0.0))
    assert t1 / 4 < t4 < t1 / 3


def test_fp8_halves_decode_weight_traffic():
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-70b")
    # one GPU, so no all-reduce (whose latency does not shrink with precision) enters
    bf16 = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, cost_vector(h100, m, "bf16", 1, 0.0))
    fp8 = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, cost_vector(h100, m, "fp8", 1, 0.0))
    assert fp8 == pytest.approx(bf16 / 2, rel=0.05)


def test_moe_reads_only_touched_experts():
    assert kernels.experts_touched(1.0, 256.0, 8.0) == pytest.approx(8.0)
    assert kernels.experts_touched(10_000.0, 256.0, 8.0) == pytest.approx(256.0)
    h200, m = device("nvidia-h200"), model("deepseek-v3")
    h200 = h200.model_copy(update={"scale_up_latency": 0.0})  # weight reads alone, no all-reduce hops
    p = cost_vector(h200, m, "fp8", 8, 0.0)
    one = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, p)
    # one token reads ~ active params (37B) at 1 byte, spread over 8 GPUs
    expected = m.computed_active_params() / 8 / (h200.memory_bandwidth * h200.mem_eff)
    assert one == pytest.approx(expected, rel=0.15)


def test_ssm_decode_has_no_kv_growth():
    a100, m = device("nvidia-a100-80gb"), model("mamba-2.8b")
    p = cost_vector(a100, m, "bf16", 1, 0.0)
    short = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 10.0, 1.0, p)
    long = kernels.iteration_time(1.0, 1.0, 0.0, 0.0, 0.0, 100_000.0, 1.0, p)
    assert short == long


def test_overhead_is_added_once_per_iteration():
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-8b")
    a = kernels.iteration_time(8.0, 8.0, 0.0, 0.0, 0.0, 800.0, 8.0, cost_vector(h100, m, "bf16", 1, 0.0))
    b = kernels.iteration_time(8.0, 8.0, 0.0, 0.0, 0.0, 800.0, 8.0, cost_vector(h100, m, "bf16", 1, 0.004))
    assert b - a == pytest.approx(0.004)


@pytest.mark.parametrize("pad", [0, 1])
def test_decode_run_equals_stepping(pad):
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-8b")
    p = cost_vector(h100, m, "bf16", 1, 0.004)
    kv = np.array([100, 17, 250, 31], np.int64)
    rem = np.array([5, 12, 3, 12], np.int64)
    ends = np.empty(12)
    finish = np.empty(4, np.int64)
    k = kernels.decode_run(1.5, kv, rem, 16, 10_000, 0, pad, 1, 12, p, ends, finish)
    assert k == 12
    # step by hand
    t, alive, ctx = 1.5, [True] * 4, kv.copy()
    for s in range(12):
        members = [i for i in range(4) if alive[i] or pad]
        ctx[members] += 1
        t = t + kernels.iteration_time(float(len(members)), float(len(members)), 0.0, 0.0, 0.0,
                                       float(ctx[members].sum()), float(len(members)), p)
        assert ends[s] == t  # exact, not approximate
        for i in range(4):
            if rem[i] == s + 1:
                alive[i] = False
                assert finish[i] == s


def test_decode_run_stops_before_kv_overflow():
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-8b")
    p = cost_vector(h100, m, "bf16", 1, 0.0)
    kv = np.array([16, 32], np.int64)  # both need a new block at the first step
    rem = np.array([50, 50], np.int64)
    ends, finish = np.empty(50), np.empty(2, np.int64)
    assert kernels.decode_run(0.0, kv, rem, 16, 1, 0, 0, 1, 50, p, ends, finish) == 0
    assert kernels.decode_run(0.0, kv, rem, 16, 2, 0, 0, 1, 50, p, ends, finish) == 16


def test_batch_time_of_a_mixed_batch_by_hand():
    h100, m = device("nvidia-h100-sxm"), model("llama-3.1-8b")
    p = cost_vector(h100, m, "bf16", 1, 0.004)
    # two prefill chunks: 100 tokens after 0 (finishes a 100-token prompt), 50 after 200 (of 400)
    # and three decodes attending 10, 20 and 30 tokens
    t = kernels.batch_time(np.array([100, 50]), np.array([0, 200]), np.array([100, 400]),
                           np.array([10, 20, 30]), p)
    pairs = (100 * 0 + 100 * 101 / 2) + (50 * 200 + 50 * 51 / 2)
    by_hand = kernels.iteration_time(153.0, 4.0, 2.0, pairs, 100.0 + 250.0, 60.0, 5.0, p)
    assert t == by_hand
