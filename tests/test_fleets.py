"""Heterogeneous fleets, routing among pools, power, capping, cost, compare and plan."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import BASE

from sim.catalog import economics
from sim.cli import main
from sim.results.report import devices_frame
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from sim.timing import kernels
from sim.tools.plan import Planner

TWO_POOLS = copy.deepcopy(BASE)
TWO_POOLS["fleet"] = [
    {"pool": "h100", "device": "nvidia-h100-sxm", "count": 2,
     "serve": {"model": "llama-3.1-8b", "precision": "fp8", "engine": {"max_batch_seqs": 32, "chunked_prefill": 512}}},
    {"pool": "a100", "device": "nvidia-a100-80gb", "count": 2,
     "serve": {"model": "llama-3.1-8b", "precision": "bf16", "engine": {"max_batch_seqs": 32, "chunked_prefill": 512}}},
]


def run(path, **kw):
    return summarize(simulate(load_scenario(path, **kw)))


# ---- heterogeneous fleets and routing ------------------------------------------------------

def test_two_pools_behind_a_random_router_are_the_pools_alone_with_split_traffic(write_scenario):
    """Random routing thins a Poisson stream: each pool sees Poisson traffic at its share of
    the rate (its replicas over all), so it behaves as that pool alone at that rate."""
    changes = {"router.policy": "random", "duration": "400s", "warmup": "20s", "workload.0.rate": "16/s"}
    both = run(write_scenario(changes, TWO_POOLS))
    for k, pool in enumerate(TWO_POOLS["fleet"]):
        alone = copy.deepcopy(TWO_POOLS)
        alone["fleet"] = [pool]
        alone_s = run(write_scenario({**changes, "workload.0.rate": "8/s", "seed": 5}, alone))
        mixed = both["pools"][k]
        share = mixed["requests_completed"] / sum(p["requests_completed"] for p in both["pools"])
        assert share == pytest.approx(0.5, abs=0.03)
        for metric in ("ttft", "e2e"):
            assert mixed["latency_s"][metric]["mean"] == pytest.approx(alone_s["latency_s"][metric]["mean"], rel=0.12)
        assert mixed["latency_s"]["tpot"]["p50"] == pytest.approx(alone_s["latency_s"]["tpot"]["p50"], rel=0.05)


def test_weighted_router_splits_by_pool_weight(write_scenario):
    s = run(write_scenario({"router": {"policy": "weighted", "weights": {"h100": 3, "a100": 1}},
                            "duration": "120s"}, TWO_POOLS))
    done = [p["requests_completed"] for p in s["pools"]]
    assert done[0] / sum(done) == pytest.approx(0.75, abs=0.04)


def test_lowest_cost_fills_the_cheaper_pool_first(write_scenario):
    """At a light load every request fits the cheapest pool's free slots."""
    s = run(write_scenario({"router.policy": "lowest-cost", "workload.0.rate": "2/s"}, TWO_POOLS))
    figures = {p["pool"]: p for p in s["pools"]}
    from sim.simulation import pool_figures
    sc = load_scenario(write_scenario({"router.policy": "lowest-cost"}, TWO_POOLS))
    from sim.demand.workload import generate
    f = pool_figures(sc, generate(sc.spec.workload, sc.spec.duration, 1))
    cheap = min(f, key=lambda name: f[name].usd_per_token)
    dear = next(name for name in figures if name != cheap)
    assert figures[cheap]["requests_completed"] > 0 and figures[dear]["requests_completed"] == 0


def test_lowest_latency_prefers_the_faster_pool_until_it_queues(write_scenario):
    light = run(write_scenario({"router.policy": "lowest-latency", "workload.0.rate": "1/s"}, TWO_POOLS))
    assert light["pools"][0]["requests_completed"] > 0 == light["pools"][1]["requests_completed"]  # fp8 H100 is faster
    heavy = run(write_scenario({"router.policy": "lowest-latency", "workload.0.rate": "100/s"}, TWO_POOLS))
    assert heavy["pools"][1]["requests_completed"] > 0


def test_a_request_for_a_model_no_pool_serves_is_rejected_with_that_reason(write_scenario):
    from sim.core.metrics import REASONS, REJECTED
    sc = load_scenario(write_scenario({}, TWO_POOLS))
    object.__setattr__(sc.spec.workload[0], "model", "llama-3.1-70b")   # past validation
    res = simulate(sc)
    assert (res.table.state == REJECTED).all()
    assert {REASONS[int(r)] for r in res.table.reason} == {"no_pool_serves_model"}


