"""Traffic per directed link over time: the bytes each link carried in each time bin, kept
sparse (only the bins and links that carried something), as the fabric's results read them.
"""
from __future__ import annotations

import numpy as np


class LinkLog:
    """Bytes carried per directed link per time bin. While a bin is open, bytes are added up
    per route (one number per flow and advance); when it closes they are spread over the
    routes' links, and only the links that carried something are kept."""

    def __init__(self, bin_width: float, n_links: int, route_links: list):
        self.bin_width = bin_width
        self.n_links = n_links
        self.route_links = route_links     # route id -> its directed links
        self.pending: dict[int, float] = {}
        self.bin = 0                       # index of the open bin
        self.done_bins: list[np.ndarray] = []
        self.done_links: list[np.ndarray] = []
        self.done_bytes: list[np.ndarray] = []

    def add(self, flows, t0: float, t1: float) -> None:
        """Flows (with .route and .rate) running from t0 to t1; time only moves forward."""
        if t1 <= t0:
            return
        w = self.bin_width
        b0, b1 = int(t0 // w), int(t1 // w)
        for b in range(b0, b1 + 1):
            overlap = min(t1, (b + 1) * w) - max(t0, b * w)
            if overlap > 0:
                if b != self.bin:
                    self._close()
                    self.bin = b
                pending = self.pending
                for f in flows:
                    pending[f.route] = pending.get(f.route, 0.0) + f.rate * overlap

    def _spread(self) -> tuple[np.ndarray, np.ndarray]:
        per_link = np.zeros(self.n_links)
        for route, carried in self.pending.items():
            per_link[self.route_links[route]] += carried
        used = np.flatnonzero(per_link)
        return used, per_link[used]

    def _close(self) -> None:
        if self.pending:
            used, carried = self._spread()
            self.done_bins.append(np.full(len(used), self.bin, np.int64))
            self.done_links.append(used)
            self.done_bytes.append(carried)
            self.pending = {}

    def sparse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bin, link, bytes) for every bin and link that carried bytes."""
        used, carried = self._spread()
        return (np.concatenate(self.done_bins + [np.full(len(used), self.bin, np.int64)]),
                np.concatenate(self.done_links + [used]), np.concatenate(self.done_bytes + [carried]))


__all__ = ["LinkLog"]
