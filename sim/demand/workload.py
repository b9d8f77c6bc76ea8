"""Requests as they arrive: arrival processes, token lengths and trace replay.

Each stream draws from generators seeded by the scenario seed and the stream's own name
(`rng_for`), so adding a stream or a component never changes another stream's draws.
All arrivals of a run are generated up front as columns and merged in time order.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..catalog.models import ModelSpec
from .arrival_times import sample_times
from .distributions import draw
from .media import KIND_CODE, media_field, stream_requests
from .session_plan import SessionPlan, link, plan_sessions
from .sessions import Graph, session_graph
from .streams import Stream
from .trace_file import read_trace


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
    # requests beyond chat text (sim.demand.media); None when every stream is text
    modality: np.ndarray | None = None       # sim.demand.media.KIND_CODE of its model
    clip: np.ndarray | None = None           # speech to text: row of its clip's first window; else -1
    media_seconds: np.ndarray | None = None  # audio (or video) seconds; NaN where none
    samples: np.ndarray | None = None        # images (video: clips) per request; 0 for token models
    pixels: np.ndarray | None = None         # output pixels x frames x images
    # shared system prompts of plain streams (`system_prompt:`): key (-1: none) and tokens
    system: np.ndarray | None = None
    system_len: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.time)


def arrival_times(stream: Stream, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants in [0, duration) for a synthetic stream (see sim.demand.arrivals)."""
    return sample_times(stream.arrival, stream.rate, duration, rng)


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
    prompt = frame["ContextTokens"].to_numpy(np.int64)[inside][keep]     # at least 1: trace_file checks
    output = frame["GeneratedTokens"].to_numpy(np.int64)[inside][keep]
    return t[keep], prompt, output


def generate(streams: list[Stream], duration: float, seed: int,
             models: list[ModelSpec | None] | None = None) -> Arrivals:
    """All requests of all streams: open-loop arrivals in [0, duration) (and the first call
    of each session) merged in time order, followed by the closed-loop streams' requests and
    the sessions' later calls (sent during the run).

    `models[i]` is the model stream i asks for; a stream that describes its requests by
    their media (audio_seconds, image, video) becomes requests by that model's modality
    (`sim.demand.media`): a speech-to-text clip becomes one request per window, all at its arrival."""
    models = models or [None] * len(streams)
    open_parts, closed_parts, graphs = [], [], []
    system_of: dict[int, tuple[np.ndarray, int]] = {}   # stream -> (each request's variant, tokens)
    for index, stream in enumerate(streams):
        model = models[index]
        kind = KIND_CODE[model.modality] if model is not None else 0
        if media_field(stream) is not None:
            part = _media_part(stream, index, model, duration, seed)
        elif stream.session is not None:
            graphs.append(_session_stream(stream, index, duration, seed))
            continue
        else:
            part = _token_part(stream, index, model, kind, duration, seed, system_of)
        (closed_parts if stream.closed_loop else open_parts).append(part)
    plan, session_parts = plan_sessions(graphs) if graphs else (None, [])
    _add_session_calls(session_parts, open_parts, closed_parts)
    parts = [_in_time_order(_concat(open_parts))] if open_parts else []
    cols = _concat(parts + closed_parts)
    if plan is not None:
        link(plan, session_parts, cols[4].astype(np.int64))
    media = _media_columns(cols)
    system = _system_keys(cols[1], cols[10].astype(np.int64), system_of, plan) if system_of else {}
    return Arrivals(time=cols[0].astype(float, copy=False), stream=cols[1].astype(np.int32, copy=False),
                    prompt=cols[2].astype(np.int64, copy=False), output=cols[3].astype(np.int64, copy=False),
                    sessions=plan,
                    **(media or {}), **system)


