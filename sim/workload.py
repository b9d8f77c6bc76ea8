"""Requests as they arrive: arrival processes, token lengths and trace replay.

Each stream draws from generators seeded by the scenario seed and the stream's own name
(`rng_for`), so adding a stream or a component never changes another stream's draws.
All arrivals of a run are generated up front as columns and merged in time order.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .scenario import (EmpiricalLength, ExponentialLength, FixedLength, LognormalLength, Stream,
                       UniformLength)

TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """An independent generator for one named component of a run."""
    key = tuple(zlib.crc32(n.encode()) for n in names)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class Arrivals:
    """Every request of a run: open-loop ones in arrival order, then each closed-loop
    stream's requests in the order its clients will send them (time NaN until sent)."""

    time: np.ndarray      # seconds
    stream: np.ndarray    # index into the scenario's workload list
    prompt: np.ndarray    # prompt tokens
    output: np.ndarray    # output tokens to generate

    def __len__(self) -> int:
        return len(self.time)


def arrival_times(stream: Stream, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants in [0, duration) for a synthetic stream."""
    rate, proc = stream.rate, stream.arrival.process
    mean_gap = 1.0 / rate
    expected = rate * duration
    chunk = int(expected + 6 * np.sqrt(expected) + 16)
    times: list[np.ndarray] = []
    t = 0.0
    while t < duration:
        if proc == "poisson":
            gaps = rng.exponential(mean_gap, chunk)
        elif proc == "gamma":
            shape = 1.0 / stream.arrival.cv ** 2
            gaps = rng.gamma(shape, mean_gap / shape, chunk)
        else:
            gaps = np.full(chunk, mean_gap)
        ts = t + np.cumsum(gaps)
        times.append(ts)
        t = ts[-1]
    out = np.concatenate(times) if times else np.empty(0)
    return out[out < duration]


def draw_lengths(dist, n: int, rng: np.random.Generator) -> np.ndarray:
    """n token counts (>= 1) from a length distribution."""
    if isinstance(dist, FixedLength):
        return np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, UniformLength):
        return rng.integers(dist.min, dist.max + 1, n, dtype=np.int64)
    if isinstance(dist, LognormalLength):
        sigma2 = np.log1p(dist.cv ** 2)
        mu = np.log(dist.mean) - sigma2 / 2
        x = np.rint(rng.lognormal(mu, np.sqrt(sigma2), n))
        return np.clip(x, dist.min, dist.max).astype(np.int64)
    if isinstance(dist, ExponentialLength):
        return np.minimum(rng.geometric(1.0 / dist.mean, n), dist.max).astype(np.int64)
    if isinstance(dist, EmpiricalLength):
        if dist.values is not None:
            values = np.asarray(dist.values, dtype=np.int64)
            w = None if dist.weights is None else np.asarray(dist.weights, float) / sum(dist.weights)
        else:
            values = _csv_column(dist.path, dist.column)
            w = None
        return rng.choice(values, n, p=w)
    raise TypeError(f"unknown length distribution {dist!r}")


def _csv_column(path: str, column: str) -> np.ndarray:
    frame = pd.read_csv(path)
    if column not in frame.columns:
        raise ValueError(f"{path} has no column '{column}'; columns: {', '.join(frame.columns)}")
    values = frame[column].to_numpy(np.int64)
    return np.maximum(values, 1)


def read_trace(path: str) -> pd.DataFrame:
    """A trace in the Azure LLM inference schema with a `t` column: seconds from the first request."""
    frame = pd.read_csv(path)
    missing = [c for c in TRACE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)}; expected {','.join(TRACE_COLUMNS)}")
    ts = pd.to_datetime(frame["TIMESTAMP"], format="mixed")
    frame = frame.assign(t=(ts - ts.min()).dt.total_seconds()).sort_values("t", kind="stable")
    return frame.reset_index(drop=True)


def trace_arrivals(stream: Stream, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frame = read_trace(stream.trace.path)
    t = frame["t"].to_numpy(float) * stream.trace.time_scale
    if stream.rate is not None and len(t) > 1 and t[-1] > 0:
        t = t * ((len(t) - 1) / t[-1]) / stream.rate  # rescale to the requested mean rate
    keep = t < duration
    prompt = np.maximum(frame["ContextTokens"].to_numpy(np.int64), 1)[keep]
    output = np.maximum(frame["GeneratedTokens"].to_numpy(np.int64), 1)[keep]
    return t[keep], prompt, output


def generate(streams: list[Stream], duration: float, seed: int) -> Arrivals:
    """All requests of all streams: open-loop arrivals in [0, duration) merged in time
    order, followed by the closed-loop streams' requests (sent during the run)."""
    open_parts, closed_parts = [], []
    for index, stream in enumerate(streams):
        if stream.trace is not None:
            t, prompt, output = trace_arrivals(stream, duration)
        else:
            if stream.closed_loop:
                t = np.full(stream.requests, np.nan)
            else:
                t = arrival_times(stream, duration, rng_for(seed, "workload", stream.name, "arrivals"))
            prompt = draw_lengths(stream.prompt_tokens, len(t), rng_for(seed, "workload", stream.name, "prompt"))
            output = draw_lengths(stream.output_tokens, len(t), rng_for(seed, "workload", stream.name, "output"))
        if stream.requests is not None and not stream.closed_loop:
            t, prompt, output = t[: stream.requests], prompt[: stream.requests], output[: stream.requests]
        part = (t, np.full(len(t), index, np.int32), prompt, output)
        (closed_parts if stream.closed_loop else open_parts).append(part)
    time = np.concatenate([p[0] for p in open_parts]) if open_parts else np.empty(0)
    order = np.argsort(time, kind="stable")
    parts = [tuple(col[order] for col in _concat(open_parts))] if open_parts else []
    parts += closed_parts
    cols = _concat(parts)
    return Arrivals(time=cols[0].astype(float), stream=cols[1].astype(np.int32),
                    prompt=cols[2].astype(np.int64), output=cols[3].astype(np.int64))


def _concat(parts):
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))