def test_router_weights_must_name_pools(write_scenario):
    with pytest.raises(ScenarioError, match=r"router.weights.h200: no pool 'h200'.*did you mean 'h100'"):
        load_scenario(write_scenario({"router": {"policy": "weighted", "weights": {"h200": 1}}}, TWO_POOLS))
    with pytest.raises(ScenarioError, match="policy weighted needs weights"):
        load_scenario(write_scenario({"router": {"policy": "weighted"}}, TWO_POOLS))


# ---- ASICs -----------------------------------------------------------------------------------

def test_sram_only_chip_needs_a_pipeline_over_many_chips(write_scenario):
    """A 70B model's int8 weights (70.6 GB) cannot fit eight 230 MB Groq chips; the error
    says how many pipeline stages would, and that many do fit."""
    groq = {"fleet.0.device": "groq-lpu", "fleet.0.count": 8,
            "fleet.0.serve": {"model": "llama-3.1-70b", "precision": "int8", "tp": 8,
                              "engine": {"max_batch_tokens": 256, "chunked_prefill": 256, "max_batch_seqs": 16,
                                         "activation_reserve": "8MB"}}}
    with pytest.raises(ScenarioError, match=r"does not fit on groq-lpu with tp=8.*pp=\d+"):
        load_scenario(write_scenario(groq))
    planner = Planner(write_scenario({**copy.deepcopy(groq), "fleet.0.device": "nvidia-h100-sxm",
                                      "fleet.0.serve.precision": "fp8"}),
                      slo={"ttft_p99": "2s"})
    pp, _ = planner._fewest_stages("groq-lpu", "int8", 8, 80)
    weights_per_chip = 70.6e9 / (8 * pp)
    assert weights_per_chip < 230e6 * 0.9 and 70.6e9 / (8 * (pp - 1)) + 8e6 > 230e6 * 0.9 * 0.9
    sc = load_scenario(write_scenario({**groq, "fleet.0.count": 8 * pp, "fleet.0.serve.pp": pp}))
    assert sc.pools[0].deployment.weight_bytes * 8 * pp == pytest.approx(sc.pools[0].deployment.model.computed_params())


def test_a_device_without_fp8_serves_16_bit_or_int8_weights_in_plan(write_scenario):
    planner = Planner(write_scenario({"fleet.0.serve.precision": "fp8"}), slo={"ttft_p99": "2s"})
    assert planner.layouts("google-tpu-v6e").layouts[0].precision == "int8"
    assert "instead of fp8" in planner.layouts("google-tpu-v6e").note


# ---- power -------------------------------------------------------------------------------

ONE = {"fleet.0.count": 1, "duration": "10s", "warmup": "0s",
       "workload.0": {"name": "one", "requests": 1, "concurrency": 1, "prompt_tokens": 500, "output_tokens": 50}}


def test_energy_is_the_integral_of_power_by_hand(write_scenario):
    """One request on one H100: energy = PUE x (idle + server share) x window + PUE x
    (TDP - idle) x computing time, where computing time is the kernels' iteration times
    minus the host overhead of each iteration."""
    res = simulate(load_scenario(write_scenario(ONE)))
    s = summarize(res)
    dep = res.scenario.pools[0].deployment
    p = dep.params
    e = np.zeros(0, np.int64)
    busy = kernels.batch_time(np.array([500]), np.zeros(1, np.int64), np.array([500]), e, p)
    busy += sum(kernels.batch_time(e, e, e, np.array([500 + k], np.int64), p) for k in range(1, 50))
    computing = busy - 50 * p[kernels.K_OVERHEAD]
    w0, w1 = s["window_s"]
    dev = dep.device
    node = dev.node.power / dev.node.devices

    def joules(span):
        return 1.3 * ((dev.idle_watts() + node) * span + (dev.tdp - dev.idle_watts()) * computing)
    assert s["power"]["energy_kwh"] == pytest.approx(joules(w1 - w0) / 3.6e6, rel=1e-9)
    # and the power time series, integrated over its bins, gives the energy of its span
    frame = devices_frame(res)
    width = frame["time"].iloc[1] - frame["time"].iloc[0]
    assert (frame["power_w"] * width).sum() * 1.3 == pytest.approx(joules(len(frame) * width), rel=1e-9)


