"""Measured kernel timing: the grids, the composition of an iteration, the tables the hot
path reads, and the fallback where no measurement applies."""
import os

import numpy as np
import pandas as pd
import pytest

from sim import catalog
from sim.catalog.hardware import DeviceSpec
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from sim.timing import database as db
from sim.timing import kernels as K
from sim.timing import table_lookup
from sim.timing.analytical import Analytical
from sim.timing.grid import Grid
from sim.timing.measured import Measured
from sim.timing.operators import AllReduce, Elementwise, Gemm, operators
from sim.timing.tables import row_table

needs_db = pytest.mark.skipif(db.data_root() is None, reason="aiconfigurator-core is not installed")


# ---- the grid ----------------------------------------------------------------------------------
def test_grid_is_exact_at_its_points_and_between_them_on_a_multilinear_function():
    m, n = np.array([1.0, 4.0, 16.0]), np.array([2.0, 8.0])
    f = lambda a, b: 3.0 + 2.0 * a + 0.5 * b + 0.25 * a * b   # multilinear: interpolation is exact
    frame = pd.DataFrame([(a, b, f(a, b)) for a in m for b in n], columns=["m", "n", "latency"])
    g = Grid.from_frame(frame, ["m", "n"])
    for a in m:
        for b in n:
            assert g(a, b) == f(a, b)
    assert g(2.5, 5.0) == pytest.approx(f(2.5, 5.0))
    assert g(40.0, 8.0) == pytest.approx(f(40.0, 8.0))      # linear past the last point
    assert g(0.5, 2.0) == f(1.0, 2.0)                        # the floor below the first


def test_grid_is_monotone_between_points_of_monotone_data():
    x = np.array([1.0, 2.0, 4.0, 16.0, 17.0, 64.0])
    y = np.array([0.01, 0.011, 0.011, 0.02, 0.03, 0.08])
    g = Grid([x], y)
    fine = g(np.linspace(1.0, 64.0, 2000))
    assert np.all(np.diff(fine) >= -1e-15)


def test_grid_fills_a_missing_point_from_its_neighbours():
    frame = pd.DataFrame([(1, 1, 1.0), (1, 2, 2.0), (2, 1, 3.0)], columns=["m", "n", "latency"])
    g = Grid.from_frame(frame, ["m", "n"])
    assert 1.0 <= g(2.0, 2.0) <= 3.0    # from a neighbour along an axis, never invented



def test_grid_continues_a_kernels_growth_into_the_shapes_the_tables_left_out():
    """The attention tables stop at a few hundred thousand tokens of batch x context; a
    throughput run's 640 sequences of 1,500 tokens lie past that. Its time keeps growing with
    the work (here 1 + batch x context, like a bandwidth-bound kernel), not the last value."""
    batch, context = [1.0, 2.0, 4.0, 8.0], [64.0, 128.0, 256.0, 512.0]
    f = lambda b, c: 1.0 + b * c
    frame = pd.DataFrame([(b, c, f(b, c)) for b in batch for c in context if b * c <= 1024],
                         columns=["batch_size", "kv_len", "latency"])
    g = Grid.from_frame(frame, ["batch_size", "kv_len"])
    for b in batch:
        for c in context:
            assert g(b, c) == pytest.approx(f(b, c))
    assert g(16.0, 512.0) == pytest.approx(f(16.0, 512.0))

# ---- measurements composed into an iteration ---------------------------------------------------
def one_layer_model(**extra):
    """A Llama-shaped model whose GEMM shapes lie on the measured grid (n, k in 4096, 6144,
    16384, 8192), with one layer so that a hand sum stays short."""
    model = {"name": "grid", "architecture": "dense", "params": 1e9, "layers": 1, "hidden": 4096, "heads": 32,
             "kv_heads": 8, "head_dim": 128, "ffn": 8192, "vocab": 32768, "max_context": 8192}
    model.update(extra)
    return model


def h100_scenario(write_scenario, model, **engine):
    return load_scenario(write_scenario({
        "fleet.0.count": 1, "fleet.0.serve.model": model,
        "fleet.0.serve.engine": {"max_batch_seqs": 64, "max_batch_tokens": 4096, "framework": "vllm",
                                 "iteration_overhead": "0s", **engine}}))


