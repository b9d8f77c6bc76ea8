"""Static batching, the baseline: a batch is formed when the replica is idle, reserves KV for
every sequence's full length, and runs until its longest sequence finishes. One event per
batch: `decode_run` computes all of its decode iterations at once."""
from __future__ import annotations

import contextlib
from collections import deque

import numpy as np
import simpy

from ..core.clock import at
from ..timing import kernels
from .event_log import itl_bins
from .replica_base import ReplicaBase


class ProcessReplica(ReplicaBase):
    """A replica run by a SimPy process `_loop` over Python state: a deque of waiting
    requests and a list of running ones, records written as it goes. The process sleeps on
    `_work` when idle; `busy_until` is when the batch running now ends."""

    def __init__(self, env, index, pool, deployment, engine, table, log, board, stop_at_completions=False,
                 role="both", prioritized=False):
        # serves in arrival order: scenarios with classes are refused for static batching
        super().__init__(env, index, pool, deployment, engine, table, log, board, role)
        self.free_blocks = self.total_blocks
        self.waiting: deque[int] = deque()
        self.req: list[int] = []
        self.busy_until = np.inf
        self._streaming = 0.0          # output tokens per second of the batch running now
        self._work = env.event()
        self.process = env.process(self._lives())

    def outstanding(self) -> int:
        return len(self.waiting) + len(self.req)

    def output_rate(self) -> float:
        """The batch running now streams its output tokens evenly over its decode steps."""
        return self._streaming

    def activity(self) -> tuple[float, int]:
        if not self.req:
            return self.busy_time, self.iterations
        # the batch under way: its share of time so far, iterations prorated
        t0, now = self.batch_start, self.env.now
        return self.busy_time + now - t0, self.iterations

    def waiting_count(self) -> int:
        return len(self.waiting)

    def _publish_plan(self) -> None:
        self._publish(self.busy_until)

    def sync(self) -> None:
        """Nothing is deferred: records are written as batches end."""

    def _enqueue(self, r: int) -> None:
        if not self.up:
            self.lost(r)
            return
        self.table.replica[r] = self.index
        self.waiting.append(r)
        self._publish_plan()
        self._wake()

    def _wake(self) -> None:
        if not self._work.triggered:
            self._work.succeed()

    def _lives(self):
        """`_loop` until a failure interrupts it; then again, from waiting for `ready`."""
        while True:
            with contextlib.suppress(simpy.Interrupt):
                yield from self._loop()

    def _drop_all(self) -> list[int]:
        """The batch under way is lost with the waiting requests (see `fail`)."""
        lost = list(self.req) + list(self.waiting)
        self.process.interrupt()
        self.req, self.waiting = [], deque()
        self.free_blocks = self.total_blocks
        self.busy_until = np.inf
        return lost

    def _loop(self):
        raise NotImplementedError

    def _token_gaps(self, req: np.ndarray, remaining: np.ndarray, first: float, ends: np.ndarray) -> None:
        """A batch's sequences all get their first token at `first` and then one a step, at
        `ends`, until their own output is done: each one's longest gap, and every gap from the
        window's start into the inter-token histogram."""
        gaps = np.diff(np.concatenate([[first], ends]))
        longest = np.maximum.accumulate(gaps) if len(gaps) else gaps
        self.table.longest_stall[req] = np.where(remaining > 0, longest[np.maximum(remaining - 1, 0)]
                                                 if len(gaps) else 0.0, 0.0)
        decoding = len(remaining) - np.searchsorted(np.sort(remaining), np.arange(len(gaps)), side="right")
        counted = ends >= self.table.window_start
        np.add.at(self.itl, itl_bins(gaps[counted]), decoding[counted])


class StaticReplica(ProcessReplica):
    def kv_load(self) -> float:
        demand = sum(self.dep.blocks_for(int(self.table.prompt[r] + self.table.output[r]) - 1) for r in self.waiting)
        return (self.total_blocks - self.free_blocks + demand) / self.total_blocks

    def _loop(self):
        env = self.env
        table = self.table
        yield self.ready
        while True:
            if not self.waiting:
                self._work = env.event()
                yield self._work
            batch, tokens = [], 0
            while self.waiting and len(batch) < self.max_seqs:
                r = self.waiting[0]
                p = int(table.prompt[r])
                need = self.dep.blocks_for(p + int(table.output[r]) - 1)
                if tokens + p > self.max_tokens or need > self.free_blocks:
                    break
                self.waiting.popleft()
                self.free_blocks -= need
                batch.append((r, need))
                tokens += p
            if not batch:  # the head request can never fit; the router rejects those up front
                raise RuntimeError("static batch could not admit its head request")
            req = np.array([r for r, _ in batch], np.int64)
            self.req = req.tolist()
            prompts = table.prompt[req]
            t0 = self.batch_start = env.now
            table.admitted[req] = t0
            dt = kernels.batch_time(prompts, np.zeros(len(req), np.int64), prompts, np.zeros(0, np.int64), self.params)
            t = t0 + dt
            table.first_token[req] = t
            table.generated[req] = 1
            remaining = table.output[req] - 1
            steps = int(remaining.max())
            ends = np.empty(max(steps, 1))
            finish = np.empty(len(req), np.int64)
            if steps > 0:
                k = kernels.decode_run(t, table.prompt[req].astype(np.int64), np.maximum(remaining, 1), self.bs,
                                       self.free_blocks, self.per_seq_blocks, 1, 1 if self.kv_grows else 0,
                                       steps, self.params, ends, finish)
                t_last = ends[k - 1]
            else:
                t_last = t
            self.busy_until = t_last
            self._streaming = float(remaining.sum()) / (t_last - t) if t_last > t else 0.0
            self._publish_plan()
            yield at(env, t_last)
            self._streaming = 0.0
            self._token_gaps(req, remaining, t, ends[:k] if steps > 0 else ends[:0])
            for j, r in enumerate(req):
                table.generated[r] = table.output[r]
                table.complete(r, t if remaining[j] == 0 else ends[remaining[j] - 1])
            self.busy_time += t_last - t0
            self.iterations += 1 + steps
            self.log.add(self.index, t0, t_last, 1 + steps, int(tokens + len(req) * steps),
                         self.total_blocks - self.free_blocks, self.clock, self.host_wait())
            self.free_blocks += sum(n for _, n in batch)
            self.req = []
            self.busy_until = np.inf
            self._publish_plan()
            self._notify()