def test_cost_per_token_is_cost_per_hour_over_tokens_per_hour(write_scenario):
    s = run(write_scenario({"economics": {"cost_of_capital": 0.08, "amortize_years": 4, "utilization": 0.5,
                                          "market_usd_per_m_tokens": 0.05}}))
    c, t = s["cost"], s["throughput"]
    tps = t["input_tokens_per_s"] + t["output_tokens_per_s"]
    assert c["usd_per_m_tokens"] == pytest.approx(c["usd_per_hour"] / (tps * 3600) * 1e6)
    # capex by hand: (GPU + its server share) x annuity factor at 8% over 4 years, per hour:
    # two H100s at $25,000 each plus 1/8 of the $70,000 8-GPU server without its GPUs
    crf = 0.08 * 1.08 ** 4 / (1.08 ** 4 - 1)
    assert economics.capital_recovery_factor(0.08, 4) == pytest.approx(crf)
    assert c["devices_usd_per_hour"] == pytest.approx(2 * (25000 + 70000 / 8) * crf / 8760)
    assert c["energy_usd_per_hour"] == pytest.approx(s["power"]["facility_watts"] / 1000 * 0.08)
    # the split prices recover the hour's cost
    hourly = (c["usd_per_m_input_tokens_split"] * t["input_tokens_per_s"]
              + c["usd_per_m_output_tokens_split"] * t["output_tokens_per_s"]) * 3600 / 1e6
    assert hourly == pytest.approx(c["usd_per_hour"])
    split_ratio = c["usd_per_m_output_tokens_split"] / c["usd_per_m_input_tokens_split"]
    assert split_ratio == pytest.approx(c["output_token_weight"])
    # break-even at 50% of the fleet's capacity (its saturated throughput)
    assert c["break_even_usd_per_m_tokens"] == pytest.approx(
        c["usd_per_hour"] / (c["capacity_tokens_per_s"] * 0.5 * 3600) * 1e6)
    assert c["capacity_utilization"] == pytest.approx(tps / c["capacity_tokens_per_s"])
    assert c["margin"] == pytest.approx((0.05 - c["usd_per_m_tokens"]) / 0.05)


def test_rental_pays_for_its_own_power(write_scenario):
    s = run(write_scenario({"economics": {"pricing": "rent"}}))
    assert s["cost"]["energy_usd_per_hour"] == 0.0
    assert s["cost"]["usd_per_hour"] == pytest.approx(2 * 3.99)


def test_a_power_budget_caps_the_clock_and_the_draw(write_scenario):
    free = run(write_scenario({"workload.0.rate": "30/s"}))
    budget = 0.8 * free["power"]["facility_watts"]
    capped = run(write_scenario({"workload.0.rate": "30/s", "power": {"budget": f"{budget}W"}}))
    cap = capped["power"]["cap"]
    assert cap["capped_fraction"] > 0.5 and cap["min_clock"] < 1.0
    assert capped["power"]["facility_watts"] < free["power"]["facility_watts"]
    assert capped["power"]["facility_watts"] == pytest.approx(budget, rel=0.05)
    assert capped["latency_s"]["ttft"]["mean"] > free["latency_s"]["ttft"]["mean"]   # prefill is compute-bound
    assert capped["requests"]["completed"] == capped["requests"]["arrived"]


def test_a_capped_clock_slows_compute_by_the_cube_law(write_scenario):
    """At clock f a compute-bound prefill takes 1/f as long (less the host overhead), and the
    power cap's clock for a budget follows P = idle + (peak - idle) f^3."""
    sc = load_scenario(write_scenario())
    p = sc.pools[0].deployment.params
    slow = p.copy()
    slow[kernels.K_COMPUTE_SCALE] /= 0.8
    e = np.zeros(0, np.int64)
    batch = (np.array([8192]), np.zeros(1, np.int64), np.array([8192]), e)
    full = kernels.batch_time(*batch, p) - p[kernels.K_OVERHEAD]
    capped = kernels.batch_time(*batch, slow) - p[kernels.K_OVERHEAD]
    assert capped == pytest.approx(full / 0.8, rel=0.02)


