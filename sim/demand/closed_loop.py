"""Closed-loop clients: each sends its next request when its last one ends."""
from __future__ import annotations

import numpy as np

from ..core.clock import at


class ClosedLoop:
    """Clients of closed-loop streams: each sends its next request when its last one ends
    (completed or rejected), `think_time` later, until the stream's `requests` are sent or
    the arrival window closes."""

    def __init__(self, env, spec, arrivals, table, router, model_of_stream, streams):
        self.env, self.spec, self.table, self.router = env, spec, table, router
        self.model_of_stream = model_of_stream
        self.pending = {s: list(np.nonzero(arrivals.stream == s)[0][::-1]) for s in streams}
        table.ended.subscribe(self._done)
        for s in streams:
            for _ in range(spec.workload[s].concurrency):
                self._send(s, 0.0)

    def _send(self, s: int, when: float) -> None:
        if not self.pending[s] or when >= self.spec.duration:
            return
        r = int(self.pending[s].pop())
        # a separate event, so a completion never re-enters the replica that reported it
        at(self.env, max(when, self.env.now)).callbacks.append(lambda _: self._arrive(r, s))

    def _arrive(self, r: int, s: int) -> None:
        self.table.arrival[r] = self.env.now
        self.router.arrive(r, self.model_of_stream[s])

    def _done(self, r: int, when: float) -> None:
        s = int(self.table.stream[r])
        if s in self.pending:
            self._send(s, when + self.spec.workload[s].think_time)
