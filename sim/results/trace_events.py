"""The events of a trace (`trace.py`): a builder that draws its tracks (processes and the
threads in them) and appends slices, instants and counters clipped to the window; and the
times they carry, each rounded once to whole nanoseconds and written as microseconds.
"""
from __future__ import annotations

import math

import numpy as np


def _ns(seconds) -> np.ndarray:
    return np.rint(np.asarray(seconds, float) * 1e9).astype(np.int64)


def _us(ns: int) -> float:
    return ns / 1000


def _clean(x):
    """JSON-safe: NaN and inf become null, numpy scalars Python numbers."""
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


class _Builder:
    def __init__(self, w0: int, w1: int | None):
        self.events: list[dict] = []
        self.w0, self.w1 = w0, w1
        self.pid_of: dict[int, int] = {}     # tid -> its process
        self._next = 1
        self._procs = 0

    # ---- tracks: pids and tids are drawn from one counter, so no tid repeats a pid ------
    def process(self, name: str) -> int:
        pid = self._next
        self._next += 1
        self.events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": name}})
        self.events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": pid,
                            "args": {"sort_index": self._procs}})
        self._procs += 1
        return pid

    def thread(self, pid: int, name: str, order: int) -> int:
        tid = self._next
        self._next += 1
        self.pid_of[tid] = pid
        self.events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        self.events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                            "args": {"sort_index": order}})
        return tid

    # ---- the window ------------------------------------------------------------------
    def clip(self, a: int, b: int) -> tuple[int, int] | None:
        """[a, b] clipped to the window, or None when it lies outside (as `_overlaps`)."""
        if a == b:
            return (a, b) if self.inside(a) else None
        lo, hi = max(a, self.w0), b if self.w1 is None else min(b, self.w1)
        return (lo, hi) if hi > lo else None

    def inside(self, t: int) -> bool:
        return t >= self.w0 and (self.w1 is None or t <= self.w1)

    # ---- events ---------------------------------------------------------------------
    def slice(self, pid, tid, name, a: int, b: int, args=None, cat="") -> None:
        span = self.clip(a, b)
        if span is None:
            return
        e = {"ph": "X", "name": name, "pid": pid, "tid": tid, "ts": _us(span[0]), "dur": _us(span[1] - span[0])}
        if cat:
            e["cat"] = cat
        if args:
            e["args"] = args
        self.events.append(e)

    def instant(self, pid, tid, name, t: int, args=None, scope="t", cat="") -> None:
        if not self.inside(t):
            return
        e = {"ph": "i", "name": name, "pid": pid, "tid": tid, "ts": _us(t), "s": scope}
        if cat:
            e["cat"] = cat
        if args:
            e["args"] = args
        self.events.append(e)

    def counter(self, pid, name, series: list[tuple[int, float]], key: str) -> None:
        """A counter's value over time: the value in force at the window's start, then its changes."""
        before = [v for t, v in series if t <= self.w0]
        if before:
            self.events.append({"ph": "C", "name": name, "pid": pid, "tid": pid, "ts": _us(self.w0),
                                "args": {key: before[-1]}})
        for t, v in series:
            if t > self.w0 and self.inside(t):
                self.events.append({"ph": "C", "name": name, "pid": pid, "tid": pid, "ts": _us(t), "args": {key: v}})

