"""Results as pandas frames, and the plots people draw from them (notebooks, `dcsim report`).

    run = load_run("results/quickstart")        # or load_run(simulate(scenario)): in memory
    latency_cdf(run); utilization_over_time(run); power_over_time(run); cost_breakdown(run)
    df = load_sweep("results/sweep-x")          # one row per point and seed, df.attrs["axes"]

A sweep's plots (Pareto front, SLO boundary, lines per axis) are in `sweep_analysis`.
Every plot takes an optional `ax` (a new pyplot figure otherwise, so it shows inline in
Jupyter) and returns what it drew on.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd
import yaml

from .folder import ResultsError, verify

LATENCY_LABELS = {"ttft": "time to first token", "tpot": "time per output token", "e2e": "end to end",
                  "queue_wait": "queue wait"}
UTILIZATION_LABELS = {"busy_fraction": "busy", "gpu_active": "GPU active", "kv_occupancy": "KV used"}


@dataclass
class Run:
    """One run's results: `summary` is summary.json as a dict, `scenario` the resolved scenario."""
    name: str
    summary: dict
    requests: pd.DataFrame
    devices: pd.DataFrame
    links: pd.DataFrame | None
    scenario: dict
    path: str | None = None     # the folder it was read from; None when simulated in memory


def load_run(path) -> Run:
    """Read a folder written by `dcsim run` (a `RunResult` from `simulate` is taken as well)."""
    from ..simulation import RunResult
    if isinstance(path, RunResult):
        return from_result(path)
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ResultsError(f"{path}: no such results folder")
    need = ("summary.json", "requests.parquet", "devices.parquet", "scenario.yaml")
    missing = [f for f in need if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise ResultsError(f"{path}: not a dcsim results folder (missing {', '.join(missing)})")
    verify(path)
    try:
        with open(os.path.join(path, "summary.json")) as fh:
            summary = json.load(fh)
        with open(os.path.join(path, "scenario.yaml")) as fh:
            scenario = yaml.safe_load(fh) or {}
        frames = {f: pd.read_parquet(os.path.join(path, f"{f}.parquet")) for f in ("requests", "devices")}
        links_path = os.path.join(path, "links.parquet")
        links = pd.read_parquet(links_path) if os.path.isfile(links_path) else None
    except (OSError, ValueError, yaml.YAMLError) as exc:   # pyarrow's errors are ValueErrors too
        raise ResultsError(f"{path}: cannot read the results: {exc}") from None
    if not isinstance(summary, dict) or "latency_s" not in summary:
        raise ResultsError(f"{path}: summary.json is not a dcsim run summary")
    return Run(summary.get("scenario") or os.path.basename(os.path.normpath(path)), summary,
               frames["requests"], frames["devices"], links, scenario, path)


def from_result(result, summary: dict | None = None) -> Run:
    """The same Run as `load_run` of the folder `dcsim run` would write, without the files."""
    from .report import _jsonable, devices_frame, requests_frame
    from .summary import summarize
    summary = summarize(result) if summary is None else summary
    # through JSON, as summary.json holds it: tuples become lists, numpy scalars floats
    summary = json.loads(json.dumps(summary, default=_jsonable))
    links = result.fabric.link_frame() if result.fabric is not None else None
    return Run(summary["scenario"], summary, requests_frame(result, summary), devices_frame(result), links,
               result.scenario.resolved_dict())


def _as_run(run) -> Run:
    return run if isinstance(run, Run) else load_run(run)


def is_sweep(path) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), "sweep.json"))