def measured_gemm_ms(system, framework, version, m, n, k, dtype="bfloat16"):
    frame = db.read(system, "gemm", framework, version, "gemm_perf")
    rows = frame[(frame.gemm_dtype == dtype) & (frame.m == m) & (frame.n == n) & (frame.k == k)]
    kernel = frame[frame.gemm_dtype == dtype].kernel_source.value_counts().index[0]
    return float(rows[rows.kernel_source == kernel].latency.mean())


@needs_db
def test_one_layer_is_the_hand_sum_of_its_measured_operators(write_scenario):
    """At a measured token count, the table's per-token part equals the GEMMs read straight
    from the parquet rows, plus the elementwise kernels on the measured bytes curve."""
    sc = h100_scenario(write_scenario, one_layer_model())
    dep = sc.pools[0].deployment
    assert dep.timing.startswith("measured (aiconfigurator-core")
    version = db.closest_version(db.versions("h100_sxm", "gemm", "vllm"), None)
    tokens = 64
    gemms = {"qkv": (6144, 4096), "o_proj": (4096, 4096), "gate_up": (16384, 4096), "down": (4096, 8192)}
    hand = sum(measured_gemm_ms("h100_sxm", "vllm", version, tokens, n, k) for n, k in gemms.values()) * 1e-3
    times = Measured("h100_sxm", "vllm", None, Analytical(dep.device, "bf16"))
    ops = operators(dep.model, 1, "bf16", "bf16")
    elementwise = [op for op in ops.tokens if isinstance(op, Elementwise)]
    hand += sum(float(times.elementwise(np.array([tokens]), op)[0]) * op.count for op in elementwise)
    assert {op.name for op in ops.tokens if isinstance(op, Gemm)} == set(gemms)
    table = row_table(ops.tokens, times, Analytical(dep.device, "bf16"), np.array([float(tokens)]))
    assert table.sum() == pytest.approx(hand, rel=1e-12)
    # and the compiled lookup reads the same value back from the packed cost vector
    p = dep.params
    rows = table_lookup.table1(p, int(p[int(p[K.K_TABLES]) + K.TAB_ROWS]), float(tokens), 1.0, 1.0, 1.0, False)
    assert rows == pytest.approx(hand, rel=1e-12)


@needs_db
def test_decode_attention_is_the_measured_kernel_at_a_grid_point(write_scenario):
    sc = h100_scenario(write_scenario, one_layer_model())
    p = sc.pools[0].deployment.params
    frame = db.read("h100_sxm", "attention", "vllm", db.versions("h100_sxm", "attention", "vllm")[-1],
                    "generation_attention_perf")
    rows = frame[(frame.batch_size == 32) & (frame.isl + frame.step == 1024) & (frame.num_heads == 32)
                 & (frame.num_key_value_heads == 8) & (frame.head_dim == 128) & (frame.kv_cache_dtype == "bfloat16")
                 & (frame.window_size == 0) & (frame.kernel_source == "vllm_flash_attn_fa3")]
    by_hand = float(rows.latency.mean()) * 1e-3
    table = table_lookup.table2(p, int(p[int(p[K.K_TABLES]) + K.TAB_DECODE]), 32.0, 1024.0, 1.0, 1.0, 1.0, False)
    assert table == pytest.approx(by_hand, rel=1e-12)


@needs_db
def test_prompts_longer_than_the_tables_cost_the_square_of_their_length(write_scenario):
    """The context-attention tables stop at 16,384 tokens; a 128K-token model's longer prompts
    cost their query-key pairs, and the table the hot path reads holds points out there."""
    sc = h100_scenario(write_scenario, one_layer_model(max_context=131072))
    p = sc.pools[0].deployment.params
    prefill_table = int(p[int(p[K.K_TABLES]) + K.TAB_PREFILL])
    at = lambda s: table_lookup.table2(p, prefill_table, 1.0, float(s), 1.0, 1.0, 1.0, False)
    top = 16384.0
    for s in (2 * top, 4 * top):
        assert at(s) / at(top) == pytest.approx(s * (s + 1) / (top * (top + 1)), rel=0.02)
    assert at(3 * top) / at(top) == pytest.approx(9.0, rel=0.02)   # between two of the table's points


@needs_db
def test_tables_grow_with_work(write_scenario):
    p = h100_scenario(write_scenario, "llama-3.1-8b").pools[0].deployment.params
    decode = [K.decode_time(p, b, 2000) for b in (1, 8, 32, 64)]
    prefill = [K.prefill_time(p, n) for n in (16, 128, 1024, 4096)]
    longer = [K.decode_time(p, 16, c) for c in (100, 1000, 8000)]
    assert decode == sorted(decode) and prefill == sorted(prefill) and longer == sorted(longer)


