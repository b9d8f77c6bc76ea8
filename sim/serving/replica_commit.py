"""Committing a continuous-batching replica's plan (`replica.py`): its iterations' events
into the request table, busy log and prefix cache, then to whoever waits for completions
and hand-offs."""
from __future__ import annotations

from ..core.metrics import COMPLETED
from . import engine_state as es
from . import event_log


class PlanCommit:
    """Mixin of `Replica`: writes the iterations of a plan that have run (the attributes are
    set up by `Replica.__init__`)."""

    def _commit(self) -> None:
        """The whole plan has run: its end state becomes the committed state; then those who
        wait for its completions and hand-offs hear of them."""
        lo, hi = self.lo, self.hi
        leaving = self._record(self.it0, self.k, lo, hi)
        self.queue.pop(int(self.outcome[es.CONSUMED]) - self.consumed_base)
        self.committed.take(self.planned)
        self.committed.counters[es.FREE] += self.pending_free
        self.pending_free = 0
        self.late_at = 0
        if self.cache is not None:
            self.cache.reconcile(self.committed.counters)
        self._written_back()
        self.it0 = self.k
        self._announce(lo, hi, leaving)

    def _commit_checkpoint(self, m: int) -> None:
        """The first m iterations of the new run have ended: commit them."""
        ck_log, ck_consumed = int(self.outcome[es.CK_LOGGED]), int(self.outcome[es.CK_CONSUMED])
        leaving = self._record(0, m, 0, ck_log)
        self.queue.pop(ck_consumed)
        self.committed.take(self.checkpoint)
        if self.cache is not None:
            self.cache.reconcile(self.committed.counters)
        self._written_back()
        self.it0, self.lo = m, ck_log
        self.consumed_base = ck_consumed
        self._announce(0, ck_log, leaving)

    def _record(self, a: int, b: int, lo: int, hi: int) -> int:
        """Iterations a..b-1 have run: their events go into the request table (and finished
        requests' blocks into the prefix cache), and the stretch into the busy log. Returns
        how many sequences left."""
        table = self.table
        ends = self.ends
        start = self.t_free
        leaving, preempted = event_log.apply_log(self.events, lo, hi, a, start, ends, event_log.written_columns(table),
                                                 COMPLETED, self.itl, table.window_start)
        self.preemptions += preempted
        end = ends[b - 1]
        tokens = int(self.batch[es.B_TOKENS, a:b].sum())
        self.log.add(self.index, start, end, b - a, tokens, int(self.batch[es.B_USED, b - 1]), self.clock,
                     self.host_wait())
        self.busy_time += end - start
        self.iterations += b - a
        self.t_free = end
        if leaving and self.cache is not None:
            for kind, _, r, _ in self.events[lo:hi].tolist():
                if kind == es.EV_DONE:
                    self.cache.finished(r)
        return leaving

    def _announce(self, lo: int, hi: int, leaving: int) -> None:
        """Completions and hand-offs of events lo..hi, to whoever waits for them (once the
        committed state is in place: what they do next may queue requests here)."""
        table = self.table
        if leaving and (table.ended or self.prefilled):
            for kind, j, r, v in self.events[lo:hi].tolist():
                if kind == es.EV_DONE:
                    table.ended(r, float(self.ends[j]))
                elif kind == es.EV_HANDOFF:
                    self.prefilled(self, r, v)

    def _written_back(self) -> None:
        """Running sequences' generated tokens into the request table."""
        held = self.committed
        n = int(held.counters[es.RUNNING])
        self.table.generated[held.seqs[es.REQ, :n]] = held.seqs[es.GEN, :n]
