"""Sharing devices: MIG slices of a GPU, and several models time-sharing the same GPUs.
Oracles are the MIG user guide's fractions and hand arithmetic over the kernels."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from sim import catalog
from sim.catalog.economics import HOURS_PER_YEAR
from sim.ops.device_share import shared_params
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import place, simulate
from sim.spec.errors import ScenarioError
from sim.timing import kernels as K
from sim.tools.compare import row
from tests.conftest import BASE, ROOT

E = np.zeros(0, np.int64)


def problems(path):
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    return [str(p) for p in exc.value.problems]


def line_of(path, text):
    return next(n for n, line in enumerate(open(path), 1) if text in line)


def sliced(profile="1g.10gb", count=7, device="nvidia-h100-sxm", model="llama-3.2-1b"):
    return {"fleet": [{"pool": "s", "device": device, "partition": profile, "count": count,
                       "serve": {"model": model, "engine": {"max_batch_seqs": 32}}}],
            "workload": [{"name": "w", "rate": "5/s", "prompt_tokens": 500, "output_tokens": 50}]}


def scenario(write_scenario, changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return write_scenario(base=data)


# ---- MIG slices ------------------------------------------------------------------------------

def test_a_slice_has_the_guides_share_of_memory_compute_and_bandwidth(write_scenario):
    """H100 80GB 1g.10gb: 1/8 of memory and bandwidth (one of 8 memory slices), 16 of the 132
    SMs' FLOP/s; 1g.20gb: 2/8 of the memory, 26 SMs; A100 7g.80gb runs 98 of its 108 SMs."""
    dev = load_scenario(scenario(write_scenario, sliced())).pools[0].deployment.device
    assert dev.memory == pytest.approx(80e9 / 8)
    assert dev.memory_bandwidth == pytest.approx(3.35e12 / 8)
    assert dev.peak_flops.bf16 == pytest.approx(989e12 * 16 / 132)
    assert dev.peak_flops.fp8 == pytest.approx(1979e12 * 16 / 132)
    assert dev.sram == pytest.approx(50e6 / 8)
    assert dev.scale_up_bandwidth is None
    big = load_scenario(scenario(write_scenario, sliced("1g.20gb", 4))).pools[0].deployment.device
    assert big.memory == pytest.approx(80e9 * 2 / 8) and big.peak_flops.bf16 == pytest.approx(989e12 * 26 / 132)
    a100 = load_scenario(scenario(write_scenario, sliced("7g.80gb", 1, "nvidia-a100-80gb"))).pools[0].deployment.device
    assert a100.memory == pytest.approx(80e9) and a100.peak_flops.bf16 == pytest.approx(312e12 * 98 / 108)
    h200 = load_scenario(scenario(write_scenario, sliced("3g.71gb", 2, "nvidia-h200"))).pools[0].deployment.device
    assert h200.memory == pytest.approx(141e9 / 2) and h200.memory_bandwidth == pytest.approx(4.8e12 / 2)


def test_a_decode_step_on_a_slice_is_the_kernel_at_the_slices_rates(write_scenario):
    """One decode step of Llama 3.2 1B on a 1g.10gb slice is the whole GPU's (analytical)
    operator model with 16/132 of its FLOP/s and 1/8 of its bandwidth (the whole GPU's
    measurements do not time a slice); batch 1 is memory-bound, so it takes about the host
    overhead plus the weights (2 bytes each) over 1/8 of the achievable bandwidth, plus the
    kernels' floors."""
    part = load_scenario(scenario(write_scenario, sliced())).pools[0].deployment
    assert part.timing.startswith("analytical")
    h100 = dict(catalog.device_entries()["nvidia-h100-sxm"])
    same_rates = {**h100, "name": "H100 at a 1g.10gb slice's rates", "kernel_tables": None,
                  "memory": h100["memory"], "memory_bandwidth": "418.75GB/s",
                  "peak_flops": {"bf16": f"{989 * 16 / 132}TFLOP/s", "fp8": f"{1979 * 16 / 132}TFLOP/s",
                                 "int8": f"{1979 * 16 / 132}TFLOP/s"}}
    whole = load_scenario(write_scenario({"fleet.0.serve.model": "llama-3.2-1b", "fleet.0.device": same_rates,
                                          "fleet.0.serve.engine": {"max_batch_seqs": 32}})).pools[0].deployment
    for ctx in (100, 600, 4000):
        assert K.decode_time(part.params, 1, ctx) == pytest.approx(K.decode_time(whole.params, 1, ctx), rel=1e-9)
        assert K.decode_time(part.params, 8, ctx) == pytest.approx(K.decode_time(whole.params, 8, ctx), rel=1e-9)
    weights = 1.236e9 * 2.0
    by_hand = part.params[K.K_OVERHEAD] + weights / (3.35e12 / 8 * part.device.mem_eff)
    assert by_hand < K.decode_time(part.params, 1, 100) < by_hand * 1.15


