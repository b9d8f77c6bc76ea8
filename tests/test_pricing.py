"""One pricing basis per comparison, always shown; a missing price is an error naming its field."""
from __future__ import annotations

import json

import pytest

from sim import economics
from sim.cli import main
from sim.scenario import load_scenario

QUICK = {"duration": "20s", "warmup": "2s", "slo": {"ttft_p99": "2s", "tpot_p99": "100ms"}}


@pytest.mark.parametrize("basis", ["own", "rent"])
def test_plan_prices_both_devices_on_the_basis_asked_and_says_it(write_scenario, tmp_path, capsys, basis):
    path = write_scenario({**QUICK, "economics": {"pricing": basis}})
    assert main(["plan", path, "--devices", "nvidia-h100-sxm,nvidia-a100-80gb", "--tp", "1", "--seeds", "1",
                 "--out", str(tmp_path / "plan")]) == 0
    out = capsys.readouterr().out
    assert f"pricing: {basis}:" in out
    doc = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert doc["pricing"] == basis
    bests = [lay["best"] for d in doc["devices"] for lay in d["layouts"] if lay["best"]]
    assert len(bests) == 2 and {b["pricing"] for b in bests} == {basis}


@pytest.mark.parametrize("basis", ["own", "rent"])
def test_compare_prices_every_fleet_on_one_basis(write_scenario, tmp_path, capsys, basis):
    a = write_scenario({**QUICK, "economics": {"pricing": basis}})
    b = write_scenario({**QUICK, "fleet.0.device": "nvidia-a100-80gb", "name": "t-a100",
                        "economics": {"pricing": "own" if basis == "rent" else "rent"}})   # the first file's wins
    assert main(["compare", a, b, "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert f"pricing: {basis}:" in out
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["pricing"] for r in rows] == [basis, basis]


def test_a_basis_a_device_has_no_price_for_is_an_error_naming_the_field(write_scenario, tmp_path, capsys):
    path = write_scenario({**QUICK, "economics": {"pricing": "own"}})
    assert main(["plan", path, "--devices", "nvidia-h100-sxm,amd-mi300x", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "economics.pricing" in err and "amd-mi300x has no list_price_usd" in err
    mi = write_scenario({**QUICK, "fleet.0.device": "amd-mi300x", "economics": {"pricing": "own"}})
    assert main(["validate", mi]) == 2
    err = capsys.readouterr().err
    assert ":" in err.split("economics.pricing")[0] and "amd-mi300x has no list_price_usd" in err
    other = write_scenario({**QUICK, "fleet.0.device": "amd-mi300x"})
    assert main(["compare", path, other, "--out", str(tmp_path / "c")]) == 2
    assert "economics.pricing: amd-mi300x has no list_price_usd" in capsys.readouterr().err


def test_auto_takes_one_basis_for_all_devices(write_scenario):
    mixed = {"nvidia-h100-sxm": load_scenario(write_scenario(QUICK)).pools[0].deployment.device,
             "amd-mi300x": load_scenario(write_scenario({**QUICK, "fleet.0.device": "amd-mi300x"})).pools[0]
             .deployment.device}
    chosen = economics.basis(mixed, "auto")
    assert chosen.name == "rent" and "hourly" in chosen.chosen_by      # MI300X has no list price
    assert economics.basis({"nvidia-h100-sxm": mixed["nvidia-h100-sxm"]}, "auto").name == "own"
    # the old names still read
    assert load_scenario(write_scenario({**QUICK, "economics": {"pricing": "rental"}})).pricing.name == "rent"


def test_break_even_is_at_a_share_of_the_capacity_measured_by_hand(write_scenario):
    """One engine that prefills one 100-token prompt per iteration and answers with 1 token:
    its capacity is 101 tokens per iteration, whatever the load; break-even at half of it."""
    from sim import kernels
    from sim.simulation import simulate
    from sim.summary import summarize
    path = write_scenario({"duration": "60s", "warmup": "10s", "fleet.0.count": 1,
                           "fleet.0.serve.engine": {"max_batch_seqs": 1},
                           "workload.0": {"name": "w", "rate": "2/s", "prompt_tokens": 100, "output_tokens": 1},
                           "economics": {"utilization": 0.5, "pricing": "rent"}})
    scenario = load_scenario(path)
    s = summarize(simulate(scenario))
    c = s["cost"]
    iteration = kernels.prefill_time(scenario.pools[0].deployment.params, 100, 1)
    assert c["capacity_tokens_per_s"] == pytest.approx(101 / iteration, rel=1e-3)
    assert c["break_even_usd_per_m_tokens"] == pytest.approx(3.99 / (101 / iteration * 0.5 * 3600) * 1e6, rel=1e-3)
    tps = s["throughput"]["input_tokens_per_s"] + s["throughput"]["output_tokens_per_s"]
    assert c["capacity_utilization"] == pytest.approx(tps / c["capacity_tokens_per_s"])
    assert tps == pytest.approx(2 * 101, rel=0.25)         # the offered load (Poisson), well below capacity
    assert c["busy_fraction"] < 0.2