def _media_part(stream: Stream, index: int, model: ModelSpec | None, duration: float, seed: int) -> tuple:
    """The columns of a stream that describes its requests by their media: requests by its
    model's modality (`sim.demand.media`)."""
    if model is None:
        raise ValueError(f"stream {stream.name} gives {media_field(stream)}: its requests' sizes depend on "
                         f"the model it asks for; pass models= to generate()")
    if stream.closed_loop:
        t = np.full(stream.requests, np.nan)
    else:
        t = arrival_times(stream, duration, rng_for(seed, "workload", stream.name, "arrivals"))
        t = t[: stream.requests] if stream.requests is not None else t
    m = stream_requests(stream, model, t, lambda part, name=stream.name: rng_for(seed, "workload", name, part))
    return (m.time, np.full(len(m.time), index, np.int32), m.prompt, m.output, np.full(len(m.time), -1, np.int64),
            np.full(len(m.time), m.modality, np.int8), m.offset, m.media_seconds, m.samples, m.pixels,
            np.full(len(m.time), -1, np.int64))


def _session_stream(stream: Stream, index: int, duration: float, seed: int) -> tuple[int, Graph, np.ndarray]:
    """A session stream's (index, call graph of its sessions, their start times)."""
    t = arrival_times(stream, duration, rng_for(seed, "workload", stream.name, "arrivals"))
    t = t[: stream.requests] if stream.requests is not None else t
    return (index, session_graph(stream.session, len(t),
                                 rng_for(seed, "workload", stream.name, "sessions")), t)


def _token_part(stream: Stream, index: int, model: ModelSpec | None, kind: int, duration: float, seed: int,
                system_of: dict) -> tuple:
    """The columns of a stream of token requests (synthetic or a trace's); a stream with
    `system_prompt:` records its (variants, tokens) in `system_of`."""
    if stream.trace is not None:
        t, prompt, output = trace_arrivals(stream, duration)
    else:
        if stream.closed_loop:
            t = np.full(stream.requests, np.nan)
        else:
            t = arrival_times(stream, duration, rng_for(seed, "workload", stream.name, "arrivals"))
        prompt = draw(stream.prompt_tokens, len(t), rng_for(seed, "workload", stream.name, "prompt"))
        output = draw(stream.output_tokens, len(t), rng_for(seed, "workload", stream.name, "output"))
    if stream.requests is not None and not stream.closed_loop:
        t, prompt, output = t[: stream.requests], prompt[: stream.requests], output[: stream.requests]
    variant = None
    if stream.system_prompt is not None:   # its first tokens: one of the stream's system prompts
        sp = stream.system_prompt
        variant = rng_for(seed, "workload", stream.name, "system").integers(sp.variants, size=len(t))
        system_of[index] = (sp.variants, sp.tokens)
        prompt = prompt + sp.tokens
    if model is not None and model.modality == "text_to_speech":   # given as tokens: seconds from the codec rate
        seconds = output / model.speech.audio_tokens_per_second
    else:
        seconds = None
    return (t, np.full(len(t), index, np.int32), prompt, output, np.full(len(t), -1, np.int64)) + \
        _plain(len(t), kind, seconds) + (variant,)


def _add_session_calls(session_parts: list[dict], open_parts: list, closed_parts: list) -> None:
    """The sessions' calls as parts: each session's first call with the open-loop arrivals,
    its later calls (time NaN until sent) with the closed-loop requests."""
    for sp in session_parts:
        first = ~np.isnan(sp["time"])
        for mask, parts in ((first, open_parts), (~first, closed_parts)):
            n = int(mask.sum())
            parts.append((sp["time"][mask], np.full(n, sp["stream"], np.int32), sp["prompt"][mask],
                          sp["output"][mask], sp["node"][mask]) + _plain(n, 0, None)
                         + (np.full(n, -1, np.int64),))


def _media_columns(cols: tuple) -> dict | None:
    """Arrivals' media fields from the joined columns; None when every request is text."""
    media = None
    if cols[5] is not None and np.any(cols[5]):
        # a window's clip is the row of its first window: the stable sort keeps a clip's
        # windows (same time, consecutive in their stream's part) together and in order
        offset = cols[6].astype(np.int64)
        clip = np.where(cols[5] == KIND_CODE["speech_to_text"], np.arange(len(offset)) - offset, -1)
        media = dict(modality=cols[5].astype(np.int8), clip=clip, media_seconds=cols[7].astype(float),
                     samples=cols[8].astype(np.int64), pixels=cols[9].astype(float))
    return media