def test_a_sliced_pool_costs_its_slices_share_of_the_gpu(write_scenario):
    """Seven 1g.10gb slices cost one H100 (each 1/7); four 1g.20gb slices too (each holds a
    quarter of the memory); power idles at one GPU's."""
    whole = summarize(simulate(load_scenario(write_scenario({"fleet.0.count": 1, "fleet.0.serve.model": "llama-3.2-1b",
                                                             "workload.0.rate": "0.1/s"}))))
    gpu_hour = (25000 + 70000 / 8) / 4 / HOURS_PER_YEAR     # the GPU and its 1/8 of the server, over 4 years
    assert whole["cost"]["devices_usd_per_hour"] == pytest.approx(gpu_hour)
    for profile, count in (("1g.10gb", 7), ("1g.20gb", 4)):
        s = summarize(simulate(load_scenario(scenario(write_scenario, sliced(profile, count)))))
        assert s["cost"]["devices_usd_per_hour"] == pytest.approx(gpu_hour)
        assert any("costs" in a and profile in a for a in s["assumptions"])
    one = load_scenario(scenario(write_scenario, sliced("1g.10gb", 1))).pools[0].deployment.device
    assert one.tdp == pytest.approx(700 / 7) and one.idle_watts() == pytest.approx(122 / 7)
    assert one.node.power == pytest.approx(4600 / 7) and one.hourly_usd == pytest.approx(3.99 / 7)


def test_slices_fill_the_gpus_of_a_topology_seven_at_a_time(write_scenario):
    """49 slices of 1g.10gb fill 7 GPUs of an 8-GPU node, a whole-GPU pool the 8th; 50 need 9."""
    data = sliced("1g.10gb", 49)
    data["fleet"].append({"pool": "whole", "device": "nvidia-h100-sxm", "count": 1, "serve": {"model": "llama-3.2-1b"}})
    data["topology"] = os.path.join(ROOT, "topologies", "hgx-h100-node.yaml")
    where = place(load_scenario(scenario(write_scenario, data)))
    assert [where[e] for e in (0, 6, 7, 48, 49)] == [["s0.gpu0"], ["s0.gpu0"], ["s0.gpu1"], ["s0.gpu6"], ["s0.gpu7"]]
    data["fleet"][0]["count"] = 50
    msg = " ".join(problems(scenario(write_scenario, data)))
    assert "the fleet has 9 accelerators but the topology places only 8" in msg


def test_bad_profile_names_the_field_and_the_valid_profiles(write_scenario):
    path = scenario(write_scenario, sliced("1g.11gb"))
    (msg,) = problems(path)
    assert msg.startswith(f"{path}:{line_of(path, '1g.11gb')}: fleet[0].partition: unknown MIG profile '1g.11gb' "
                          f"for nvidia-h100-sxm; did you mean '1g.10gb'?")
    assert "1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb" in msg
    data = sliced()
    data["fleet"][0]["partition"] = {"profile": "9g.99gb"}
    (msg,) = problems(scenario(write_scenario, data))
    assert "fleet[0].partition.profile: unknown MIG profile '9g.99gb'" in msg
    (msg,) = problems(scenario(write_scenario, sliced("1g.10gb", 1, "google-tpu-v6e")))
    assert "fleet[0].partition: google-tpu-v6e has no hardware partitions" in msg and "nvidia-h200" in msg


def test_a_slice_refuses_tensor_parallelism(write_scenario):
    data = sliced("3g.40gb", 2)
    data["fleet"][0]["serve"]["tp"] = 2
    path = scenario(write_scenario, data)
    (msg,) = problems(path)
    assert f":{line_of(path, 'tp: 2')}: fleet[0].serve.tp: a MIG slice has no NVLink" in msg
    assert "tp must be 1 on partition 3g.40gb" in msg


