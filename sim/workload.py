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

from .arrivals import sample_times
from .lengths import draw_lengths
from .sessions import SessionPlan, link, plan_sessions, session_graph
from .scenario import Stream

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
    sessions: SessionPlan | None = None   # session streams' call graphs

    def __len__(self) -> int:
        return len(self.time)


def arrival_times(stream: Stream, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants in [0, duration) for a synthetic stream (see sim.arrivals)."""
    return sample_times(stream.arrival, stream.rate, duration, rng)


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
    """A trace's requests in [0, duration): its slice [start, start + duration) timed from
    the slice start, stretched by time_scale, and, when the stream gives rate:, rescaled so
    that its mean rate ((requests - 1) / (last - first)) is that rate. Every request of the
    slice that falls inside the run is kept with its own token counts, so the request count
    and token totals are the trace's."""
    spec = stream.trace
    frame = read_trace(spec.path)
    t = frame["t"].to_numpy(float)
    end = np.inf if spec.duration is None else spec.start + spec.duration
    inside = (t >= spec.start) & (t < end)
    if not inside.any():
        raise ValueError(f"{spec.path} has no requests in [{spec.start:g}s, {end:g}s); "
                         f"it spans 0 to {t[-1]:g}s from its first request")
    t = (t[inside] - spec.start) * spec.time_scale
    if stream.rate is not None and len(t) > 1 and t[-1] > t[0]:
        t = t * ((len(t) - 1) / (t[-1] - t[0])) / stream.rate  # rescale to the requested mean rate
    keep = t < duration
    prompt = np.maximum(frame["ContextTokens"].to_numpy(np.int64)[inside], 1)[keep]
    output = np.maximum(frame["GeneratedTokens"].to_numpy(np.int64)[inside], 1)[keep]
    return t[keep], prompt, output


def generate(streams: list[Stream], duration: float, seed: int) -> Arrivals:
    """All requests of all streams: open-loop arrivals in [0, duration) (and the first call
    of each session) merged in time order, followed by the closed-loop streams' requests and
    the sessions' later calls (sent during the run)."""
    open_parts, closed_parts, graphs = [], [], []
    for index, stream in enumerate(streams):
        if stream.session is not None:
            t = arrival_times(stream, duration, rng_for(seed, "workload", stream.name, "arrivals"))
            t = t[: stream.requests] if stream.requests is not None else t
            graphs.append((index, session_graph(stream.session, len(t),
                                                rng_for(seed, "workload", stream.name, "sessions")), t))
            continue
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
        part = (t, np.full(len(t), index, np.int32), prompt, output, np.full(len(t), -1, np.int64))
        (closed_parts if stream.closed_loop else open_parts).append(part)
    plan, session_parts = plan_sessions(graphs) if graphs else (None, [])
    for sp in session_parts:
        first = ~np.isnan(sp["time"])
        for mask, parts in ((first, open_parts), (~first, closed_parts)):
            parts.append((sp["time"][mask], np.full(int(mask.sum()), sp["stream"], np.int32), sp["prompt"][mask],
                          sp["output"][mask], sp["node"][mask]))
    time = np.concatenate([p[0] for p in open_parts]) if open_parts else np.empty(0)
    order = np.argsort(time, kind="stable")
    parts = [tuple(col[order] for col in _concat(open_parts))] if open_parts else []
    parts += closed_parts
    cols = _concat(parts)
    if plan is not None:
        link(plan, session_parts, cols[4].astype(np.int64))
    return Arrivals(time=cols[0].astype(float), stream=cols[1].astype(np.int32),
                    prompt=cols[2].astype(np.int64), output=cols[3].astype(np.int64), sessions=plan)


def _concat(parts):
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(5))
