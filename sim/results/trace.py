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
the budget. The trace's `metadata` says what was kept (Perfetto shows it as json_metadata.*).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

from ..core.metrics import COMPLETED, FAILED, IN_FLIGHT, REASONS, REJECTED, SHED, STATE_NAMES
from ..spec.errors import Loc, ScenarioError
from ..spec.units import UnitError, parse_duration

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


def _stride(n: int, budget: int, cost=None) -> int:
    """Smallest k such that every k-th of n items (each costing `cost[i]` events, 1 when None)
    fits in `budget` events."""
    if n == 0:
        return 1
    total = n if cost is None else int(cost.sum())
    if total <= budget:
        return 1
    if budget <= 0:
        return n + 1                      # keeps nothing
    k = max(1, math.ceil(total / budget))
    while k <= n:
        kept = (n + k - 1) // k if cost is None else int(cost[::k].sum())
        if kept <= budget:
            return k
        k += 1
    return n + 1


def _fair_shares(budget: int, demands: dict[str, int]) -> dict[str, int]:
    """Split `budget` max-min fairly: a category needing less than an equal share keeps all
    it needs and leaves the rest to the others."""
    out, left = {}, dict(demands)
    while left:
        share = budget // len(left)
        small = {k: d for k, d in left.items() if d <= share}
        if not small:
            out.update({k: share for k in left})
            break
        for k, d in small.items():
            out[k] = d
            budget -= d
            del left[k]
    return out


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
    req_k = 1
    if max_requests is not None and len(req_rows) > max_requests:
        req_k = math.ceil(len(req_rows) / max_requests) if max_requests else 0
        req_rows = req_rows[::req_k][:max_requests] if req_k else req_rows[:0]
        notes.append(f"--trace-requests {max_requests}: kept {len(req_rows):,} of {in_window:,} requests"
                     + (f", every {_nth(req_k)}" if req_k else ""))
    req_cost = _request_events(t, req_rows, r0, r1)

    fixed = len(tb.events)
    shares = _fair_shares(max(max_events - fixed, 0), {"batches": len(batch_rows), "flows": 2 * len(flow_rows),
                                                       "requests": int(req_cost.sum())})
    strides = {"batches": _stride(len(batch_rows), shares["batches"]),
               "flows": _stride(len(flow_rows), shares["flows"] // 2),
               "requests": _stride(len(req_rows), shares["requests"], req_cost)}
    capped = []
    for what, rows in (("batch stretches", batch_rows), ("flows", flow_rows), ("requests", req_rows)):
        k = strides["batches" if what == "batch stretches" else what]
        if k > 1:
            capped.append(f"every {_nth(k)} of {len(rows):,} {what}")
    batch_rows = batch_rows[::strides["batches"]]
    flow_rows = flow_rows[::strides["flows"]]
    before_cap = len(req_rows)
    req_rows = req_rows[::strides["requests"]]
    if capped:
        notes.append(f"over {max_events:,} events: kept " + ", ".join(capped)
                     + "; narrow it with --trace-window or --trace-requests")

    _batches(tb, result, log, b0, b1, batch_rows, engine_tid)
    _flows(tb, flows, f0, f1, flow_rows)
    _requests(tb, result, r0, r1, req_rows, stream_pid, unserved_tid)

    if result.fabric is not None and result.fabric.flow_log is None:
        notes.append("no network flows: the run was simulated without trace=True")
    if w0 >= end_ns > 0:
        notes.append(f"the window starts after the run ended ({result.end_time:g} s)")
    note = "; ".join(notes)
    meta = {
        "generator": "dcsim run --trace",
        "scenario": result.scenario.name, "seed": result.seed, "run_end_s": float(result.end_time),
        "window_s": [w0 / 1e9, None if w1 is None else w1 / 1e9],
        "window": "whole run" if window is None else f"{w0 / 1e9:g}s to " + ("the end" if w1 is None else f"{w1 / 1e9:g}s"),
        "time_unit": "us",
        "max_events": max_events,
        "events": len(tb.events),
        "batch_stretches": {"in_window": batches_in_window, "kept": len(batch_rows), "every": strides["batches"]},
        "flows": {"in_window": flows_in_window, "kept": len(flow_rows),
                  "every": strides["flows"], "recorded": result.fabric is not None and result.fabric.flow_log is not None},
        "requests": {"in_window": in_window, "max_requests": max_requests, "every": req_k * strides["requests"],
                     "after_max_requests": before_cap, "kept": len(req_rows),
                     "sampling": "every k-th request id among those overlapping the window"},
        "note": note,
    }
    return {"traceEvents": tb.events, "displayTimeUnit": "ms", "metadata": meta}


def _nth(k: int) -> str:
    """2nd, 3rd, 11th, 21st: the ordinal of k."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _overlaps(a: np.ndarray, b: np.ndarray, w0: int, w1: int | None) -> np.ndarray:
    """Items [a, b] that reach inside the window; a zero-length one may sit on its edge."""
    point = a == b
    keep = (b > w0) | (point & (b >= w0))
    if w1 is not None:
        keep &= (a < w1) | (point & (a <= w1))
    return keep


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
        spans = [(a, b, state) for (a, state), (b, _) in zip(points, points[1:]) if b > a]
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
    rep, its, tok, kv, clock = (log[k][rows].tolist() for k in ("replica", "iterations", "tokens", "kv_blocks", "clock"))
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


# ---- requests --------------------------------------------------------------------------
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