def test_a_model_too_big_for_its_slice_is_refused_without_a_tp_hint(write_scenario):
    (msg,) = problems(scenario(write_scenario, sliced("1g.10gb", 1, model="llama-3.1-8b")))
    assert "does not fit on nvidia-h100-sxm MIG 1g.10gb" in msg and "try tp" not in msg


# ---- several models on the same devices ------------------------------------------------------------

def colocated(first="llama-3.2-1b", second="llama-3.2-3b", requests=(1, 1), overhead=0.0, extra=None):
    engine = {"max_batch_seqs": 32, "iteration_overhead": overhead, "host_per_seq": 0}
    fleet = [{"pool": "a", "device": "nvidia-h100-sxm", "count": 1, "serve": {"model": first, "engine": engine}},
             {"pool": "b", "share_devices_with": "a", "serve": {"model": second, "engine": engine}}]
    streams = [{"name": n, "model": m, "requests": r, "concurrency": 1, "prompt_tokens": 500, "output_tokens": 100}
               for n, m, r in (("wa", first, requests[0]), ("wb", second, requests[1])) if r]
    data = {"fleet": fleet, "workload": streams, "duration": "60s", "warmup": "0s"}
    data.update(extra or {})
    return data


def e2e(result, stream):
    t = result.table
    i = int(np.flatnonzero(t.stream == stream)[0])
    return float(t.finished[i] - t.arrival[i])


def steps(p_of, start=0.0, n=100, prompt=500):
    """Iteration end times of one request (prefill, then n - 1 decodes), each iteration at
    the cost vector p_of(start time of the iteration)."""
    t, ends = start, []
    for j in range(n):
        p = p_of(t)
        dt = K.prefill_time(p, prompt) if j == 0 else K.decode_time(p, 1, prompt + j)
        t = t + dt
        ends.append(t)
    return ends


def test_an_engine_alone_on_shared_devices_runs_at_full_speed(write_scenario):
    """Pool b has no work: pool a's request takes exactly what it takes on a GPU of its own,
    and the pair draws exactly the power that one GPU draws for it."""
    shared = simulate(load_scenario(scenario(write_scenario, colocated(requests=(1, 0), overhead=0.004))))
    alone_data = colocated(requests=(1, 0), overhead=0.004)
    alone_data["fleet"] = alone_data["fleet"][:1]
    alone = simulate(load_scenario(scenario(write_scenario, alone_data)))
    p = alone.scenario.pools[0].deployment.params
    assert e2e(shared, 0) == pytest.approx(e2e(alone, 0), rel=1e-12)
    assert e2e(alone, 0) == pytest.approx(steps(lambda t: p)[-1], rel=1e-12)
    assert summarize(shared)["power"]["it_watts"] == pytest.approx(summarize(alone)["power"]["it_watts"], rel=1e-9)


def test_two_busy_engines_on_one_gpu_each_run_at_half_speed(write_scenario):
    """Both requests arrive at 0; a (1B) plans first at full speed and b joins at once, so a's
    prefill runs alone and its decodes at half the rates (twice the time, no host overhead
    here); b runs at half speed until a ends, then, from its next iteration, at full speed."""
    res = simulate(load_scenario(scenario(write_scenario, colocated())))
    pa = res.scenario.pools[0].deployment.params
    pb = res.scenario.pools[1].deployment.params
    a_ends = steps(lambda t: pa if t == 0.0 else shared_params(pa, 2))
    a_end = a_ends[-1]
    assert e2e(res, 0) == pytest.approx(a_end, rel=1e-9)
    assert e2e(res, 1) == pytest.approx(steps(lambda t: shared_params(pb, 2) if t < a_end else pb)[-1], rel=1e-9)
    solo = steps(lambda t: pa)[-1]
    assert e2e(res, 0) / solo == pytest.approx(2.0, rel=0.02)
    # a decode step at half the rates takes twice as long (no host overhead)
    assert K.decode_time(shared_params(pa, 2), 1, 600) == pytest.approx(2 * K.decode_time(pa, 1, 600), rel=1e-12)


