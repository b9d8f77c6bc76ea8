"""sim.results.analysis and sweep_analysis: loaders give the same figures from a folder as from
memory; the Pareto front and the SLO boundary by hand; every plot draws without error on the Agg
backend."""
from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sim.results import analysis, sweep_analysis  # noqa: E402
from tests.results_fixtures import RAIL, full_run, sweep_folder  # noqa: E402


@pytest.fixture(scope="module")
def run_and_folder(tmp_path_factory):
    return full_run(str(tmp_path_factory.mktemp("run")))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return sweep_folder(str(tmp_path_factory.mktemp("sweep")))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_load_run_equals_the_run_in_memory(run_and_folder):
    result, folder = run_and_folder
    disk, mem = analysis.load_run(folder), analysis.from_result(result)
    assert disk.name == mem.name == result.scenario.name and disk.path == folder and mem.path is None
    assert json.dumps(disk.summary, sort_keys=True) == json.dumps(mem.summary, sort_keys=True)
    assert disk.scenario == mem.scenario
    for frame in ("requests", "devices", "links"):
        a, b = getattr(disk, frame), getattr(mem, frame)
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_categorical=False)
    assert analysis.load_run(result).summary["requests"] == disk.summary["requests"]   # a RunResult is taken too


def test_load_run_and_load_sweep_refuse_other_folders(tmp_path):
    with pytest.raises(analysis.ResultsError, match="no such results folder"):
        analysis.load_run(tmp_path / "absent")
    with pytest.raises(analysis.ResultsError, match=r"missing summary.json, requests.parquet"):
        analysis.load_run(tmp_path)
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(analysis.ResultsError, match="missing sweep.parquet"):
        analysis.load_sweep(tmp_path)


def test_load_sweep_has_the_axes_and_every_figure(sweep):
    df = analysis.load_sweep(sweep)
    assert df.attrs["axes"] == ["count", "rate"] and df.attrs["sweep"]["name"] == "tiny-sweep"
    assert len(df) == 5 and (df["status"] == "ok").sum() == 4
    for col in ("latency_s.ttft.p99", "cost.usd_per_m_tokens", "slo.met", "throughput.requests_per_s", "devices"):
        assert col in df
    failed = df[df["status"] == "error"].iloc[0]
    assert math.isnan(failed["latency_s.ttft.p99"]) and failed["error"].startswith("ValueError")
    assert analysis.is_sweep(sweep)


def test_pareto_front_by_hand():
    df = pd.DataFrame({"cost": [1, 2, 3, 4, 2, 5, np.nan, 4],
                       "p99": [5, 3, 4, 1, 3, 5, 0.1, 2], "name": list("abcdefgh")})
    front = sweep_analysis.pareto_front(df, "cost", "p99")
    # c is beaten by b, f by everything, h by d; g has no cost; b and e tie and both stay
    assert front["name"].tolist() == ["a", "b", "e", "d"]
    ax = sweep_analysis.pareto(df, "cost", "p99", label="name")
    assert len(ax.texts) == 4


def grid_frame():
    """count x rate, two seeds each; 3 replicas at 20/s met on one seed only (so: missed)."""
    met = {(1, 10): True, (2, 10): True, (1, 20): False, (2, 20): False, (3, 20): "split", (4, 20): True,
           (1, 30): False, (2, 30): False, (3, 30): False, (4, 30): None}
    rows = []
    for (count, rate), ok in met.items():
        for seed in (1, 2):
            verdict = (seed == 1) if ok == "split" else ok
            rows.append({"count": count, "rate": rate, "seed": seed, "slo.met": verdict})
    return pd.DataFrame(rows)


def test_slo_boundary_by_hand():
    df = grid_frame()
    grid = sweep_analysis.slo_grid(df, "count", "rate")
    assert grid.index.tolist() == [10, 20, 30] and grid.columns.tolist() == [1, 2, 3, 4]
    assert grid.at[20, 3] is False and grid.at[20, 4] is True and grid.at[30, 4] is None
    assert grid.at[10, 3] is None          # never run
    edge = sweep_analysis.slo_boundary_points(df, "count", "rate")
    assert edge[10] == 1 and edge[20] == 4 and pd.isna(edge[30])
    ax = sweep_analysis.slo_boundary(df, "count", "rate")
    line = ax.lines[-1]
    assert line.get_xdata().tolist() == [1, 4] and line.get_ydata().tolist() == [10, 20]