@needs_db
def test_a_power_cap_slows_only_the_compute_bound_part(write_scenario):
    """Decode at batch 1 reads weights (memory-bound): a lower clock barely moves it; a long
    prefill is compute-bound and slows by about 1/clock."""
    p = h100_scenario(write_scenario, "llama-3.1-8b").pools[0].deployment.params
    capped = p.copy()
    capped[K.K_COMPUTE_SCALE] = 1.0 / 0.8
    assert K.decode_time(capped, 1, 500) == pytest.approx(K.decode_time(p, 1, 500), rel=0.05)
    assert K.prefill_time(capped, 4096) == pytest.approx(K.prefill_time(p, 4096) / 0.8, rel=0.05)


# ---- which source, and saying so ----------------------------------------------------------------
@needs_db
def test_every_pool_says_where_its_times_come_from(write_scenario):
    measured = h100_scenario(write_scenario, "llama-3.1-8b").pools[0].deployment
    assert measured.timing.startswith("measured (aiconfigurator-core ") and "vllm" in measured.timing
    forced = h100_scenario(write_scenario, "llama-3.1-8b", timing="analytical").pools[0].deployment
    assert forced.timing.startswith("analytical (shape-aware")
    # models the operator composition does not cover keep the closed-form roofline
    ssm = load_scenario(write_scenario({"fleet.0.serve.model": "mamba-2.8b"})).pools[0].deployment
    assert ssm.timing.startswith("analytical (closed-form") and ssm.params.shape == (K.P_SIZE,)


def test_a_device_without_data_falls_back_with_an_assumed_line(write_scenario):
    sc = load_scenario(write_scenario({"fleet.0.device": "amd-mi300x"}))
    dep = sc.pools[0].deployment
    assert dep.timing.startswith("analytical")
    assert any(a.startswith("timing analytical: no measured kernel tables for amd-mi300x") for a in dep.assumptions)


@needs_db
def test_operators_the_tables_lack_carry_the_analytical_models_assumptions(write_scenario):
    """A100's tables have no int8 GEMMs: those are timed analytically, without wave quantization
    (no gemm8_tiles for A100), and the pool says both."""
    sc = load_scenario(write_scenario({"fleet.0.device": "nvidia-a100-80gb", "fleet.0.serve.precision": "int8"}))
    dep = sc.pools[0].deployment
    assert dep.timing.startswith("measured")
    assert any("int8 GEMMs not measured on a100_sxm" in a for a in dep.assumptions)
    assert any("no gemm8_tiles" in a for a in dep.assumptions)
    # where every operator is measured, the analytical model's assumptions stay out
    h100 = load_scenario(write_scenario({"fleet.0.serve.precision": "fp8"})).pools[0].deployment
    assert not any(a.endswith(": analytical") for a in h100.assumptions)
    assert not any("gemm8_tiles" in a for a in h100.assumptions)


def test_catalog_figures_borrowed_from_another_device_are_listed_as_assumed(write_scenario):
    from sim.results.summary import summarize
    sc = load_scenario(write_scenario({"fleet.0.device": "amd-mi300x", "duration": "2s", "warmup": "0s"}))
    lines = summarize(simulate(sc))["assumptions"]
    assert ("amd-mi300x: kernel_floors assumed, not measured on this device "
            "(its source in the device catalog says how)") in lines
    # a device whose figures are all its own has no such line
    assert not any(a.startswith("amd-mi300x: compute_eff") for a in lines)


def test_measured_timing_where_there_is_none_is_an_error_at_its_line(write_scenario):
    path = write_scenario({"fleet.0.device": "amd-mi300x", "fleet.0.serve.engine.timing": "measured"})
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    text = str(err.value)
    assert "fleet[0].serve.engine.timing" in text and "no measured kernel tables" in text
    assert f"{path}:" in text


