"""What others see of a continuous-batching replica between commits (its load, KV use,
activity, output rate), read off the plan's per-iteration record (`replica.py`)."""
from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

from . import engine_state as es


class PlanView:
    """Mixin of `Replica`: reads of its plan at the current time (the attributes are set up
    by `Replica.__init__`)."""

    def _active(self) -> bool:
        return self.k > self.it0

    def _seen(self) -> int:
        """The plan's column describing now: the iteration running now, or the end state."""
        return bisect_right(self.ends, self.env.now, self.it0, self.k)

    def _load_at(self, j: int) -> int:
        """Outstanding requests while plan column j holds."""
        return int(self.batch[es.B_RUNNING, j] + self.batch[es.B_WAITING, j]) + self.extra_n + len(self.pending)

    def outstanding(self) -> int:
        if not self._active():
            held = self.committed.counters
            return int(held[es.RUNNING] + held[es.PREEMPTED]) + len(self.queue) + len(self.pending)
        return self._load_at(self._seen())

    def waiting_count(self) -> int:
        if not self._active():
            return len(self.queue) + int(self.committed.counters[es.PREEMPTED]) + len(self.pending)
        return int(self.batch[es.B_WAITING, self._seen()]) + self.extra_n + len(self.pending)

    def kv_load(self) -> float:
        """KV blocks in use plus those waiting requests will need, over the total."""
        if not self._active():
            held = self.committed.counters
            used = self.total_blocks - held[es.FREE] - held[es.EVICT]
            demand = held[es.DEMAND]
        else:
            j = self._seen()
            used, demand = self.batch[es.B_USED, j], self.batch[es.B_DEMAND, j]
        return float(used + demand + self.extra_demand) / self.total_blocks

    def _publish_plan(self) -> None:
        """Post the current load and the end of the iteration that next changes it."""
        if self.busy:
            self.busy(self, self._active())
        if not self._active():
            self._publish()
            return
        j = self._seen()
        change = self.batch[es.B_NEXT, j]
        self.board.outstanding[self.index] = self._load_at(j)
        self.board.until[self.index] = self.ends[change] if change >= 0 else np.inf

    def activity(self) -> tuple[float, int]:
        busy, its = self.busy_time, self.iterations
        now = self.env.now
        if self._active() and self.stepper is None and now > self.t_free:
            busy += min(now, self.ends[self.k - 1]) - self.t_free
            its += self._seen() - self.it0
        return busy, its

    def output_rate(self) -> float:
        """Sequences in the iteration running now over its duration: each streams one token."""
        if not self._active():
            return 0.0
        j = self._seen()
        if j >= self.k:
            return 0.0
        start = self.t_free if j == self.it0 else self.ends[j - 1]
        return float(self.batch[es.B_RUNNING, j]) / max(self.ends[j] - start, 1e-9)

    def _boundary(self) -> float:
        """The end of the iteration running now (now, between iterations)."""
        j = self._seen()
        start = self.t_free if j == self.it0 else self.ends[j - 1]
        return self.ends[j] if j < self.k and start < self.env.now else self.env.now

    def _joins_later(self) -> bool:
        """Whether a request queued now could join none of the plan's iterations that have
        yet to start: each of them leaves someone waiting (FIFO admission stops at the head)."""
        now = self.env.now
        j0 = self.it0 if self.t_free >= now else 1 + bisect_left(self.ends, now, self.it0, self.k)
        return j0 >= self.k or bool(self.batch[es.B_WAITING, j0:self.k].min() > 0)

    def _ended(self) -> int:
        """Iterations of the plan that have ended by now."""
        return self._seen() - self.it0

