"""An iteration's operators, timed once at build time, as the tables the hot path reads.

`compose` evaluates every operator of `sim.timing.operators` with a source of operator times
(`Measured`, or `Analytical`) on grids of the quantities an iteration's time depends on, and
sums them into four tables (layout in `sim.timing.kernels`): per-token kernels by tokens in the
iteration, per-sequence kernels by sequences producing a token, generation attention by
(decoding sequences, mean KV length) and context attention by (prefill chunks, prompt
length). Each table keeps the compute-, memory- and link-bound seconds apart, so a power
cap or time slicing can slow only what it slows. Grids include every measured point below
the engine's limits, so a table equals the sum of its measured operators there exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels as K
from .analytical import COMPUTE, LINK, MEMORY, Analytical
from .operators import AllGather, AllReduce, Elementwise, Experts, Gemm, Operators


@dataclass
class Tables:
    rows_x: np.ndarray
    rows: np.ndarray          # (4, n): compute, memory, link in a graph, link eager, seconds
    logits_x: np.ndarray
    logits: np.ndarray
    decode_b: np.ndarray
    decode_kv: np.ndarray
    decode: np.ndarray        # (4, nb, nkv)
    prefill_b: np.ndarray
    prefill_s: np.ndarray
    prefill: np.ndarray       # (4, nb, ns)


def axis(limit: float, measured=()) -> np.ndarray:
    """Points from 1 to `limit`: the measured points below the limit, eight points per
    doubling past the last of them, and the limit itself (between measured points the sources
    are linear, so a table on them is exact); without measurements, every integer to 32, then
    eight points per doubling."""
    limit = max(float(limit), 1.0)
    measured = [np.asarray(m, float) for m in measured]
    pts = [np.array([1.0, limit])] + [m[(m >= 1.0) & (m <= limit)] for m in measured]
    if not measured:
        pts += [np.arange(1.0, min(limit, 32.0) + 1.0), _doublings(32.0, limit)]
    else:   # past the measurements a source need not be linear: attention grows with the square of the length
        pts.append(_doublings(max((m.max() for m in measured if m.size), default=1.0), limit))
    x = np.unique(np.concatenate(pts))
    return x[x <= limit]


def _doublings(start: float, limit: float) -> np.ndarray:
    """Eight points per doubling from `start` (excluded) to `limit`."""
    if limit <= start:
        return np.zeros(0)
    return np.round(start * 2.0 ** (np.arange(1, 8 * np.ceil(np.log2(limit / start)) + 1) / 8.0))


EAGER_LINK = 3   # the fourth component: collectives as they run outside captured graphs


def _op_time(times, op, rows, eager=False) -> np.ndarray:
    if isinstance(op, Gemm):
        return times.gemm(rows, op)
    if isinstance(op, Elementwise):
        return times.elementwise(rows, op)
    if isinstance(op, AllReduce):
        return times.allreduce(rows, op, eager)
    if isinstance(op, AllGather):
        return times.allgather(rows, op)
    if isinstance(op, Experts):
        return times.experts(rows, op)
    raise TypeError(f"unknown operator {op!r}")


def row_table(ops: list, times, analytical: Analytical, x: np.ndarray) -> np.ndarray:
    """(4, len(x)) seconds of per-row operators at each row count, by what bounds them (the
    link's twice: in a captured graph and eager)."""
    out = np.zeros((4, len(x)))
    for op in ops:
        t = _op_time(times, op, x) * op.count
        kind = analytical.bound(op, x)
        for c in (COMPUTE, MEMORY, LINK):
            out[c] += np.where(kind == c, t, 0.0)
        if isinstance(op, (AllReduce, AllGather)):
            out[EAGER_LINK] += _op_time(times, op, x, eager=True) * op.count
    return out


def attention_table(kind: str, times, analytical: Analytical, att, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(4, len(b), len(s)) seconds of attention over all layers (no link components)."""
    B, S = np.meshgrid(b, s, indexing="ij")
    fn = times.context_attention if kind == "context" else times.generation_attention
    t = fn(B, S, att) * att.layers
    bound = analytical.attention_bound(kind, B, S, att)
    out = np.zeros((4,) + B.shape)
    out[COMPUTE] = np.where(bound == COMPUTE, t, 0.0)
    out[MEMORY] = np.where(bound == MEMORY, t, 0.0)
    return out


def compose(ops: Operators, times, analytical: Analytical, max_tokens: int, max_seqs: int,
            max_context: int) -> Tables:
    """The four tables for an engine that runs at most `max_tokens` tokens and `max_seqs`
    sequences an iteration, each of at most `max_context` tokens."""
    points = getattr(times, "row_points", lambda o: ())(ops)
    rows_x = axis(max(max_tokens, max_seqs), points)
    logits_x = axis(max_seqs, points)
    att = ops.attention
    dec_axes = getattr(times, "attention_axes", lambda k, a: None)("generation", att)
    pf_axes = getattr(times, "attention_axes", lambda k, a: None)("context", att)
    decode_b = axis(max_seqs, [dec_axes[0]] if dec_axes else ())
    decode_kv = axis(max_context, [dec_axes[1]] if dec_axes else ())
    prefill_b = axis(max_seqs, [pf_axes[0]] if pf_axes else ())
    prefill_s = axis(max_context, [pf_axes[1]] if pf_axes else ())
    return Tables(rows_x, row_table(ops.tokens, times, analytical, rows_x),
                  logits_x, row_table(ops.logits, times, analytical, logits_x),
                  decode_b, decode_kv, attention_table("generation", times, analytical, att, decode_b, decode_kv),
                  prefill_b, prefill_s, attention_table("context", times, analytical, att, prefill_b, prefill_s))


def pack(tables: Tables, p: np.ndarray) -> np.ndarray:
    """The cost vector `p` with the tables appended and K_TABLES pointing at them."""
    blocks = [_flat1(tables.rows_x, tables.rows), _flat1(tables.logits_x, tables.logits),
              _flat2(tables.decode_b, tables.decode_kv, tables.decode),
              _flat2(tables.prefill_b, tables.prefill_s, tables.prefill)]
    head = len(p)
    offsets, at = [], head + len(blocks)
    for b in blocks:
        offsets.append(at)
        at += len(b)
    out = np.concatenate([p, np.array(offsets, float)] + blocks)
    out[K.K_TABLES] = head
    return out


def _flat1(x, values) -> np.ndarray:
    return np.concatenate([[len(x)], x, values.ravel()])


def _flat2(x, y, values) -> np.ndarray:
    return np.concatenate([[len(x), len(y)], x, y, values.ravel()])
