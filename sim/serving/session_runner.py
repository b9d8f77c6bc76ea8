"""Sessions at run time: each call goes to the router when everything it depends on has
finished; tools run in between, as delays or as calls queued at a service.

The graphs are drawn before the run (`sim.demand.sessions`); here only their timing unfolds. A
call that is rejected or fails ends its session: the calls that depended on it are never
sent, and the session counts as failed.
"""
from __future__ import annotations

import numpy as np
import simpy

from ..core.clock import at
from ..core.metrics import COMPLETED
from ..demand.distributions import draw
from ..demand.session_plan import SessionPlan
from ..demand.sessions import CALL


class ServiceStation:
    """A service with `servers` parallel servers and one FIFO queue (M/G/c)."""

    def __init__(self, env: simpy.Environment, name: str, servers: int, service_time, rng: np.random.Generator):
        self.name = name
        self.service_time, self.rng = service_time, rng
        self.resource = simpy.Resource(env, capacity=servers)
        self.servers = servers
        self.waits: list[float] = []
        self.busy = 0.0            # server-seconds of service

    def serve(self, env, done):
        arrived = env.now
        with self.resource.request() as slot:
            yield slot
            self.waits.append(env.now - arrived)
            duration = float(draw(self.service_time, 1, self.rng)[0])
            yield env.timeout(duration)
            self.busy += duration
        done()


class SessionRunner:
    def __init__(self, env, plan: SessionPlan, table, router, model_of_request, services: dict[str, ServiceStation]):
        self.env, self.plan, self.table, self.router = env, plan, table, router
        self.model_of_request = model_of_request
        self.services = services
        self.waiting = plan.deps.copy()          # per node: dependencies not yet finished
        self.failed = np.zeros(len(plan.start), bool)
        self.tool_start = np.full(len(plan.kind), np.nan)
        self.tool_done = np.full(len(plan.kind), np.nan)
        table.ended.subscribe(self._done)
        # sessions that start with a tool: their first nodes run at the session's start
        for node in plan.roots():
            if plan.kind[node] != CALL:
                at(env, plan.start[plan.session[node]]).callbacks.append(lambda _, n=int(node): self._start(n))

    def _done(self, r: int, when: float) -> None:
        node = int(self.plan.node_of[r])
        if node < 0:
            return
        if self.table.state[r] != COMPLETED:
            self.failed[self.plan.session[node]] = True
            return
        # a separate event, so a completion never re-enters the replica that reported it
        at(self.env, max(when, self.env.now)).callbacks.append(lambda _: self._finished(node))

    def _finished(self, node: int) -> None:
        p = self.plan
        for child in p.child_idx[p.child_ptr[node]:p.child_ptr[node + 1]].tolist():
            self.waiting[child] -= 1
            if self.waiting[child] == 0:
                self._start(child)

    def _start(self, node: int) -> None:
        p, env = self.plan, self.env
        if p.kind[node] == CALL:
            r = int(p.request[node])
            self.table.arrival[r] = env.now
            self.router.arrive(r, self.model_of_request(r))
            return
        service = p.service[node]
        self.tool_start[node] = env.now

        def finish(n=node):
            self.tool_done[n] = env.now
            self._finished(n)
        if service is None:
            at(env, env.now + p.duration[node]).callbacks.append(lambda _: finish())
        else:
            env.process(self.services[service].serve(env, finish))
