"""A run as a timeline: Chrome Trace Event Format JSON for ui.perfetto.dev and chrome://tracing.

`dcsim run SCENARIO --trace` writes `trace.json` beside `summary.json`. What it shows:

- a process per pool, with a thread per engine (replica) holding its stretches of batch
  iterations, and a thread per replica holding its states (live, starting, draining, off,
  failed) with a cold start's provisioning and weight loading nested inside;
- a process per workload stream, with each request's life as nested async slices (request >
  waiting, prefill, decode) and a thread of instants for the requests turned away;
- a process per network node that sent flows, with a track per tag (weights, kv, request,
  reply, collectives) of async slices;
- failures, repairs and model swaps as global instants; autoscaled pools' replica counts as
  counters.

Times are microseconds. Every time is rounded once to whole nanoseconds and written as
ns / 1000, so a slice's end (ts + dur) is exactly the next one's start after the viewers'
conversion back to nanoseconds, and slices stay properly nested.

Size is bounded: a window clips everything to [start, end]; `max_requests` keeps every k-th
request of those overlapping the window; and above `max_events` the big categories (batch
stretches, flows, requests) are thinned by the same every-k-th rule, each to a fair share of
the budget. The trace's `metadata` says what was kept, and which dcsim, catalog and timing
sources made it (`provenance`, as in summary.json); Perfetto shows it as json_metadata.*.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

from ..spec.errors import Loc, ScenarioError
from ..spec.units import UnitError, parse_duration
from . import provenance
from .trace_events import _Builder, _clean, _ns, _us
from .trace_requests import _request_events, _requests, _stream_tracks
from .trace_sampling import _budget_strides, _every_kth_request, _overlaps

# about 140 bytes an event (long runs have longer times): 350k events keep trace.json under 50 MB
DEFAULT_MAX_EVENTS = 350_000


def parse_window(text: str) -> tuple[float, float | None]:
    """'10s:40s', '1min:2min', ':30s' (from the start) or '10s:' (to the end) -> seconds.
    A bad value raises ScenarioError naming the option, so the CLI prints it and exits 2."""
    def bad(message):
        return ScenarioError.one(Loc("--trace-window"), "", message)
    if text.count(":") != 1:
        raise bad(f"expected START:END, e.g. 10s:40s or 1min:2min; got '{text}'")
    a, b = (part.strip() for part in text.split(":"))
    try:
        start = parse_duration(a) if a else 0.0
        end = parse_duration(b) if b else None
    except UnitError as exc:
        raise bad(str(exc)) from None
    if start < 0:
        raise bad(f"the start must not be negative; got '{a}'")
    if end is not None and end <= start:
        raise bad(f"the end ({b}) must come after the start ({a or '0s'})")
    return start, end


def check_max_requests(n: int | None) -> int | None:
    if n is not None and n < 0:
        raise ScenarioError.one(Loc("--trace-requests"), "", f"expected a count of requests (0 or more); got {n}")
    return n


@dataclass
class Written:
    path: str
    events: int
    bytes: int
    note: str          # what sampling dropped, or ''


def write_trace(result, path: str, window: tuple[float, float | None] | None = None,
                max_requests: int | None = None, max_events: int = DEFAULT_MAX_EVENTS) -> Written:
    doc = build_trace(result, window, max_requests, max_events)
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    meta = doc["metadata"]
    return Written(path, meta["events"], len(text), meta["note"])


def build_trace(result, window=None, max_requests=None, max_events: int = DEFAULT_MAX_EVENTS) -> dict:
    """The trace of a finished run as a dict ({"traceEvents", "displayTimeUnit", "metadata"})."""
    end_ns = int(_ns(result.end_time))
    w0 = int(_ns(window[0])) if window else 0
    w1 = int(_ns(window[1])) if window and window[1] is not None else None
    tb = _Builder(w0, w1)
    notes = []

    # ---- the tracks and the small categories, kept whole -----------------------------
    engine_tid, life_tid, pool_pid = _pool_tracks(tb, result)
    _lifecycle(tb, result, life_tid, end_ns)
    _operations(tb, result)
    _autoscaling(tb, result, pool_pid)
    stream_pid, unserved_tid = _stream_tracks(tb, result)

    # ---- the big ones: what lies in the window, then every k-th to fit the budget ------
    log = result.log.columns()
    b0, b1 = _ns(log["start"]), _ns(log["end"])
    batch_rows = np.flatnonzero(_overlaps(b0, b1, w0, w1))
    batches_in_window = len(batch_rows)

    flows = _flow_records(result)
    f0 = _ns([f[0] for f in flows]) if flows else np.zeros(0, np.int64)
    f1 = _ns([f[1] for f in flows]) if flows else np.zeros(0, np.int64)
    flow_rows = np.flatnonzero(_overlaps(f0, f1, w0, w1))
    flows_in_window = len(flow_rows)

    t = result.table
    life_end = np.where(np.isnan(t.finished), result.end_time, t.finished)
    r0, r1 = _ns(t.arrival), _ns(life_end)
    req_rows = np.flatnonzero(_overlaps(r0, r1, w0, w1))
    in_window = len(req_rows)
    req_rows, req_k = _every_kth_request(req_rows, max_requests, notes)
    req_cost = _request_events(t, req_rows, r0, r1)

    fixed = len(tb.events)
    strides = _budget_strides(max(max_events - fixed, 0), max_events, batch_rows, flow_rows, req_rows, req_cost,
                              notes)
    batch_rows = batch_rows[::strides["batches"]]
    flow_rows = flow_rows[::strides["flows"]]
    before_cap = len(req_rows)
    req_rows = req_rows[::strides["requests"]]

    _batches(tb, result, log, b0, b1, batch_rows, engine_tid)
    _flows(tb, flows, f0, f1, flow_rows)
    _requests(tb, result, r0, r1, req_rows, stream_pid, unserved_tid)

    sampled = {
        "batch_stretches": {"in_window": batches_in_window, "kept": len(batch_rows), "every": strides["batches"]},
        "flows": {"in_window": flows_in_window, "kept": len(flow_rows),
                  "every": strides["flows"],
                  "recorded": result.fabric is not None and result.fabric.flow_log is not None},
        "requests": {"in_window": in_window, "max_requests": max_requests, "every": req_k * strides["requests"],
                     "after_max_requests": before_cap, "kept": len(req_rows),
                     "sampling": "every k-th request id among those overlapping the window"},
    }
    meta = _metadata(result, window, w0, w1, end_ns, max_events, len(tb.events), sampled, notes)
    return {"traceEvents": tb.events, "displayTimeUnit": "ms", "metadata": meta}


def _metadata(result, window, w0: int, w1: int | None, end_ns: int, max_events: int, events: int,
              sampled: dict, notes: list[str]) -> dict:
    """The trace's `metadata`: the run, the window, what `sampled` says was kept of the
    batch stretches, flows and requests, and the run's provenance; `notes` gain what the
    whole run explains."""
    if result.fabric is not None and result.fabric.flow_log is None:
        notes.append("no network flows: the run was simulated without trace=True")
    if w0 >= end_ns > 0:
        notes.append(f"the window starts after the run ended ({result.end_time:g} s)")
    note = "; ".join(notes)
    meta = {
        "generator": "dcsim run --trace",
        "scenario": result.scenario.name, "seed": result.seed, "run_end_s": float(result.end_time),
        "window_s": [w0 / 1e9, None if w1 is None else w1 / 1e9],
        "window": ("whole run" if window is None
                   else f"{w0 / 1e9:g}s to " + ("the end" if w1 is None else f"{w1 / 1e9:g}s")),
        "time_unit": "us",
        "max_events": max_events,
        "events": events,
        **sampled,
        "note": note,
        "provenance": provenance.record(result.scenario),
    }
    return meta


# ---- pools, replicas and their states -----------------------------------------------------
def _pool_tracks(tb: _Builder, result):
    """A process per pool; in it, per replica, a thread per engine then one of its states."""
    life = result.lifecycle
    engine_tid, life_tid, pool_pid = {}, {}, {}
    by_pool: dict[str, list] = {}
    for info in result.replicas:
        by_pool.setdefault(info.pool, []).append(info)
    for pool in result.scenario.pools:
        infos = by_pool.get(pool.name, [])
        d = pool.deployment
        pid = tb.process(f"pool {pool.name}: {pool.model_key} {d.precision} on {pool.spec.count} x {pool.device_key}")
        pool_pid[pool.name] = pid
        order = 0
        groups: dict[int, list] = {}
        for info in infos:
            g = life.group_of[info.index] if life is not None else info.index
            groups.setdefault(g, []).append(info)
        for g, members in groups.items():
            for k, info in enumerate(members):
                where = info.accelerators[0] if info.accelerators else ""
                more = f" +{len(info.accelerators) - 1}" if len(info.accelerators) > 1 else ""
                stage = f" engine {k}" if len(members) > 1 else ""
                engine_tid[info.index] = tb.thread(pid, f"replica {g}{stage}" + (f" on {where}{more}" if where else ""),
                                                   order)
                order += 1
            if life is not None:
                life_tid[g] = tb.thread(pid, f"replica {g} state", order)
                order += 1
    return engine_tid, life_tid, pool_pid


def _lifecycle(tb: _Builder, result, life_tid: dict, end_ns: int) -> None:
    """Each replica's states as slices; a cold start's provisioning and weight loading nested
    in its `starting` slice, and the first weights' loading in the first `live` one."""
    life = result.lifecycle
    if life is None:
        return
    starts_of: dict[int, list] = {}
    for s in life.starts:
        starts_of.setdefault(s.group, []).append(s)
    for g, history in enumerate(life.history):
        pid_tid = tb.pid_of[life_tid[g]]
        points = [(int(_ns(t)), state) for t, state in history] + [(end_ns, None)]
        spans = [(a, b, state) for (a, state), (b, _) in zip(points, points[1:], strict=False) if b > a]
        pending = list(starts_of.get(g, []))
        for i, (a, b, state) in enumerate(spans):
            args = None
            children = []
            if state == "starting":
                rec = next((s for s in pending if int(_ns(s.requested)) == a), None)
                if rec is not None:
                    pending.remove(rec)
                    args = {"reason": rec.reason, "requested_s": _clean(rec.requested),
                            "provisioned_s": _clean(rec.provisioned), "live_s": _clean(rec.live)}
                    p = int(_ns(rec.provisioned)) if not math.isnan(rec.provisioned) else b
                    children.append(("provisioning", a, min(p, b)))
                    if not math.isnan(rec.provisioned):
                        done = int(_ns(rec.live)) if not math.isnan(rec.live) else b
                        children.append(("loading weights", min(p, b), min(done, b)))
            elif i == 0 and a == 0 and state == "live":
                first = life.groups[g][0].index
                loaded = life.load_time.get(first)
                if loaded is not None:
                    children.append(("loading weights", 0, min(int(_ns(loaded)), b)))
            tb.slice(pid_tid, life_tid[g], state, a, b, args, cat="state")
            for name, c0, c1 in children:
                if c1 > c0:
                    tb.slice(pid_tid, life_tid[g], name, c0, c1, cat="cold start")