def _system_keys(stream: np.ndarray, variant: np.ndarray, system_of: dict, plan) -> dict:
    """Each request's system-prompt key and length, for plain streams with `system_prompt:`;
    keys follow those of the sessions' system prompts, each stream's variants its own."""
    key = np.full(len(stream), -1, np.int64)
    tokens = np.zeros(len(stream), np.int64)
    base = int(plan.system.max()) + 1 if plan is not None and len(plan.system) else 0
    for index, (variants, n) in sorted(system_of.items()):
        mine = stream == index
        key[mine] = base + variant[mine]
        tokens[mine] = n
        base += variants
    return {"system": key, "system_len": tokens}


def _plain(n: int, kind: int, seconds: np.ndarray | None) -> tuple:
    """The media columns of token requests: modality, clip offset, seconds, samples, pixels;
    None where a column holds only its default (see `_concat`)."""
    return (np.full(n, kind, np.int8) if kind else None, None, seconds, None, None)


# columns past the first five, where a part may give None: (dtype, value) it stands for
_DEFAULTS = {5: (np.int8, 0), 6: (np.int64, 0), 7: (float, np.nan), 8: (np.int64, 0), 9: (float, 0.0),
             10: (np.int64, -1)}


def _in_time_order(cols: tuple) -> tuple:
    """The columns' rows sorted by time (the first column), ties kept in their order; as
    they are when they already are (one stream: no copies of a long run's columns)."""
    time = cols[0]
    if len(time) < 2 or (time[1:] >= time[:-1]).all():
        return cols
    order = np.argsort(time, kind="stable")
    return tuple(None if col is None else col[order] for col in cols)


def _concat(parts):
    """Join the parts' columns. A column every part leaves as None stays None (a run of text
    requests allocates no media columns); otherwise the None parts are filled with defaults.
    One part's columns are its own (not copied)."""
    if len(parts) == 1:
        return tuple(parts[0])
    out = []
    for k in range(11):
        cols = [p[k] for p in parts]
        if k in _DEFAULTS:
            if all(c is None for c in cols):
                out.append(None)
                continue
            dtype, value = _DEFAULTS[k]
            cols = [np.full(len(p[0]), value, dtype) if c is None else c for c, p in zip(cols, parts, strict=True)]
        out.append(np.concatenate(cols))
    return tuple(out)


def stream_models(scenario) -> list[ModelSpec | None]:
    """The model each stream asks for (None for a session stream: its calls name theirs)."""
    models = {p.model_key: p.deployment.model for p in scenario.pools}
    served = sorted(models)
    return [None if s.session is not None else models.get(s.model or served[0]) for s in scenario.spec.workload]


def media_columns(table, arrivals: Arrivals, scenario) -> None:
    """Fill the request table's media columns (sim.demand.media): each request's modality (a session
    call's from the model its step names), its clip, seconds, samples and pixels."""
    if arrivals.modality is not None:
        table.modality[:] = arrivals.modality
        table.clip[:] = arrivals.clip
        table.media_seconds[:] = arrivals.media_seconds
        table.samples[:] = arrivals.samples
        table.pixels[:] = arrivals.pixels
    plan = arrivals.sessions
    if plan is None:
        return
    kinds = {p.model_key: KIND_CODE[p.deployment.model.modality] for p in scenario.pools}
    served = sorted(kinds)
    streams = scenario.spec.workload
    for r in np.flatnonzero(plan.node_of >= 0).tolist():
        stream = streams[int(arrivals.stream[r])]
        name = plan.model[r] or stream.session.model or stream.model or served[0]
        table.modality[r] = kinds.get(name, 0)
