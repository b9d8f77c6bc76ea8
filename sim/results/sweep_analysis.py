"""A sweep's table (`analysis.load_sweep`, or any frame of points) as figures: the Pareto
front, SLO verdicts over two axes with their boundary, and metrics against an axis
(notebooks, `dcsim report`).

    df = load_sweep("results/sweep-x")          # one row per point and seed, df.attrs["axes"]
    pareto(df); slo_boundary(df, x_axis="count", y_axis="rate")
    sweep_lines(df, x="count", y="latency_s.ttft.p99", hue="rate")

Every plot takes an optional `ax`, as `analysis`'s do, and returns what it drew on.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .analysis import _axes, _t


def _order(values) -> list:
    """Distinct values: ascending when all are numbers, else in order of first appearance."""
    seen = list(dict.fromkeys(v for v in values if not _missing(v)))
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in seen):
        return sorted(seen)
    return seen


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def pareto_front(df: pd.DataFrame, x: str = "cost.usd_per_m_tokens", y: str = "latency_s.ttft.p99") -> pd.DataFrame:
    """The rows no other row beats on both columns (lower is better on each), sorted by x.
    Rows missing either figure are left out; of exact ties on both, every one is kept."""
    pts = df.dropna(subset=[x, y])
    xs, ys = pts[x].to_numpy(float), pts[y].to_numpy(float)
    dominated = np.zeros(len(pts), bool)
    for i in range(len(pts)):
        better = (xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i]))
        dominated[i] = better.any()
    return pts[~dominated].sort_values([x, y])


def pareto(df: pd.DataFrame, x: str = "cost.usd_per_m_tokens", y: str = "latency_s.ttft.p99",
           label: str | None = None, ax=None):
    """Every point of a sweep (or a comparison) and the Pareto front minimizing both figures,
    as a staircase; front points are labelled with the `label` column when given."""
    ax = _axes(ax)
    pts = df.dropna(subset=[x, y])
    front = pareto_front(pts, x, y)
    bars = _interval_bars(pts, x), _interval_bars(pts, y)
    if bars[0] is not None or bars[1] is not None:
        ax.errorbar(pts[x], pts[y], xerr=bars[0], yerr=bars[1], fmt="none", ecolor="0.8", elinewidth=0.7,
                    label="90% intervals")
    ax.scatter(pts[x], pts[y], color="0.6", s=18, label=f"{len(pts)} points")
    ax.step(front[x], front[y], where="post", color="C3", marker="o", label="Pareto front")
    if label is not None and label in front:
        for px, py, name in zip(front[x], front[y], front[label], strict=True):
            ax.annotate(_t(name), (px, py), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xlabel(_t(x))
    ax.set_ylabel(_t(y))
    ax.grid(True, alpha=0.3)
    ax.set_title(_t(f"{y} against {x}"))
    ax.legend(fontsize=8)
    return ax


def slo_grid(df: pd.DataFrame, x_axis: str, y_axis: str, ok_column: str = "slo.met") -> pd.DataFrame:
    """Per (x, y) point over its seeds: True when every seed met the SLO, False when any
    missed it, None when no seed has a verdict (an error, or no SLO). Rows: y; columns: x."""
    def verdict(values):
        v = [bool(x) for x in values if not _missing(x)]
        return None if not v else all(v)
    cells = df.groupby([y_axis, x_axis], sort=False)[ok_column].agg(verdict)
    grid = cells.unstack(x_axis).reindex(index=_order(df[y_axis]), columns=_order(df[x_axis]))
    # object cells hold True, False or None themselves (map alone would make bool columns numpy's)
    return grid.astype(object).map(lambda c: None if _missing(c) else bool(c)).astype(object)


def slo_boundary_points(df: pd.DataFrame, x_axis: str, y_axis: str, ok_column: str = "slo.met") -> pd.Series:
    """For each y, the smallest x whose point met the SLO (NaN where none did)."""
    grid = slo_grid(df, x_axis, y_axis, ok_column)
    return pd.Series({yv: next((xv for xv in grid.columns if grid.at[yv, xv] is True), np.nan)
                      for yv in grid.index}, name=x_axis, dtype=object).rename_axis(y_axis)


def slo_boundary(df: pd.DataFrame, x_axis: str, y_axis: str, ok_column: str = "slo.met", ax=None):
    """A two-axis sweep (say fleet size against load) as a grid of met (green) and missed (red)
    points, with the boundary: for each y, the smallest x that met the SLO."""
    ax = _axes(ax)
    grid = slo_grid(df, x_axis, y_axis, ok_column)
    xi = {v: k for k, v in enumerate(grid.columns)}
    yi = {v: k for k, v in enumerate(grid.index)}
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in [*xi, *yi])
    px = (lambda v: v) if numeric else xi.get
    py = (lambda v: v) if numeric else yi.get
    for verdict, style, name in ((True, dict(color="C2", marker="o"), "met"),
                                 (False, dict(color="C3", marker="x"), "missed"),
                                 (None, dict(color="0.6", marker="."), "no verdict")):
        cells = [(xv, yv) for yv in grid.index for xv in grid.columns if grid.at[yv, xv] is verdict]
        if cells:
            ax.scatter([px(c[0]) for c in cells], [py(c[1]) for c in cells], s=40, label=name, **style)
    edge = slo_boundary_points(df, x_axis, y_axis, ok_column).dropna()
    if len(edge):
        ax.plot([px(v) for v in edge.to_numpy()], [py(v) for v in edge.index], color="k", lw=1.5,
                label="smallest meeting")
    for values, place, ticks in ((xi, px, ax.set_xticks), (yi, py, ax.set_yticks)):
        if not numeric or len(values) <= 12:   # the grid's own values, not 2.25, 2.5, ...
            ticks([place(v) for v in values], [_t(v) for v in values])
    ax.set_xlabel(_t(x_axis))
    ax.set_ylabel(_t(y_axis))
    ax.set_title(_t(f"SLO ({ok_column}) over {x_axis} and {y_axis}"))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return ax


def sweep_lines(df: pd.DataFrame, x: str, y, hue: str | None = None, ax=None):
    """Each metric in `y` (a column or a list of them) against axis `x`, one line per value of
    axis `hue`: the mean over seeds, shaded between their min and max, with bars for the
    figure's 90 % interval when the table has it (`<metric>.lo`, `.hi`). One panel per metric;
    `ax` may be an Axes (one metric) or a sequence of them. Returns the figure."""
    metrics = [y] if isinstance(y, str) else list(y)
    if ax is None:
        import matplotlib.pyplot as plt
        cols = min(3, len(metrics))
        rows = math.ceil(len(metrics) / cols)
        _, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), layout="constrained", squeeze=False)
        axes = list(axes.flat)
    else:
        axes = list(np.atleast_1d(ax).flat)
    for extra in axes[len(metrics):]:
        extra.set_axis_off()
    xs = _order(df[x])
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in xs)
    where = {v: (v if numeric else k) for k, v in enumerate(xs)}
    groups = [(None, df)] if hue is None else [(h, df[df[hue] == h]) for h in _order(df[hue])]
    for metric, a in zip(metrics, axes, strict=False):
        for k, (h, rows) in enumerate(groups):
            s = rows.assign(**{metric: pd.to_numeric(rows[metric], errors="coerce")}).groupby(x)[metric]
            agg = s.agg(["mean", "min", "max"]).reindex([v for v in xs if v in s.groups]).dropna(how="all")
            if agg.empty:
                continue
            pos = [where[v] for v in agg.index]
            a.plot(pos, agg["mean"], marker="o", color=f"C{k}", label=None if hue is None else _t(f"{hue}={h}"))
            a.fill_between(pos, agg["min"], agg["max"], color=f"C{k}", alpha=0.2, lw=0)
            if f"{metric}.lo" in rows and f"{metric}.hi" in rows:   # the 90 % interval, over seeds' bounds
                lo = pd.to_numeric(rows[f"{metric}.lo"], errors="coerce").groupby(rows[x]).min().reindex(agg.index)
                hi = pd.to_numeric(rows[f"{metric}.hi"], errors="coerce").groupby(rows[x]).max().reindex(agg.index)
                a.errorbar(pos, agg["mean"], yerr=[(agg["mean"] - lo).clip(lower=0), (hi - agg["mean"]).clip(lower=0)],
                           fmt="none", ecolor=f"C{k}", elinewidth=0.8, capsize=3)
        if not numeric:
            a.set_xticks(range(len(xs)), [_t(v) for v in xs], fontsize=7)
        elif len(xs) <= 12:   # ticks at the sweep's own values, not at 2.25, 2.5, ...
            a.set_xticks(xs, [_t(v) for v in xs], fontsize=7)
        a.set_xlabel(_t(x))
        a.set_title(_t(metric), fontsize=9)
        a.grid(True, alpha=0.3)
        if hue is not None and a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    return axes[0].figure


def _interval_bars(df: pd.DataFrame, column: str):
    """Error-bar extents (below, above) of a column from its `.lo` and `.hi` columns, if any."""
    if f"{column}.lo" not in df or f"{column}.hi" not in df:
        return None
    v = pd.to_numeric(df[column], errors="coerce")
    lo = pd.to_numeric(df[f"{column}.lo"], errors="coerce")
    hi = pd.to_numeric(df[f"{column}.hi"], errors="coerce")
    return [(v - lo).clip(lower=0).fillna(0).to_numpy(), (hi - v).clip(lower=0).fillna(0).to_numpy()]


__all__ = ["pareto_front", "pareto", "slo_grid", "slo_boundary_points", "slo_boundary", "sweep_lines"]