def _operations(tb: _Builder, result) -> None:
    """Failures, repairs and model swaps: global instants (a line across every track)."""
    pid = tb.process("fleet operations")
    tid = tb.thread(pid, "failures and swaps", 0)
    if result.failures is not None:
        for entry in result.failures.log:
            what = f"{entry['component']} {entry['target']}"
            lost = entry["lost"]
            args = {"component": entry["component"], "target": entry["target"], "devices": entry["devices"],
                    "replicas_down": entry["replicas_down"], "requests_lost": len(lost),
                    "lost_ids": list(lost[:20]) + (["..."] if len(lost) > 20 else []),
                    "repaired_s": _clean(entry["repaired"])}
            tb.instant(pid, tid, f"{what} fails", int(_ns(entry["time"])), args, scope="g", cat="failure")
            if entry["repaired"] is not None:
                tb.instant(pid, tid, f"{what} repaired", int(_ns(entry["repaired"])),
                           {"component": entry["component"], "target": entry["target"],
                            "failed_s": _clean(entry["time"])}, scope="g", cat="failure")
    seen = set()
    for a in result.autoscalers:
        swap = getattr(a, "swap", None)
        if swap is None or id(swap) in seen:
            continue
        seen.add(id(swap))
        for s in swap.swaps:
            live = s.start.live if s.start is not None else math.nan
            tb.instant(pid, tid, f"swap {s.out_pool} -> {s.in_pool}", int(_ns(s.claimed)),
                       {"slot": s.slot, "from": s.out_pool, "to": s.in_pool, "direct": s.direct,
                        "drained_s": _clean(s.drained), "live_s": _clean(live)}, scope="g", cat="swap")