def test_sweep_lines_show_the_mean_and_the_spread_over_seeds():
    df = pd.DataFrame({"count": [1, 1, 2, 2, 1, 1, 2, 2], "rate": [5] * 4 + [9] * 4,
                       "y": [1.0, 3.0, 10.0, 20.0, 2.0, 2.0, np.nan, 7.0]})
    fig = sweep_analysis.sweep_lines(df, "count", ["y"], hue="rate")
    ax = fig.axes[0]
    assert ax.lines[0].get_ydata().tolist() == [2.0, 15.0] and ax.lines[1].get_ydata().tolist() == [2.0, 7.0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == 1.0 and band.max() == 20.0


def test_sweep_lines_and_pareto_draw_the_90_percent_intervals():
    df = pd.DataFrame({"count": [1, 2], "y": [2.0, 4.0], "y.lo": [1.5, 3.0], "y.hi": [3.0, 6.0],
                       "x": [1.0, 2.0], "x.lo": [0.9, 1.8], "x.hi": [1.2, 2.4]})
    ax = sweep_analysis.sweep_lines(df, "count", ["y"]).axes[0]
    bars = [c for c in ax.containers if c.has_yerr]
    segments = bars[0].lines[2][0].get_segments()
    assert [(s[0][1], s[1][1]) for s in segments] == [(1.5, 3.0), (3.0, 6.0)]
    ax = sweep_analysis.pareto(df, x="x", y="y")
    assert any(c.has_xerr and c.has_yerr for c in ax.containers)


def test_link_matrix_fills_idle_bins():
    run = analysis.Run("x", {}, pd.DataFrame(), pd.DataFrame(), pd.DataFrame({
        "time": [0.0, 0.5, 1.5, 1.5], "src": ["a", "a", "a", "b"], "dst": ["b", "b", "b", "a"],
        "bytes": [1.0, 1.0, 1.0, 1.0], "utilization": [0.2, 0.4, 0.6, 0.8]}), {})
    m = analysis.link_matrix(run)
    assert m.columns.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert m.loc["a -> b"].tolist() == [0.2, 0.4, 0.0, 0.6] and m.loc["b -> a"].tolist() == [0.0, 0.0, 0.0, 0.8]


def test_every_plot_draws(run_and_folder, sweep):
    result, folder = run_and_folder
    run = analysis.load_run(folder)
    for plot in (analysis.latency_cdf, analysis.utilization_over_time, analysis.power_over_time,
                 analysis.cost_breakdown, analysis.autoscaling_timeline, analysis.link_utilization_over_time):
        ax = plot(run)
        assert ax.has_data() or ax.texts, plot.__name__
    assert len(analysis.latency_cdf(result).lines) == 3              # straight from a RunResult
    ax = analysis.link_heatmap(run)
    assert ax.collections and ax.figure.axes[-1].get_ylabel() == "mean utilization"   # the colour bar
    analysis.link_heatmap(run, RAIL, stat="max")                      # a topology file given
    analysis.link_heatmap(run, analysis._topology_graph(run, None))   # or a graph
    df = analysis.load_sweep(sweep)
    sweep_analysis.pareto(df, label="point")
    sweep_analysis.slo_boundary(df, "count", "rate")
    fig = sweep_analysis.sweep_lines(df, "rate", ["latency_s.ttft.p99", "cost.usd_per_m_tokens"], hue="count")
    assert len([a for a in fig.axes if a.lines]) == 2


def test_plots_of_a_run_without_a_fabric_or_prices():
    run = analysis.Run("bare", {"window_s": [0, 1], "cost": {"usd_per_hour": None, "notes": ["no $ price"]}},
                       pd.DataFrame({"measured": [], "state": [], "ttft": [], "tpot": [], "e2e": []}),
                       pd.DataFrame({"time": [0.0], "pool": ["p"], "busy_fraction": [0.5], "gpu_active": [0.4],
                                     "kv_occupancy": [0.1], "power_w": [np.nan]}), None, {})
    assert analysis.cost_breakdown(run).texts
    assert analysis.power_over_time(run).texts
    assert analysis.link_utilization_over_time(run).texts
    with pytest.raises(analysis.ResultsError, match="no topology"):
        analysis.link_heatmap(run)
    analysis.latency_cdf(run)
