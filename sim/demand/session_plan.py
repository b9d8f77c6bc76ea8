"""Sessions as a run's requests: the call graphs of every session stream joined into one
plan with node ids global over the run, and tied to request ids once requests are ordered
(sim.demand.workload). The graphs themselves are drawn by sim.demand.sessions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sessions import CALL, Graph

# ---- sessions as a run's requests ----------------------------------------------------------


@dataclass
class SessionPlan:
    """Every session of a run, with node ids global over the run's graphs and call nodes
    tied to request ids (`link` fills those in once requests are ordered)."""

    kind: np.ndarray            # per node: CALL or TOOL
    session: np.ndarray         # per node: global session id
    deps: np.ndarray            # per node: how many nodes it waits for
    child_ptr: np.ndarray       # children of node i: child_idx[child_ptr[i]:child_ptr[i + 1]]
    child_idx: np.ndarray
    service: list               # per node: the service a tool queues for (None: a plain delay)
    duration: np.ndarray        # per node: a tool's own time (delay or service time)
    start: np.ndarray           # per session: when it starts
    stream: np.ndarray          # per session: its workload stream
    request: np.ndarray = None  # per node: request id of a call (-1 for tools)
    node_of: np.ndarray = None  # per request: its node (-1: not a session call)
    final: np.ndarray = None    # per request: the call that answers its session
    prefix_of: np.ndarray = None   # per request: the call whose context it extends (-1: none)
    prefix_len: np.ndarray = None  # per request: tokens of that context
    system: np.ndarray = None      # per request: shared system prompt key (-1: none)
    system_len: np.ndarray = None
    model: list = None             # per request: model named by its step (None: the stream's)
    step: np.ndarray = None        # per node: its pipeline step (-1: a loop's node)

    def roots(self) -> np.ndarray:
        return np.flatnonzero(self.deps == 0)


def plan_sessions(graphs: list[tuple[int, Graph, np.ndarray]]) -> tuple[SessionPlan, list[dict]]:
    """Join (stream, graph, session start times) into one plan; also returns, per graph,
    its call nodes' request fields (prompt, output, stream, time, global node id)."""
    kind, session, deps, service, duration, starts, streams, step = [], [], [], [], [], [], [], []
    children: list[list[int]] = []
    parts = []
    node0 = sid0 = 0
    for stream, g, times in graphs:
        n = len(g.kind)
        kind += g.kind
        session += [sid0 + s for s in g.session]
        deps += [len(d) for d in g.deps]
        service += [g.service.get(i) for i in range(n)]
        duration += [g.duration.get(i, 0.0) for i in range(n)]
        step += [g.step.get(i, -1) for i in range(n)]
        children += [[] for _ in range(n)]
        for i, ds in enumerate(g.deps):
            for d in ds:
                children[node0 + d].append(node0 + i)
        calls = [i for i in range(n) if g.kind[i] == CALL]
        parts.append({
            "node": np.array([node0 + i for i in calls], np.int64),
            "prompt": np.array([g.prompt[i] for i in calls], np.int64),
            "output": np.array([g.output[i] for i in calls], np.int64),
            "time": np.array([times[g.session[i]] if not g.deps[i] else np.nan for i in calls]),
            "stream": stream, "graph": g, "node0": node0, "sid0": sid0,
        })
        starts += list(times)
        streams += [stream] * len(times)
        node0 += n
        sid0 += len(times)
    ptr = np.zeros(len(children) + 1, np.int64)
    ptr[1:] = np.cumsum([len(c) for c in children])
    plan = SessionPlan(np.array(kind, np.int8), np.array(session, np.int64), np.array(deps, np.int64), ptr,
                       np.array([c for cs in children for c in cs], np.int64), service, np.array(duration),
                       np.array(starts, float), np.array(streams, np.int64))
    plan.step = np.array(step, np.int64)
    return plan, parts


def link(plan: SessionPlan, parts: list[dict], node_of: np.ndarray) -> None:
    """Tie call nodes to request ids, given each request's node (-1 for other requests)."""
    n = len(node_of)
    plan.node_of = node_of
    plan.request = np.full(len(plan.kind), -1, np.int64)
    calls = np.flatnonzero(node_of >= 0)
    plan.request[node_of[calls]] = calls
    plan.final = np.zeros(n, bool)
    plan.prefix_of = np.full(n, -1, np.int64)
    plan.prefix_len = np.zeros(n, np.int64)
    plan.system = np.full(n, -1, np.int64)
    plan.system_len = np.zeros(n, np.int64)
    plan.model = [None] * n
    keys = 0
    for part in parts:
        g, node0 = part["graph"], part["node0"]
        for local, node in zip((part["node"] - node0).tolist(), part["node"].tolist(), strict=True):
            r = int(plan.request[node])
            plan.final[r] = local in g.final
            plan.model[r] = g.model[local]
            if local in g.prefix:
                of, tokens = g.prefix[local]
                plan.prefix_of[r] = plan.request[node0 + of]
                plan.prefix_len[r] = tokens
            if local in g.system:
                variant, tokens = g.system[local]
                plan.system[r] = keys + variant
                plan.system_len[r] = tokens
        keys += 1 + max((v for v, _ in g.system.values()), default=0)
