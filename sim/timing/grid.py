"""Values measured on a grid of shapes, read at any shape.

A measured kernel table holds latencies at the points of a product grid (every m of its m
axis with every n and every k). `Grid` reads it anywhere: multilinear interpolation inside
the grid, so a grid point returns its measurement exactly and a value between two points
lies between theirs; linear extrapolation past the largest point of an axis (kernel time
grows about linearly with a dimension once the device is full); the smallest point's value
below the smallest point (a smaller launch takes no less time than the floor measured).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


class Grid:
    def __init__(self, axes: list[np.ndarray], values: np.ndarray):
        self.axes = [np.asarray(a, float) for a in axes]
        self.values = np.asarray(values, float)
        if self.values.shape != tuple(len(a) for a in self.axes):
            raise ValueError("grid values do not match the axes")
        if np.isnan(self.values).any():
            raise ValueError("grid has gaps; fill them before building it")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, axes: list[str], value: str = "latency") -> Grid:
        """A grid from measured rows (one per point; repeats averaged). Points missing from the
        product of the axes are filled from their neighbours along each axis in turn."""
        means = frame.groupby(axes)[value].mean()
        levels = [np.sort(frame[a].unique()) for a in axes]
        full = means.reindex(pd.MultiIndex.from_product(levels, names=axes))
        values = full.to_numpy(float).reshape([len(v) for v in levels])
        return cls(levels, _fill_gaps(values, levels))

    def __call__(self, *coords) -> np.ndarray:
        """Values at points: one array of coordinates per axis (broadcast together)."""
        pts = np.broadcast_arrays(*[np.asarray(c, float) for c in coords])
        shape = pts[0].shape
        pts = [p.ravel() for p in pts]
        lo, frac = [], []
        for axis, x in zip(self.axes, pts, strict=True):
            i, f = _bracket(axis, x)
            lo.append(i)
            frac.append(f)
        out = np.zeros(len(pts[0]))
        # sum over the 2^d corners of each point's cell, weighted by the fractions
        for corner in range(1 << len(self.axes)):
            idx, w = [], np.ones(len(out))
            for d in range(len(self.axes)):
                hi = (corner >> d) & 1
                idx.append(lo[d] + hi)
                w = w * (frac[d] if hi else 1.0 - frac[d])
            out += w * self.values[tuple(idx)]
        return out.reshape(shape)


def _bracket(axis: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each x: the index of the cell's lower point and the fraction across the cell.
    Past the last point the fraction exceeds 1 (linear extrapolation from the last cell);
    before the first it is 0 (the first point's value)."""
    if len(axis) == 1:
        return np.zeros(len(x), np.int64), np.zeros(len(x))
    i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, len(axis) - 2)
    f = (x - axis[i]) / (axis[i + 1] - axis[i])
    return i, np.maximum(f, 0.0)


def _along(known_x: np.ndarray, known_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values at x on the line through the known points, read as `Grid` reads an axis:
    linear between them, extended linearly past the last (never falling), and the first
    value before the first."""
    y = np.interp(x, known_x, known_y)
    if len(known_x) > 1:
        slope = max((known_y[-1] - known_y[-2]) / (known_x[-1] - known_x[-2]), 0.0)
        past = x > known_x[-1]
        y[past] = known_y[-1] + slope * (x[past] - known_x[-1])
    return y


def _fill_gaps(values: np.ndarray, levels: list[np.ndarray]) -> np.ndarray:
    """Fill missing points from their neighbours along an axis where the line through them
    has measurements; repeat over the axes until none is left (or nothing more can be
    filled). The tables leave out the largest shapes (attention stops at a few hundred
    thousand tokens of batch times context); past the last measurement a kernel's time keeps
    growing with its work, so a gap there continues the line of the last two measurements
    rather than repeating the last one."""
    values = values.copy()
    while np.isnan(values).any():
        before = int(np.isnan(values).sum())
        for d, axis in enumerate(levels):
            moved = np.moveaxis(values, d, -1)
            lines = moved.reshape(-1, moved.shape[-1])
            for line in lines:
                gap = np.isnan(line)
                if gap.any() and (~gap).any():
                    line[gap] = _along(axis[~gap], line[~gap], axis[gap])
            values = np.moveaxis(lines.reshape(moved.shape), -1, d)
        if int(np.isnan(values).sum()) == before:
            raise ValueError("measured grid has gaps that no axis fills")
    return values