@needs_db
def test_outside_captured_graphs_the_all_reduces_take_their_eager_latency(write_scenario):
    """vLLM measures its all-reduce inside a CUDA graph and eagerly; a tp 4 decode step that
    runs eagerly pays the eager latency of each of its 2 x layers all-reduces."""
    def decode(**engine):
        sc = load_scenario(write_scenario({"fleet.0.count": 4, "fleet.0.serve.tp": 4,
                                           "fleet.0.serve.engine": {"framework": "vllm", "version": "0.8.5",
                                                                    "iteration_overhead": "0s", "host_per_seq": 0,
                                                                    "launch": 0, **engine}}))
        return K.decode_time(sc.pools[0].deployment.params, 8, 1000)
    graphed, eager = decode(), decode(graph_max_tokens=0)
    _, frame = db.newest_with("h100_sxm", "comm", "vllm", "custom_allreduce_perf", "0.8.5")
    at = frame[(frame.num_gpus == 4) & (frame.message_size == 8 * 4096)]   # 8 tokens x 4096 hidden, 16-bit
    per_call = (float(at[at.backend.str.endswith("eager")].latency.mean())
                - float(at[at.backend.str.endswith("graph")].latency.mean())) * 1e-3
    assert eager - graphed == pytest.approx(2 * 32 * per_call, rel=1e-6)


@needs_db
def test_an_engine_without_its_custom_all_reduce_pays_nccls_latency(write_scenario):
    """engine.custom_allreduce: false (vLLM's --disable-custom-all-reduce, or an engine that
    has none) times each tensor-parallel sum from the NCCL table instead of the engine's own."""
    def decode(**engine):
        sc = load_scenario(write_scenario({"fleet.0.count": 4, "fleet.0.serve.tp": 4,
                                           "fleet.0.serve.engine": {"framework": "vllm", "version": "0.8.5",
                                                                    "iteration_overhead": "0s", "host_per_seq": 0,
                                                                    "launch": 0, **engine}}))
        return K.decode_time(sc.pools[0].deployment.params, 8, 1000), sc.pools[0].deployment.timing
    (custom, _), (nccl, nccl_label) = decode(), decode(custom_allreduce=False)
    version = db.versions("h100_sxm", "comm", "nccl")[-1]
    assert f"nccl {version}" in nccl_label
    size = 8 * 4096                                               # 8 tokens x 4096 hidden, in 16-bit elements
    ours = db.read("h100_sxm", "comm", "nccl", version, "nccl_perf")
    ours = ours[(ours.op_name == "all_reduce") & (ours.num_gpus == 4) & (ours.nccl_dtype == "half")]
    _, frame = db.newest_with("h100_sxm", "comm", "vllm", "custom_allreduce_perf", "0.8.5")
    theirs = frame[(frame.num_gpus == 4) & (frame.message_size == size) & frame.backend.str.endswith("graph")]
    per_call = (float(Grid.from_frame(ours, ["message_size"])(float(size))) - float(theirs.latency.mean())) * 1e-3
    assert nccl - custom == pytest.approx(2 * 32 * per_call, rel=1e-6)


def test_the_analytical_all_reduce_without_the_custom_kernel_is_the_ring():
    dev = DeviceSpec.model_validate(catalog.device_entries()["nvidia-h100-sxm"])
    op = AllReduce("allreduce", 2.0, 8, 1.0)
    size = 4096.0 * 2
    bw = 2 * 7 / 8 * size / (dev.scale_up_bandwidth * dev.scale_up_eff)
    assert Analytical(dev, "bf16").allreduce(np.array([4096.0]), op)[0] == pytest.approx(
        dev.kernel_floors.allreduce + bw)
    assert Analytical(dev, "bf16", custom_allreduce=False).allreduce(np.array([4096.0]), op)[0] == pytest.approx(
        2 * 7 * dev.scale_up_latency + bw)


@needs_db
def test_a_full_8_gpu_node_takes_100_to_200_ms_a_token(write_scenario):
    """scenarios/throughput-8gpu.yaml: about a thousand sequences decode at once on 8 H100s
    (tp 8), every iteration also carrying prefill chunks; a token takes 100-200 ms, as the
    engines show at that load, not the ~20 ms of a light one."""
    from tests.conftest import ROOT
    res = simulate(load_scenario(os.path.join(ROOT, "scenarios", "throughput-8gpu.yaml"),
                                 ["duration=150s", "warmup=60s"]))
    t = res.table
    window = (t.arrival >= 60.0) & (t.state == 1)
    tpot = (t.finished - t.first_token)[window] / (t.output[window] - 1)
    assert 0.100 < float(np.median(tpot)) < 0.200
    # sequences in flight, sampled once a second in the window: about a thousand
    times = np.arange(70.0, 150.0)
    running = [int(((t.admitted <= s) & (t.finished > s)).sum()) for s in times]
    assert 900 <= np.mean(running) <= 1024