def test_rack_budget_needs_rack_size(write_scenario):
    with pytest.raises(ScenarioError, match="rack budget needs rack_devices"):
        load_scenario(write_scenario({"power": {"budget": "10kW", "scope": "rack"}}))


# ---- variants and compare ------------------------------------------------------------------

def test_variants_replace_fields_and_name_unknown_ones(write_scenario):
    path = write_scenario({"variants": {"a100": {"fleet": [TWO_POOLS["fleet"][1]]}}})
    assert load_scenario(path, variant="a100").pools[0].device_key == "nvidia-a100-80gb"
    assert load_scenario(path).pools[0].device_key == "nvidia-h100-sxm"
    with pytest.raises(ScenarioError, match="no variant 'a10'.*did you mean 'a100'"):
        load_scenario(path, variant="a10")


def test_compare_runs_every_variant_on_one_workload(write_scenario, tmp_path, capsys):
    path = write_scenario({"variants": {"a100": {"name": "t-a100", "fleet": [TWO_POOLS["fleet"][1]]}}})
    other = write_scenario({"name": "other", "workload.0.rate": "1/s", "seed": 99})
    out = tmp_path / "cmp"
    assert main(["compare", path, other, "--out", str(out)]) == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [r["scenario"] for r in rows] == ["t", "t-a100", "other"]
    # the other file ran on the first one's workload and seed: same fleet, same figures
    assert rows[2]["ttft_p99_s"] == rows[0]["ttft_p99_s"] and rows[2]["completed"] == rows[0]["completed"]
    assert (out / "cost_vs_ttft_p99.png").stat().st_size > 1000
    assert "TTFT p99" in capsys.readouterr().out


# ---- plan ----------------------------------------------------------------------------------

PLAN = {"duration": "60s", "warmup": "10s", "workload.0.rate": "40/s",
        "slo": {"ttft_p99": "1s", "tpot_p99": "50ms"}}


def test_plan_count_meets_the_slo_and_one_fewer_does_not(write_scenario):
    planner = Planner(write_scenario(PLAN), tps=[1])
    [device] = planner.plan(["nvidia-a100-80gb"])
    lay = device.best
    assert lay.best.met and lay.below is not None and not lay.below.met
    assert lay.below.replicas == lay.best.replicas - 1 and lay.best.replicas > 1
    # checked by running both afresh: the answer with every seed, one fewer with the seed that missed
    for seed in lay.seeds_checked:
        s = summarize(simulate(planner._scenario("nvidia-a100-80gb", "bf16", 1, 1, lay.best.replicas, None), seed=seed))
        assert s["slo"]["met"]
    s = summarize(simulate(planner._scenario("nvidia-a100-80gb", "bf16", 1, 1, lay.below.replicas, None),
                           seed=lay.below.seed))
    assert not s["slo"]["met"]
    assert len(lay.seeds_checked) == 3
    # bisection, not exhaustive: fewer simulations than counts up to the answer
    assert len(planner.trials) < lay.best.replicas + 2 or lay.best.replicas <= 3


def test_plan_reverse_finds_the_highest_sustained_load(write_scenario):
    planner = Planner(write_scenario(PLAN))
    ok, fail = planner.max_rate(tolerance=0.05)
    assert ok.met and not fail.met and ok.rate < fail.rate <= ok.rate * 1.05 + 1e-9


def test_plan_reports_a_model_that_fits_nowhere(write_scenario, capsys, tmp_path):
    # 405B in bf16 (810 GB) fits no layout of at most 8 devices of 80 GB GPUs or 16 GB TPUs
    big = write_scenario({**PLAN, "fleet.0.serve.model": "llama-3.1-405b", "fleet.0.count": 16,
                          "fleet.0.serve.tp": 16})
    code = main(["plan", big, "--devices", "nvidia-h100-sxm,google-tpu-v5e", "--max-devices", "8",
                 "--out", str(tmp_path / "plan")])
    out = capsys.readouterr().out
    assert code == 1
    assert "no device in the search meets the SLO" in out
    assert out.count("fits no layout") == 2 and "over --max-devices 8" in out
    doc = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert all(d["layouts"] == [] for d in doc["devices"])


def test_plan_with_a_multi_pool_scenario_says_what_it_sizes(write_scenario, capsys):
    assert main(["plan", write_scenario({}, TWO_POOLS)]) == 2
    assert "plan sizes a one-pool fleet" in capsys.readouterr().err