def test_memory_fraction_splits_the_memory_and_refuses_a_model_that_does_not_fit(write_scenario):
    data = colocated("llama-3.1-8b", "llama-3.2-1b")
    data["fleet"][0]["memory_fraction"] = 0.7
    sc = load_scenario(scenario(write_scenario, data))
    a, b = (p.deployment for p in sc.pools)
    assert sc.spec.fleet[1].memory_fraction == pytest.approx(0.3)          # what a leaves
    assert a.kv_budget == pytest.approx(0.7 * 80e9 * 0.9 - a.weight_bytes - a.activation_reserve)
    assert b.kv_budget == pytest.approx(0.3 * 80e9 * 0.9 - b.weight_bytes - b.activation_reserve)
    data["fleet"][0]["memory_fraction"] = 0.1                              # 8 GB for 16 GB of weights
    path = scenario(write_scenario, data)
    (msg,) = problems(path)
    assert "fleet[0].serve: llama-3.1-8b at bf16 does not fit on nvidia-h100-sxm (memory_fraction 0.1)" in msg
    assert "exceed 7.2GB usable (8.0GB x memory_utilization 0.9)" in msg


def test_shared_devices_are_counted_once(write_scenario):
    """Two pools on the same two GPUs cost two GPUs; each pays its memory share."""
    data = colocated(requests=(1, 1), overhead=0.004)
    data["fleet"][0]["count"] = 2
    data["fleet"][0]["memory_fraction"] = 0.75
    s = summarize(simulate(load_scenario(scenario(write_scenario, data))))
    gpu_hour = (25000 + 70000 / 8) / 4 / HOURS_PER_YEAR     # the GPU and its 1/8 of the server, over 4 years
    assert s["cost"]["devices_usd_per_hour"] == pytest.approx(2 * gpu_hour)
    a, b = s["pools"]
    assert (a["usd_per_hour"], b["usd_per_hour"]) == pytest.approx((1.5 * gpu_hour, 0.5 * gpu_hour))
    assert b["shares_devices_with"] == "a" and a["devices"] == b["devices"] == 2
    assert row(s)["devices"] == 2 and "on a's devices" in row(s)["fleet"]


def test_sharing_mistakes_name_the_field(write_scenario):
    data = colocated()
    data["fleet"][1]["share_devices_with"] = "aa"
    path = scenario(write_scenario, data)
    (msg,) = problems(path)
    assert msg.startswith(f"{path}:{line_of(path, 'share_devices_with: aa')}: "
                          "fleet[1].share_devices_with: no pool 'aa'; did you mean 'a'?")
    data = colocated()
    data["fleet"][1]["serve"]["tp"] = 2
    data["fleet"][0]["count"] = 2
    assert any("fleet[1].serve.tp: pool b runs replica by replica on pool a's devices: give it a's tp (1)" in m
               for m in problems(scenario(write_scenario, data)))
    data = colocated()
    data["fleet"][0]["memory_fraction"] = 0.7
    data["fleet"][1]["memory_fraction"] = 0.5
    (msg,) = problems(scenario(write_scenario, data))
    assert "fleet[1].memory_fraction: pools a, b share a's devices with memory fractions adding up to 1.2" in msg
    data = colocated()
    data["fleet"] = data["fleet"][:1]
    data["fleet"][0]["memory_fraction"] = 0.5
    data["workload"] = data["workload"][:1]
    (msg,) = problems(scenario(write_scenario, data))
    assert "fleet[0].memory_fraction: memory_fraction splits the memory of devices that pools share" in msg
    (msg,) = problems(scenario(write_scenario, colocated(extra={"power": {"budget": "10kW"}})))
    assert msg.endswith("power: power: with pools that share devices (share_devices_with) "
                        "is not modelled in this version")
    data = colocated()
    data["fleet"][1]["device"] = "nvidia-a100-80gb"
    (msg,) = problems(scenario(write_scenario, data))
    assert "fleet[1].device: pool b runs on pool a's devices: its device must be a's" in msg


def test_slices_can_be_shared_too(write_scenario):
    """A pool on another's MIG slices inherits the partition: two models per 3g.40gb slice."""
    data = colocated(requests=(1, 1), overhead=0.004)
    data["fleet"][0].update({"partition": "3g.40gb", "count": 2})
    sc = load_scenario(scenario(write_scenario, data))
    b = sc.pools[1].deployment.device
    assert sc.pools[1].device_key == "nvidia-h100-sxm MIG 3g.40gb (memory_fraction 0.5)"
    assert b.memory == pytest.approx(80e9 / 2 / 2)
    s = summarize(simulate(sc))
    assert s["cost"]["devices_usd_per_hour"] == pytest.approx(2 * 0.5 * (25000 + 70000 / 8) / 4 / HOURS_PER_YEAR)
