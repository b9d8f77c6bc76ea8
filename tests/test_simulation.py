"""The serving simulation: exact fast path, conservation, KV bounds, determinism, rejections."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.core.metrics import COMPLETED, IN_FLIGHT, REASON_CODES, REJECTED
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate


def run(path, overrides=(), seed=None):
    return simulate(load_scenario(path, list(overrides)), seed=seed)


def records(result):
    return result.table.columns()


def assert_same_records(a, b):
    ca, cb = records(a), records(b)
    for key in ca:
        assert np.array_equal(ca[key], cb[key], equal_nan=True), key
    assert np.array_equal(sum(r.itl for r in a.replicas), sum(r.itl for r in b.replicas))


def most_running(result) -> int:
    """The most requests a run held between admission and completion at once."""
    t = result.table
    ends = np.concatenate([np.stack([t.admitted, np.ones(t.n)], 1), np.stack([t.finished, -np.ones(t.n)], 1)])
    ends = ends[np.lexsort((ends[:, 1], ends[:, 0]))]    # at a tie, a departure frees its slot first
    return int(np.cumsum(ends[:, 1]).max())


def assert_invariants(result):
    t = result.table
    # every request in exactly one final state, and the counts add up
    s = summarize(result)["requests"]
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["arrived"] == t.n
    done = t.state == COMPLETED
    c = records(result)
    for key in ("queue_wait", "ttft", "e2e"):
        v = c[key][done]
        assert not np.isnan(v).any() and (v >= 0).all(), key
    assert (c["tpot"][done & (t.output > 1)] > 0).all()
    # a request's longest gap between tokens is at least their mean gap (its TPOT), at most
    # its whole decode
    many = done & (t.output > 1)
    assert (c["longest_stall"][many] >= c["tpot"][many] * (1 - 1e-6)).all()
    assert (c["longest_stall"][many] <= (t.finished - t.first_token)[many] * (1 + 1e-6) + 1e-9).all()
    assert (t.first_token[done] <= t.finished[done]).all()
    assert (t.generated[done] == t.output[done]).all()
    log = result.log.columns()
    blocks = {r.index: r.total_blocks for r in result.replicas}
    assert all(log["kv_blocks"][i] <= blocks[int(log["replica"][i])] for i in range(len(log["replica"])))
    assert (log["end"] >= log["start"]).all()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seqs=st.integers(1, 48),
    chunk=st.one_of(st.none(), st.integers(64, 1024)),
    mem=st.floats(0.225, 0.9),
    policy=st.sampled_from(["round-robin", "random", "least-outstanding", "least-kv", "power-of-two"]),
    dispatch=st.sampled_from(["immediate", "central"]),
    rate=st.floats(4, 40),
    seed=st.integers(0, 2**16),
)
def test_fast_path_equals_stepping(write_scenario, seqs, chunk, mem, policy, dispatch, rate, seed):
    path = write_scenario({
        "duration": "12s", "warmup": "1s",
        "fleet.0.serve.engine": {"max_batch_seqs": seqs, "chunked_prefill": chunk, "memory_utilization": mem},
        "router": {"policy": policy, "dispatch": dispatch},
        "workload.0.rate": rate,
    })
    fast = run(path, ["fleet.serve.engine.fast_path=true"], seed)
    slow = run(path, ["fleet.serve.engine.fast_path=false"], seed)
    assert_same_records(fast, slow)
    assert_invariants(fast)
    assert sum(r.preemptions for r in fast.replicas) == sum(r.preemptions for r in slow.replicas)


def test_kv_pressure_preempts_and_still_completes(write_scenario):
    path = write_scenario({"fleet.0.serve.engine.memory_utilization": 0.23, "workload.0.rate": "30/s",
                           "fleet.0.serve.engine.max_batch_seqs": 128})
    res = run(path)
    assert res.table.preemptions.sum() > 0
    assert (res.table.state == COMPLETED).all()
    assert_invariants(res)
    assert_same_records(res, run(path, ["fleet.serve.engine.fast_path=false"]))


def test_same_seed_same_results_different_seed_different(write_scenario):
    path = write_scenario()
    a, b, c = run(path), run(path), run(path, seed=99)
    assert_same_records(a, b)
    assert summarize(a)["latency_s"] == summarize(b)["latency_s"]
    assert not np.array_equal(a.table.arrival, c.table.arrival)


def test_adding_a_stream_does_not_change_another_streams_draws(write_scenario):
    from tests.conftest import BASE
    base = run(write_scenario())
    extra = {"name": "other", "rate": "3/s", "prompt_tokens": 100, "output_tokens": 10}
    more = run(write_scenario({"workload": [BASE["workload"][0], extra]}))
    mine = more.table.stream == 0
    assert np.array_equal(np.sort(more.table.arrival[mine]), np.sort(base.table.arrival))


def test_rejections_are_counted_with_reasons(write_scenario):
    path = write_scenario({
        "fleet.0.serve.engine": {"max_batch_seqs": 1, "chunked_prefill": None, "max_batch_tokens": 2048},
        "router.queue_limit": 2,
        "workload.0.rate": "20/s",
        "workload.0.prompt_tokens": {"dist": "uniform", "min": 100, "max": 3000},
    })
    res = run(path)
    reasons = summarize(res)["requests"]["rejected_by_reason"]
    assert reasons["queue_full"] > 0 and reasons["prompt_exceeds_batch_tokens"] > 0
    too_long = res.table.prompt > 2048
    assert (res.table.state[too_long] == REJECTED).all()
    assert (res.table.reason[too_long] == REASON_CODES["prompt_exceeds_batch_tokens"]).all()
    assert_invariants(res)


def test_context_and_kv_limits_reject(write_scenario):
    res = run(write_scenario({"workload.0.prompt_tokens": 130_000, "workload.0.output_tokens": 2000,
                              "workload.0.rate": "1/s"}))
    assert (res.table.reason == REASON_CODES["exceeds_context"]).all()
    res = run(write_scenario({"fleet.0.serve.engine.memory_utilization": 0.215, "workload.0.rate": "1/s",
                              "workload.0.prompt_tokens": 20_000, "workload.0.output_tokens": 10}))
    assert (res.table.reason == REASON_CODES["exceeds_kv_cache"]).all()


def test_a_request_only_the_engines_admission_keeps_out_is_rejected_not_stranded(write_scenario):
    """A request may fit the KV cache yet never be admitted, even alone: its prompt would
    break into vLLM V0's watermark, or SGLang's estimate counts its whole output beside its
    prompt. It is rejected as too big for the cache instead of waiting for ever."""
    small = {"fleet.0.serve.engine.memory_utilization": 0.215, "workload.0.rate": "1/s"}
    tokens = run(write_scenario(small)).replicas[0].total_blocks * 16
    long_prompt = {"workload.0.prompt_tokens": tokens - 100, "workload.0.output_tokens": 10}
    long_output = {"workload.0.prompt_tokens": tokens - 2000, "workload.0.output_tokens": 2000}
    engine = "fleet.0.serve.engine."
    for shape, rule in ((long_prompt, {engine + "kv_watermark": 0.2}),
                        (long_output, {engine + "kv_reservation": "estimated"})):
        # the cache holds either when its last token is computed: allocating on demand, it runs
        assert (run(write_scenario({**small, **shape})).table.state == COMPLETED).all()
        res = run(write_scenario({**small, **shape, **rule}))
        assert len(res.table.reason) > 0 and (res.table.reason == REASON_CODES["exceeds_kv_cache"]).all()
        assert_invariants(res)


def test_drain_limit_leaves_requests_in_flight(write_scenario):
    res = run(write_scenario({"drain": "0s", "workload.0.rate": "40/s"}))
    s = summarize(res)["requests"]
    assert s["in_flight"] > 0 and (res.table.state == IN_FLIGHT).sum() == s["in_flight"]
    assert_invariants(res)


def test_static_batching_is_slower_than_continuous(write_scenario):
    common = {"workload.0.rate": "12/s", "router.policy": "round-robin"}
    cont = summarize(run(write_scenario(common)))
    static = summarize(run(write_scenario({**common, "fleet.0.serve.engine": {
        "batching": "static", "max_batch_seqs": 32, "max_batch_tokens": 65536}})))
    assert static["latency_s"]["e2e"]["mean"] > cont["latency_s"]["e2e"]["mean"]
    assert static["requests"]["completed"] == static["requests"]["arrived"]


@pytest.mark.parametrize("batching", ["static", "continuous"])
def test_single_token_outputs_complete(write_scenario, batching):
    # a lognormal with `min: null` and a mean far under one token draws outputs of one token
    # (found by `make fuzz`: static batching indexed the decode steps of zero-token outputs)
    res = run(write_scenario({"workload.0.rate": "12/s", "fleet.0.serve.engine": {"batching": batching},
                              "workload.0.output_tokens": {"dist": "lognormal", "mean": 2e-10, "cv": 0.8,
                                                           "min": None}}))
    assert (res.table.output == 1).all()
    assert summarize(res)["requests"]["completed"] == summarize(res)["requests"]["arrived"] > 0
    assert_invariants(res)


def test_warmup_is_excluded(write_scenario):
    res = run(write_scenario({"warmup": "10s"}))
    s = summarize(res)
    t = res.table
    assert s["measured_requests"] == int(((t.arrival >= 10) & (t.arrival < 30)).sum())


@pytest.mark.parametrize("device, model, precision, tp, count", [
    ("nvidia-h200", "deepseek-v3", "fp8", 8, 8),
    ("nvidia-a100-80gb", "mamba-2.8b", "bf16", 1, 1),
    ("amd-mi300x", "mixtral-8x7b", "bf16", 1, 1),
    ("google-tpu-v6e", "llama-3.1-8b", "bf16", 1, 2),
])
def test_other_architectures_and_devices_run(write_scenario, device, model, precision, tp, count):
    res = run(write_scenario({"fleet.0.device": device, "fleet.0.serve.model": model, "fleet.0.count": count,
                              "fleet.0.serve.precision": precision, "fleet.0.serve.tp": tp,
                              "workload.0.rate": "3/s", "duration": "15s"}))
    assert_invariants(res)
    s = summarize(res)
    assert s["requests"]["completed"] > 0 and s["latency_s"]["tpot"]["p50"] > 0


def test_inline_device_overrides_a_catalog_entry(write_scenario):
    base = load_scenario(write_scenario())
    bigger = load_scenario(write_scenario({"fleet.0.device": {"base": "nvidia-h100-sxm", "memory": "96GB"}}))
    assert bigger.pools[0].deployment.total_blocks > base.pools[0].deployment.total_blocks
    assert bigger.pools[0].deployment.device.memory_bandwidth == base.pools[0].deployment.device.memory_bandwidth


def test_closed_loop_keeps_concurrency_and_sends_exactly_n(write_scenario):
    path = write_scenario({"duration": "1h", "warmup": "0s", "workload": [
        {"name": "bench", "requests": 200, "concurrency": 8, "prompt_tokens": 256, "output_tokens": 64}]})
    for fast in ("true", "false"):
        res = run(path, [f"fleet.serve.engine.fast_path={fast}"])
        t = res.table
        assert t.n == 200 and (t.state == COMPLETED).all()
        # at every arrival, at most 8 requests of the stream are outstanding, and after the
        # first 8 each arrival coincides with a completion
        order = np.argsort(t.arrival, kind="stable")
        for r in order:
            live = np.sum((t.arrival <= t.arrival[r]) & (t.finished > t.arrival[r]))
            assert live <= 8
        assert np.isin(t.arrival[order[8:]], t.finished).all()
        assert_invariants(res)
    assert_same_records(run(path, ["fleet.serve.engine.fast_path=true"]),
                        run(path, ["fleet.serve.engine.fast_path=false"]))


def test_offline_batch_and_makespan(write_scenario):
    path = write_scenario({"duration": "1h", "warmup": "0s", "workload": [
        {"name": "bench", "requests": 64, "concurrency": 64, "prompt_tokens": 128, "output_tokens": 128}]})
    res = run(path)
    s = summarize(res)
    assert (res.table.arrival == 0).all()
    t = res.table
    assert s["makespan"]["seconds"] == pytest.approx(t.finished.max())
    assert s["makespan"]["output_tokens_per_s"] == pytest.approx(64 * 128 / t.finished.max())


def test_closed_loop_stops_at_the_arrival_window(write_scenario):
    res = run(write_scenario({"duration": "5s", "warmup": "0s", "workload": [
        {"name": "b", "requests": 100_000, "concurrency": 2, "prompt_tokens": 64, "output_tokens": 64}]}))
    assert 0 < res.table.n < 100_000 and (res.table.arrival < 5).all()
    assert_invariants(res)


def test_closed_loop_schema_errors(write_scenario):
    from sim.spec.errors import ScenarioError
    with pytest.raises(ScenarioError, match="needs requests"):
        load_scenario(write_scenario({"workload": [{"name": "b", "concurrency": 2, "prompt_tokens": 8,
                                                    "output_tokens": 8}]}))
    with pytest.raises(ScenarioError, match="remove rate"):
        load_scenario(write_scenario({"workload": [{"name": "b", "concurrency": 2, "requests": 5, "rate": "1/s",
                                                    "prompt_tokens": 8, "output_tokens": 8}]}))


def test_power_follows_the_active_fraction_by_hand(write_scenario):
    res = run(write_scenario())
    s = summarize(res)
    pool = s["pools"][0]
    dev = res.scenario.pools[0].deployment.device
    idle = dev.idle_watts()
    node = dev.node.power / dev.node.devices   # the server's overhead, shared per GPU
    by_hand = sum(idle + node + (dev.tdp - idle) * r["accelerator_active"] for r in s["replicas"])  # tp 1
    assert pool["it_watts"] == pytest.approx(by_hand)
    assert all(r["accelerator_active"] < r["busy_fraction"] for r in s["replicas"])  # host time excluded
    assert s["power"]["facility_watts"] == pytest.approx(by_hand * res.scenario.spec.economics.pue)


def test_an_engine_that_overlaps_its_host_work_keeps_the_devices_active(write_scenario):
    s = summarize(run(write_scenario({"fleet.0.serve.engine.overlap": True})))
    assert all(r["accelerator_active"] == pytest.approx(r["busy_fraction"]) for r in s["replicas"])


def test_slo_targets_read_their_metric_and_statistic(write_scenario):
    s = summarize(run(write_scenario({"slo": {"queue_wait_p99": "1s", "ttft_p50": "1ms", "e2e_mean": "1h"}})))
    r = s["slo"]["results"]
    assert r["queue_wait_p99"]["value"] == s["latency_s"]["queue_wait"]["p99"] and r["queue_wait_p99"]["met"]
    assert r["ttft_p50"]["value"] == s["latency_s"]["ttft"]["p50"] and not r["ttft_p50"]["met"]
    assert r["e2e_mean"]["value"] == s["latency_s"]["e2e"]["mean"]
    assert not s["slo"]["met"]


def test_inter_token_gaps_add_up_to_the_decode_time(write_scenario):
    """Every decode token's gap is in the histogram once: their mean is the token-weighted
    TPOT of the requests whose decode lies after the warm-up."""
    path = write_scenario({"duration": "40s", "warmup": "0s", "workload.0.rate": "20/s",
                           "fleet.0.serve.engine.max_batch_seqs": 8})   # preemptions too
    res = run(path)
    s = summarize(res)
    t = res.table
    done = (t.state == COMPLETED) & (t.output > 1)
    gaps = (t.finished - t.first_token)[done].sum()
    tokens = (t.output[done] - 1).sum()
    assert sum(r.itl for r in res.replicas).sum() == tokens
    assert s["latency_s"]["itl"]["mean"] == pytest.approx(gaps / tokens, rel=0.02)   # bins 6 % wide
