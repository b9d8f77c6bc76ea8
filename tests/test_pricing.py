"""One pricing basis per comparison, always shown; a missing price is an error naming its field."""
from __future__ import annotations

import json

import pytest

from sim.catalog import economics
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
    assert main(["plan", path, "--devices", "nvidia-h100-sxm,nvidia-l40s", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "economics.pricing" in err and "nvidia-l40s has no list_price_usd" in err
    l40s = write_scenario({**QUICK, "fleet.0.device": "nvidia-l40s", "economics": {"pricing": "own"}})
    assert main(["validate", l40s]) == 2
    err = capsys.readouterr().err
    assert ":" in err.split("economics.pricing")[0] and "nvidia-l40s has no list_price_usd" in err
    other = write_scenario({**QUICK, "fleet.0.device": "nvidia-l40s"})
    assert main(["compare", path, other, "--out", str(tmp_path / "c")]) == 2
    assert "economics.pricing: nvidia-l40s has no list_price_usd" in capsys.readouterr().err
    # owning needs the server's price too, or owned devices would compare unequally
    chosen = economics.basis({"amd-mi300x": load_scenario(write_scenario({**QUICK, "fleet.0.device": "amd-mi300x"}))
                              .pools[0].deployment.device}, "own")
    assert ("amd-mi300x", "node.list_price_usd") in chosen.missing and "node: {devices: 8" in chosen.problem()


def test_auto_takes_one_basis_for_all_devices(write_scenario):
    mixed = {"nvidia-h100-sxm": load_scenario(write_scenario(QUICK)).pools[0].deployment.device,
             "amd-mi300x": load_scenario(write_scenario({**QUICK, "fleet.0.device": "amd-mi300x"})).pools[0]
             .deployment.device}
    chosen = economics.basis(mixed, "auto")
    assert chosen.name == "rent" and "hourly" in chosen.chosen_by      # MI300X has no server price
    assert economics.basis({"nvidia-h100-sxm": mixed["nvidia-h100-sxm"]}, "auto").name == "own"
    # the old names still read
    assert load_scenario(write_scenario({**QUICK, "economics": {"pricing": "rental"}})).pricing.name == "rent"


def test_break_even_is_at_a_share_of_the_capacity_measured_by_hand(write_scenario):
    """One engine that prefills one 100-token prompt per iteration and answers with 1 token:
    its capacity is 101 tokens per iteration, whatever the load; break-even at half of it."""
    from sim.results.summary import summarize
    from sim.simulation import simulate
    from sim.timing import kernels
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


# ---- a plan that always answers ----------------------------------------------------------------

def test_the_quickstart_plan_answers_past_its_8_gpu_topology(tmp_path, capsys):
    import os

    from tests.conftest import ROOT
    code = main(["plan", os.path.join(ROOT, "scenarios", "quickstart.yaml"), "--rate", "200/s",
                 "--devices", "nvidia-h100-sxm,amd-mi300x", "--tp", "1", "--seeds", "1",
                 "--set", "duration=20s", "--set", "warmup=4s", "--out", str(tmp_path / "plan")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "pricing: rent" in out
    doc = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert any("outgrow the scenario's topology 'hgx-h100-1node'" in n for n in doc["notes"])
    assert doc["complete"] and doc["pricing"] == "rent"
    assert all(lay["best"] for d in doc["devices"] for lay in d["layouts"])
    assert max(t["devices"] for t in doc["trials"]) > 8


def test_the_chat_service_2023_plan_answers_without_a_device_limit(tmp_path, capsys):
    """The header command of scenarios/chat-service-2023.yaml, at a fiftieth of its load and
    a shorter window: the fleet is sized from the load, not capped at a fixed count."""
    import os

    from tests.conftest import ROOT
    code = main(["plan", os.path.join(ROOT, "scenarios", "chat-service-2023.yaml"), "--tolerance", "0.25",
                 "--rate", "40/s", "--seeds", "1", "--set", "duration=40s", "--set", "warmup=20s",
                 "--set", "drain=250s", "--tp", "8", "--out", str(tmp_path / "plan")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "cheapest:" in out and "pricing: rent" in out


def test_a_trial_that_cannot_be_built_ends_its_layout_not_the_plan(write_scenario, tmp_path, monkeypatch, capsys):
    from sim.spec.errors import Loc, ScenarioError
    from sim.tools.plan import Planner
    real = Planner._scenario

    def flaky(self, device, precision, tp, pp, replicas, rate):
        if device == "nvidia-a100-80gb" and rate is not None:     # fits, but its trials cannot be built
            raise ScenarioError.one(Loc("x"), "fleet", "cannot build this one")
        return real(self, device, precision, tp, pp, replicas, rate)
    monkeypatch.setattr(Planner, "_scenario", flaky)
    monkeypatch.setattr(Planner, "start_count", lambda self, layout: 1)
    path = write_scenario({**QUICK, "workload.0.rate": "5/s"})
    code = main(["plan", path, "--devices", "nvidia-a100-80gb,nvidia-h100-sxm", "--tp", "1", "--seeds", "1",
                 "--rate", "5/s", "--out", str(tmp_path / "plan")])
    out = capsys.readouterr().out
    assert code == 0 and "cannot build this one" in out
    doc = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert [t["device"] for t in doc["trials"]][0] == "nvidia-a100-80gb"
    assert any(t["device"] == "nvidia-h100-sxm" and t["met"] for t in doc["trials"])


# ---- figures users expect --------------------------------------------------------------------

def test_a_run_says_whether_it_reached_steady_state_and_splits_ttft(write_scenario):
    from sim.results.summary import summarize
    from sim.simulation import simulate
    calm = summarize(simulate(load_scenario(write_scenario({"duration": "30s", "warmup": "5s"}))))
    assert calm["steady_state"]["steady"]
    # one GPU and 20x the load: the queue grows all through the window
    jammed = summarize(simulate(load_scenario(write_scenario({"duration": "30s", "warmup": "5s", "fleet.0.count": 1,
                                                              "workload.0.rate": "200/s"}))))
    st = jammed["steady_state"]
    assert not st["steady"] and st["in_flight_growth"] > 0.05 * st["arrived_in_window"] and "more requests" in st["why"]
    lat = calm["latency_s"]
    assert lat["ttft_service"]["mean"] + lat["queue_wait"]["mean"] == pytest.approx(lat["ttft"]["mean"], rel=1e-9)