def load_sweep(path) -> pd.DataFrame:
    """A sweep folder's sweep.parquet: one row per point and seed, the axes as columns and
    every summary figure; `df.attrs["axes"]` names the axes, `df.attrs["sweep"]` is sweep.json."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ResultsError(f"{path}: no such sweep folder")
    for f in ("sweep.json", "sweep.parquet"):
        if not os.path.isfile(os.path.join(path, f)):
            raise ResultsError(f"{path}: not a dcsim sweep folder (missing {f})")
    try:
        with open(os.path.join(path, "sweep.json")) as fh:
            meta = json.load(fh)
        df = pd.read_parquet(os.path.join(path, "sweep.parquet"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: cannot read the sweep: {exc}") from None
    if not isinstance(meta, dict):
        raise ResultsError(f"{path}: sweep.json is not a dcsim sweep description")
    axes = [a["name"] for a in meta.get("axes", []) if isinstance(a, dict) and "name" in a]
    absent = [a for a in axes if a not in df.columns]
    if absent:
        raise ResultsError(f"{path}: sweep.parquet has no column for axis {', '.join(absent)}")
    df.attrs["axes"] = axes
    df.attrs["sweep"] = meta
    return df


# ---- one run ---------------------------------------------------------------------------


def _axes(ax, size=(7.0, 4.0)):
    """The caller's Axes, or one on a new pyplot figure (shown inline in a notebook)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=size, layout="constrained")[1]


def _shade_warmup(ax, run: Run) -> None:
    """Grey out the time before the measurement window, which the summary leaves out."""
    w0 = (run.summary.get("window_s") or [0.0])[0]
    if w0 > 0:
        ax.axvspan(0.0, w0, color="0.9", zorder=0, label="warm-up")


