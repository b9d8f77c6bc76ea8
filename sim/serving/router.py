"""The router in front of the replicas: picks one per request, or rejects it with a reason.

Immediate dispatch sends each request to a replica on arrival (each replica queues its
own). Central dispatch holds requests in one FIFO at the router and hands the oldest to a
replica as soon as one has a free batch slot: with `max_batch_seqs: 1` this is the M/G/c
queue of queueing theory.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..metrics import RequestTable
from .replica import Replica

POLICIES = ("round-robin", "random", "least-outstanding", "least-kv", "power-of-two")


class Router:
    def __init__(self, env, replicas_by_model: dict[str, list[Replica]], policy: str, queue_limit: int | None,
                 dispatch: str, rng: np.random.Generator, table: RequestTable):
        self.env = env
        self.by_model = replicas_by_model
        self.policy = policy
        self.queue_limit = queue_limit
        self.central = dispatch == "central"
        self.rng = rng
        self.table = table
        self.backlog: dict[str, deque[int]] = {m: deque() for m in replicas_by_model}
        self._rr = {m: 0 for m in replicas_by_model}
        for reps in replicas_by_model.values():
            for rep in reps:
                rep.on_capacity = self._capacity_freed

    def arrive(self, r: int, model: str) -> None:
        now = self.env.now
        replicas = self.by_model.get(model)
        if not replicas:
            self.table.reject(r, "no_pool_serves_model", now)
            return
        fits = [rep for rep in replicas if self._admissible(rep, r) is None]
        if not fits:
            self.table.reject(r, self._admissible(replicas[0], r), now)
            return
        if self.central:
            queue = self.backlog[model]
            if self.queue_limit is not None and len(queue) >= self.queue_limit:
                self.table.reject(r, "queue_full", now)
                return
            queue.append(r)
            self._pump(model)
            return
        rep = self._choose(model, fits)
        if self.queue_limit is not None and rep.waiting_count() >= self.queue_limit:
            self.table.reject(r, "queue_full", now)
            return
        self.deliver(rep, r)

    def deliver(self, rep: Replica, r: int) -> None:
        """Hand request r to replica rep (after its payload has crossed the fabric, when the
        scenario has ingress: set by the simulation)."""
        rep.submit(r)

    def _admissible(self, rep: Replica, r: int) -> str | None:
        """Why replica `rep` can never serve request r, or None if it can."""
        dep = rep.dep
        p, n = int(self.table.prompt[r]), int(self.table.output[r])
        if p + n > dep.model.max_context:
            return "exceeds_context"
        if dep.blocks_for(p + n - 1) > dep.total_blocks:
            return "exceeds_kv_cache"
        if (rep.static or not rep.chunked) and p > rep.max_tokens:
            return "prompt_exceeds_batch_tokens"
        return None

    def _choose(self, model: str, candidates: list[Replica]) -> Replica:
        policy = self.policy
        if policy == "round-robin":
            k = self._rr[model]
            self._rr[model] = k + 1
            return candidates[k % len(candidates)]
        if policy == "random":
            return candidates[int(self.rng.integers(len(candidates)))]
        if policy == "least-outstanding":
            return min(candidates, key=lambda rep: rep.outstanding())
        if policy == "least-kv":
            return min(candidates, key=lambda rep: rep.kv_load())
        if policy == "power-of-two":
            if len(candidates) == 1:
                return candidates[0]
            a, b = self.rng.choice(len(candidates), 2, replace=False)
            ra, rb = candidates[int(a)], candidates[int(b)]
            return ra if ra.outstanding() <= rb.outstanding() else rb
        raise ValueError(f"unknown routing policy {policy}")

    def _pump(self, model: str) -> None:
        queue = self.backlog[model]
        while queue:
            r = queue[0]
            room = [rep for rep in self.by_model[model] if rep.has_room() and self._admissible(rep, r) is None]
            if not room:
                return
            queue.popleft()
            self.deliver(self._choose(model, room), r)

    def _capacity_freed(self, rep: Replica) -> None:
        if self.central:
            for model, reps in self.by_model.items():
                if rep in reps and self.backlog[model]:
                    self._pump(model)