def _autoscaling(tb: _Builder, result, pool_pid: dict) -> None:
    for a in result.autoscalers:
        series = [(int(_ns(t)), n) for t, n in a.history]
        tb.counter(pool_pid[a.pool.name], "replicas", series, "running or starting")


# ---- batch iterations ------------------------------------------------------------------
def _batches(tb: _Builder, result, log: dict, b0, b1, rows, engine_tid: dict) -> None:
    """One slice per stretch of a replica's work. The compiled scheduler plans many
    iterations at once, so a stretch may hold several: its name says how many."""
    rep, its, tok, kv, clock = (log[k][rows].tolist()
                                for k in ("replica", "iterations", "tokens", "kv_blocks", "clock"))
    for i, row in enumerate(rows.tolist()):
        tid = engine_tid[rep[i]]
        args = {"iterations": its[i], "tokens": tok[i], "kv_blocks": kv[i], "clock": clock[i]}
        tb.slice(tb.pid_of[tid], tid, "iteration" if its[i] == 1 else "iterations", int(b0[row]), int(b1[row]),
                 args, cat="batch")


# ---- network flows ---------------------------------------------------------------------
def _flow_records(result) -> list[tuple]:
    """(start, end, src, dst, bytes, tag, delivered) per flow: the delivered ones the fabric
    logged, then those still moving or stranded when the run ended (to the run's end)."""
    fabric = result.fabric
    if fabric is None or fabric.flow_log is None:
        return []
    out = [rec + (True,) for rec in fabric.flow_log]
    for f in list(fabric.active.values()) + list(fabric.stranded):
        out.append((f.started, max(result.end_time, f.started), f.a, f.b, f.size, f.tag, False))
    return out


def _flows(tb: _Builder, flows: list, f0, f1, rows) -> None:
    """A process per sending node; each flow an async slice named by its tag, so a node's
    flows of one kind stack on one track however many overlap."""
    pid_of: dict = {}
    for src in sorted({str(flows[i][2]) for i in rows.tolist()}):
        pid_of[src] = tb.process(f"network: from {src}")
    for i in rows.tolist():
        start, end, a, b, nbytes, tag, delivered = flows[i]
        span = tb.clip(int(f0[i]), int(f1[i]))
        if span is None:
            continue
        pid = pid_of[str(a)]
        name = tag or "flow"
        ident = {"local": str(i)}
        args = {"src": str(a), "dst": str(b), "bytes": nbytes, "tag": tag}
        if not delivered:
            args["state"] = "in flight at the end of the run"
        elif end > start:
            args["gbit_per_s"] = round(nbytes * 8 / (end - start) / 1e9, 3)
        tb.events.append({"ph": "b", "cat": "flow", "name": name, "id2": ident, "pid": pid, "tid": pid,
                          "ts": _us(span[0]), "args": args})
        tb.events.append({"ph": "e", "cat": "flow", "name": name, "id2": ident, "pid": pid, "tid": pid,
                          "ts": _us(span[1])})


