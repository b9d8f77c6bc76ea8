"""Reading the timing tables packed into the cost vector `p` (layout in `sim.timing.kernels`):
the cell of a table's abscissae holding a point, and 1-D (linear) and 2-D (bilinear) lookups
whose components (compute, memory, link in a graph, link eager) are weighted by their scales.
Numba functions, called from `kernels.table_kernels` on the hot path."""
from __future__ import annotations

from numba import njit

COMPONENTS = 4        # per table: compute- and memory-bound seconds, link in a graph, link eager


@njit(cache=True)
def _cell(p, a, n, x):
    """Index of the cell of table abscissae p[a:a+n] holding x, and the fraction across it:
    past the last point the fraction exceeds 1 (linear extrapolation), before the first it
    is 0 (the first point's value)."""
    if n == 1:
        return 0, 0.0
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if p[a + mid] <= x:
            lo = mid
        else:
            hi = mid
    f = (x - p[a + lo]) / (p[a + lo + 1] - p[a + lo])
    return lo, (f if f > 0.0 else 0.0)


@njit(cache=True, inline="always")
def _weight(c, cs, ms, ls, eager):
    """A component's scale: compute, memory, then the link in a graph or run eagerly."""
    if c == 0:
        return cs
    if c == 1:
        return ms
    return ls if (c == 3) == eager else 0.0


@njit(cache=True)
def table1(p, a, x, cs, ms, ls, eager):
    """A 1-D timing table at x, its components weighted by their scales."""
    n = int(p[a])
    i, f = _cell(p, a + 1, n, x)
    t = 0.0
    for c in range(COMPONENTS):
        base = a + 1 + n * (1 + c)
        v = p[base + i] if n == 1 else p[base + i] + f * (p[base + i + 1] - p[base + i])
        t += v * _weight(c, cs, ms, ls, eager)
    return t


@njit(cache=True)
def table2(p, a, x, y, cs, ms, ls, eager):
    """A 2-D timing table at (x, y), bilinear, its components weighted by their scales."""
    nx, ny = int(p[a]), int(p[a + 1])
    i, f = _cell(p, a + 2, nx, x)
    j, g = _cell(p, a + 2 + nx, ny, y)
    i1 = i + 1 if nx > 1 else i
    j1 = j + 1 if ny > 1 else j
    t = 0.0
    for c in range(COMPONENTS):
        base = a + 2 + nx + ny + c * nx * ny
        v00, v01 = p[base + i * ny + j], p[base + i * ny + j1]
        v10, v11 = p[base + i1 * ny + j], p[base + i1 * ny + j1]
        v = (1.0 - f) * ((1.0 - g) * v00 + g * v01) + f * ((1.0 - g) * v10 + g * v11)
        t += v * _weight(c, cs, ms, ls, eager)
    return t