def latency_cdf(run, metrics=("ttft", "tpot", "e2e"), ax=None):
    """Cumulative distributions of the latencies of completed requests in the measurement
    window (what the summary's percentiles describe), on a log time axis; the legend gives
    each one's p99."""
    run = _as_run(run)
    ax = _axes(ax)
    r = run.requests
    done = r[r["measured"] & (r["state"].astype(str) == "completed")]
    for m in metrics:
        v = np.sort(done[m].dropna().to_numpy()) if m in done else np.array([])
        if len(v):   # the p99 of them all, as the summary's; the log axis drops zeros
            p99 = _seconds(np.percentile(v, 99))
            ax.step(v[v > 0], np.arange(1, len(v) + 1)[v > 0] / len(v), where="post",
                    label=f"{LATENCY_LABELS.get(m, m)} (p99 {p99})")
    ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(_t(f"{run.name}: latency of {len(done):,} completed requests"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return ax


def utilization_over_time(run, columns=("busy_fraction", "gpu_active", "kv_occupancy"), ax=None):
    """Per pool, the mean over its replicas of each time bin's busy fraction, GPU-active
    fraction and KV-cache occupancy (devices.parquet)."""
    run = _as_run(run)
    ax = _axes(ax)
    d = run.devices
    styles = ["-", "--", ":", "-."]
    if len(d):
        for k, (pool, rows) in enumerate(d.groupby("pool", sort=False)):
            mean = rows.groupby("time")[list(columns)].mean()
            for col, style in zip(columns, styles, strict=False):
                ax.plot(mean.index, mean[col], style, color=f"C{k}",
                        label=_t(f"{pool} {UTILIZATION_LABELS.get(col, col)}"))
    _shade_warmup(ax, run)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("fraction")
    ax.set_title("utilization per pool (mean over replicas)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return ax


def power_over_time(run, ax=None):
    """IT power (every replica's devices plus their share of server overhead, summed per
    time bin) and facility power (IT x the summary's PUE), in kW."""
    run = _as_run(run)
    ax = _axes(ax)
    d = run.devices
    if len(d) and d["power_w"].notna().any():
        it = d.groupby("time")["power_w"].sum(min_count=1) / 1000.0
        pue = (run.summary.get("power") or {}).get("pue") or 1.0
        ax.plot(it.index, it * pue, label=f"facility (PUE {pue:g})")
        ax.plot(it.index, it, label="IT")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no power figures (a device without TDP in the catalog)", ha="center",
                transform=ax.transAxes)
    _shade_warmup(ax, run)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("kW")
    ax.set_title("power")
    return ax


def cost_breakdown(run, ax=None):
    """The fleet's dollars per hour split into devices (amortized price or rental) and
    electricity, with the price per million tokens it comes to."""
    run = _as_run(run)
    ax = _axes(ax, (8.0, 2.0))
    c = run.summary.get("cost") or {}
    if c.get("usd_per_hour") is None:
        ax.text(0.5, 0.5, _t("no cost: " + ("; ".join(c.get("notes") or []) or "no price in the catalog")),
                ha="center", transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
        return ax
    left = 0.0
    for k, (key, label) in enumerate((("devices_usd_per_hour", "devices"), ("energy_usd_per_hour", "energy"))):
        v = c.get(key) or 0.0
        ax.barh([0], [v], left=left, height=0.5, color=f"C{k}", label=_t(f"{label} ${v:,.2f}/h"))
        left += v
    per_m = c.get("usd_per_m_tokens")
    ax.set_yticks([])
    ax.set_ylim(-0.5, 0.5)
    ax.set_xlabel(_t("$ per hour"))
    ax.set_title(_t(f"cost ${c['usd_per_hour']:,.2f}/h ({c.get('pricing', '')})"
                    + ("" if per_m is None else f"; ${per_m:.3f} per M tokens")))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return ax


def autoscaling_timeline(run, ax=None):
    """Replicas each autoscaled pool runs over time (the summary's `autoscaling` timeline)."""
    run = _as_run(run)
    ax = _axes(ax, (7.0, 3.0))
    for k, a in enumerate(run.summary.get("autoscaling") or []):
        pts = a.get("timeline") or []
        if pts:
            t, n = zip(*pts, strict=True)
            end = max(run.summary.get("window_s", [0, t[-1]])[1], t[-1])
            ax.step([*t, end], [*n, n[-1]], where="post", color=f"C{k}", label=_t(a["pool"]))
    _shade_warmup(ax, run)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("replicas")
    ax.set_title("replicas running (autoscaling)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return ax


# ---- the network -----------------------------------------------------------------------


def link_matrix(run) -> pd.DataFrame:
    """Link utilization, one row per directed link ("src -> dst") that carried anything and
    one column per time bin (its start) from 0 to the last bin with traffic; idle bins are 0.
    links.parquet keeps only bins with traffic, so the bin width is taken as the smallest
    step between them."""
    links = _as_run(run).links
    if links is None or links.empty:
        return pd.DataFrame()
    times = np.unique(links["time"].to_numpy(float))
    width = float(np.min(np.diff(times))) if len(times) > 1 else max(float(times[0]), 1.0)
    frame = links.assign(link=links["src"].astype(str) + " -> " + links["dst"].astype(str),
                         bin=np.rint(links["time"].to_numpy(float) / width).astype(np.int64))
    m = frame.pivot_table(index="link", columns="bin", values="utilization", aggfunc="sum", fill_value=0.0)
    m = m.reindex(columns=range(int(frame["bin"].max()) + 1), fill_value=0.0)
    m.columns = m.columns.to_numpy() * width
    return m


def link_utilization_over_time(run, top: int = 30, ax=None):
    """Heat map of link utilization: the `top` busiest directed links (by mean) against time."""
    m = link_matrix(run)
    ax = _axes(ax, (9.0, 0.5 + 0.22 * min(top, max(len(m), 1))))
    if m.empty:
        ax.text(0.5, 0.5, "no link carried traffic", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    m = m.loc[m.mean(axis=1).sort_values(ascending=False).index[:top]]
    t = m.columns.to_numpy(float)
    width = float(np.min(np.diff(t))) if len(t) > 1 else 1.0
    img = ax.imshow(m.to_numpy(), aspect="auto", interpolation="nearest", cmap="viridis", vmin=0,
                    extent=(t[0], t[-1] + width, len(m) - 0.5, -0.5))
    ax.set_yticks(range(len(m)), [_t(n) for n in m.index], fontsize=7)
    ax.set_xlabel("simulated time (s)")
    ax.set_title(f"link utilization over time (the {len(m)} busiest links)")
    ax.figure.colorbar(img, ax=ax, label="utilization")
    return ax


def _topology_graph(run: Run, topology):
    from ..fabric.topology import TopologySpec, load_topology
    if isinstance(topology, nx.Graph):
        return topology
    if isinstance(topology, TopologySpec):
        return topology.graph()
    if topology is None:
        topology = run.scenario.get("topology")
        if topology is None:
            raise ResultsError(f"{run.name}: the scenario has no topology; pass one to draw the links on")
        if isinstance(topology, str):   # a path, relative to the scenario file
            base = os.path.dirname(run.summary.get("source") or "")
            topology = topology if os.path.isabs(topology) else os.path.join(base, topology)
        else:
            return TopologySpec.model_validate(topology).graph()
    return load_topology(os.fspath(topology)).graph()


def link_heatmap(run, topology=None, stat: str = "mean", max_nodes: int = 300, ax=None):
    """The topology graph (laid out as `dcsim topology --png` draws it) with each link coloured
    by its utilization over `link_matrix`'s time bins (`stat`: "mean" or "max"), the busier
    direction of the pair. `topology`: a topology YAML path, a TopologySpec or a networkx
    graph; by default the run's own. Links that carried nothing stay grey."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from ..fabric.topology_drawing import _collapse_servers, _grid_layout, _layered_layout, draw_nodes

    run = _as_run(run)
    g = _topology_graph(run, topology)
    ax = _axes(ax, (9.0, 5.0))
    rep = {n: n for n in g}
    accels = [n for n, k in g.nodes(data="kind") if k == "accelerator"]
    if accels and all(g.nodes[a].get("coord") is not None for a in accels):
        pos = _grid_layout(g)
    else:
        if g.number_of_nodes() > max_nodes:   # every server but the first as one node, as drawn
            first = g.nodes[accels[0]].get("host") if accels else None
            rep = {n: h if h not in (None, first) else n for n, h in g.nodes(data="host")}
            g = _collapse_servers(g, first)
        pos = _layered_layout(g)
    m = link_matrix(run)
    per_link = (m.mean(axis=1) if stat == "mean" else m.max(axis=1)) if not m.empty else pd.Series(dtype=float)
    value: dict[frozenset, float] = {}
    for link, v in per_link.items():
        a, b = (rep.get(x, x) for x in link.split(" -> "))
        if a != b:
            key = frozenset((a, b))
            value[key] = max(value.get(key, 0.0), float(v))
    busy = [(a, b) for a, b in g.edges if value.get(frozenset((a, b)), 0.0) > 0]
    idle = [(a, b) for a, b in g.edges if value.get(frozenset((a, b)), 0.0) <= 0]
    nx.draw_networkx_edges(g, pos, edgelist=idle, ax=ax, edge_color="0.8", width=0.6)
    top = max(value.values(), default=0.0) or 1.0
    norm, cmap = Normalize(0.0, top), colormaps["plasma"]
    if busy:
        nx.draw_networkx_edges(g, pos, edgelist=busy, ax=ax, width=2.5,
                               edge_color=[cmap(norm(value[frozenset(e)])) for e in busy])
    draw_nodes(g, pos, ax, size=90, small=25)
    ax.figure.colorbar(ScalarMappable(norm, cmap), ax=ax, label=f"{stat} utilization", shrink=0.8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=7, frameon=False)
    ax.set_title(_t(f"{run.name}: link utilization ({stat} over time; grey: idle)"))
    ax.set_axis_off()
    return ax


def _t(text) -> str:
    """Text for a plot: matplotlib reads a pair of "$" as mathtext, so each is escaped."""
    return str(text).replace("$", r"\$")


def _seconds(v: float) -> str:
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


__all__ = ["Run", "ResultsError", "load_run", "from_result", "load_sweep", "is_sweep",
           "latency_cdf", "utilization_over_time", "power_over_time", "cost_breakdown", "autoscaling_timeline",
           "link_matrix", "link_heatmap", "link_utilization_over_time"]
