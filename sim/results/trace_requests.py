"""Requests in a trace (`trace.py`): a process per workload stream, each request's life as
nested async slices (request > waiting, prefill, decode), and an instant for each request
turned away or failed.
"""
from __future__ import annotations

import numpy as np

from ..core.metrics import COMPLETED, FAILED, IN_FLIGHT, REASONS, REJECTED, SHED, STATE_NAMES
from .trace_events import _Builder, _ns, _us


def _stream_tracks(tb: _Builder, result):
    spec = result.scenario.spec
    stream_pid, unserved_tid = [], []
    for k, name in enumerate(result.stream_names):
        tenant = spec.workload[k].tenant if k < len(spec.workload) else None
        pid = tb.process(f"requests: {name}" + (f" (tenant {tenant})" if tenant and tenant != name else ""))
        stream_pid.append(pid)
        unserved_tid.append(tb.thread(pid, "turned away or failed", 0))
    return stream_pid, unserved_tid


def _phases(t, rows: np.ndarray, r0: np.ndarray, r1: np.ndarray):
    """Per request: arrival a, admitted b1, first token b2, end z (ns), each clamped to the
    ones before so the slices nest (a retried request's admitted and first token may be its
    earlier tries'); and whether it was admitted and got a first token."""
    a, z = r0[rows], r1[rows]
    admitted, first = ~np.isnan(t.admitted[rows]), ~np.isnan(t.first_token[rows])
    b1 = np.where(admitted, np.minimum(np.maximum(_ns(np.nan_to_num(t.admitted[rows])), a), z), z)
    b2 = np.where(first, np.minimum(np.maximum(_ns(np.nan_to_num(t.first_token[rows])), b1), z), z)
    return a, b1, b2, z, admitted, first


def _request_events(t, rows: np.ndarray, r0, r1) -> np.ndarray:
    """Events each request will take: 2 for its life and 2 per phase of non-zero length when
    it was served (or was being served, or failed), 1 instant when turned away or failed."""
    a, b1, b2, z, admitted, first = _phases(t, rows, r0, r1)
    state = t.state[rows]
    lived = (state == COMPLETED) | (state == IN_FLIGHT) | (state == FAILED)
    phases = (b1 > a).astype(np.int64) + (admitted & (b2 > b1)) + (first & (z > b2))
    unserved = (state == REJECTED) | (state == SHED) | (state == FAILED)
    return np.where(lived, 2 + 2 * phases, 0) + unserved.astype(np.int64)


def _requests(tb: _Builder, result, r0, r1, rows, stream_pid, unserved_tid) -> None:
    """A request's life as nested async slices (ids local to its stream's process): request >
    waiting (arrival to admitted), prefill (to its first token), decode (to its end). Requests
    turned away (rejected, shed) and failed ones get an instant with the reason."""
    t = result.table
    pools = [info.pool for info in result.replicas]
    cols = {k: getattr(t, k)[rows].tolist() for k in ("stream", "prompt", "output", "replica", "state", "reason",
                                                       "retries", "preemptions", "start_wait", "cached")}
    a_, b1_, b2_, z_, admitted, first = (x.tolist() for x in _phases(t, rows, r0, r1))
    for i, r in enumerate(rows.tolist()):
        s, state = cols["stream"][i], cols["state"][i]
        pid = stream_pid[s]
        rep = cols["replica"][i]
        args = {"id": r, "prompt_tokens": cols["prompt"][i], "output_tokens": cols["output"][i],
                "replica": rep if rep >= 0 else None, "pool": pools[rep] if rep >= 0 else None,
                "state": STATE_NAMES[state]}
        if cols["reason"][i]:
            args["reason"] = REASONS[cols["reason"][i]]
        for key, label in (("retries", "retries"), ("preemptions", "preemptions"), ("cached", "cached_tokens")):
            if cols[key][i]:
                args[label] = cols[key][i]
        if cols["start_wait"][i] > 0:
            args["start_wait_s"] = cols["start_wait"][i]
        a, b1, b2, z = a_[i], b1_[i], b2_[i], z_[i]
        if state in (REJECTED, SHED, FAILED):
            tb.instant(pid, unserved_tid[s], f"{STATE_NAMES[state]}: {REASONS[cols['reason'][i]]}", z, args,
                       cat="request")
            if state != FAILED:
                continue
        outer = tb.clip(a, z)
        if outer is None:
            continue
        ident = {"local": str(r)}
        if outer != (a, z):
            args["clipped_to_window"] = True
        tb.events.append({"ph": "b", "cat": "request", "name": "request", "id2": ident, "pid": pid, "tid": pid,
                          "ts": _us(outer[0]), "args": args})
        for name, p0, p1, real in (("waiting", a, b1, True), ("prefill", b1, b2, admitted[i]),
                                   ("decode", b2, z, first[i])):
            span = tb.clip(p0, p1) if real and p1 > p0 else None
            if span is None:
                continue
            tb.events.append({"ph": "b", "cat": "request", "name": name, "id2": ident, "pid": pid, "tid": pid,
                              "ts": _us(span[0])})
            tb.events.append({"ph": "e", "cat": "request", "name": name, "id2": ident, "pid": pid, "tid": pid,
                              "ts": _us(span[1])})
        tb.events.append({"ph": "e", "cat": "request", "name": "request", "id2": ident, "pid": pid, "tid": pid,
                          "ts": _us(outer[1])})
