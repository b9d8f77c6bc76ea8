"""A model replica on a tensor-parallel group: continuous batching, driven by plans.

The scheduling rules (vLLM-style): every iteration, sequences already decoding take one
token each, partially prefilled prompts continue, and waiting requests are admitted in
arrival order while the KV cache, `max_batch_seqs` and the token budget allow. A prompt is
prefilled whole, or in chunks of `chunked_prefill` tokens. When a decoding sequence needs a
new KV block and none is free, the most recently admitted sequence is preempted (its cache
freed, to be recomputed when it is admitted again). The rules live in one compiled
function, `scheduler.engine_run`.

How time passes: the replica asks `engine_run` for a plan, up to `horizon` iterations from
its committed state, and sleeps until the plan's last iteration ends; then it commits the
plan (writes its events into the request table) and plans again. A plan stops early after
an iteration whose results someone acts on at their time: a completion when someone waits
for completions (central dispatch, closed-loop clients, replies over the fabric), or a
prefill hand-off. A request that arrives mid-plan and could join one of its iterations
interrupts it: the replica commits the iterations that have ended, and plans again from
there with the newcomer in the queue. An iteration only admits requests that had arrived
when it started, so the result is the same as stepping one iteration at a time, which is
what `fast_path: false` does (a horizon of one), and what the tests compare against.

What others see of a replica between commits (its load, for the router) is read from the
plan's per-iteration record (`replica_view.py`). The request table's columns for requests on
a replica are written when a plan is committed (`replica_commit.py`): at the latest when the
run ends (`sync`). What every kind of replica shares, and the load board, are in
`replica_base.py`.

An engine whose iterations take more than the kernel says steps one iteration at a time
(`stepper`): a tensor-parallel group whose all-reduces run over the fabric (the kernel's
time plus the collective's flows), and a pipeline's engines (their micro-batches pass shared
stages, `pipeline.py`).

With a prefix cache (`prefix_cache.py`), a newcomer's lookup pins cached blocks, so it is
made where no plan counts on them: a request arriving mid-plan joins the queue at the end
of the iteration running then (as with priority classes), and plans stop after a
completion (its pins are dropped at that boundary) and after an eviction (the cache learns
which entries lost blocks), so plans stay equal to stepping.
"""
from __future__ import annotations

import numpy as np
import simpy

from ..core.clock import at
from . import engine_state as es
from . import scheduler
from .admission import blocks_to_join, fits
from .engine_state import EngineState
from .replica_base import ReplicaBase
from .replica_commit import PlanCommit
from .replica_view import PlanView
from .waitqueue import WaitQueue

MAX_HORIZON = 1024   # iterations one plan may cover
FIRST_HORIZON = 16


class Replica(PlanView, PlanCommit, ReplicaBase):
    """Continuous batching (see the module docstring)."""

    def __init__(self, env, index, pool, deployment, engine, table, log, board, stop_at_completions=False,
                 role="both", prioritized=False):
        super().__init__(env, index, pool, deployment, engine, table, log, board, role)
        self.prioritized = prioritized or engine.preempt_lower   # requests of several classes
        self.horizon = FIRST_HORIZON if engine.fast_path else 1
        self.adaptive = engine.fast_path
        self.queue = WaitQueue()
        cap = self.max_seqs
        # with a prefix cache every completion ends a plan: its pins are dropped at that boundary
        stop_done = stop_at_completions or engine.prefix_cache
        self.rules = es.rules(block_size=self.bs, max_seqs=cap, max_tokens=self.max_tokens, chunk=self.chunk_limit,
                              chunked=self.chunked, kv_grows=self.kv_grows, per_seq_blocks=self.per_seq_blocks,
                              total_blocks=self.total_blocks, stop_at_completions=stop_done,
                              prefill_only=role == "prefill", priority_classes=self.prioritized,
                              preempt_lower=engine.preempt_lower, stop_at_evictions=engine.prefix_cache,
                              mixed_batches=engine.mixed_batches,
                              # a prefill-only replica hands a request off after its first token
                              reservation=engine.kv_reservation if role != "prefill" else "on_demand",
                              watermark=int(engine.kv_watermark * self.total_blocks))
        self.strict_admission = bool(self.rules[es.WATERMARK] or self.rules[es.RESERVE] == es.ESTIMATED)
        # committed state (at time t_free), the plan's end state, and its checkpoint
        self.committed = EngineState(cap, self.total_blocks)
        self.planned = EngineState(cap, self.total_blocks)
        self.checkpoint = EngineState(cap, self.total_blocks)
        self.pending: list[tuple[int, float]] = []   # with classes: arrivals queued at the next boundary
        # what the last plan recorded (engine_state.py)
        self.ends = np.zeros(MAX_HORIZON + 1)
        self.batch = np.zeros((es.BATCH_ROWS, MAX_HORIZON + 2), np.int64)
        self.events = np.zeros((16 * cap + 1024, 4), np.int64)
        self.outcome = np.zeros(es.OUTCOME_SIZE, np.int64)
        self.record = (self.ends, self.batch, self.events, self.outcome)
        self.t_free = 0.0       # when the committed state holds (the end of its last iteration)
        self.late_at = 0        # iteration of the next plan from which counters[LATE] blocks are free
        # the plan: iterations it0..k-1 of the last engine_run, events lo..hi of its log
        self.it0 = self.k = self.lo = self.hi = 0
        self.consumed_base = 0
        self.plan_id = 0
        self.extra_n = 0        # requests queued since the last engine_run
        self.extra_demand = 0   # and the KV blocks they need
        self.pending_free = 0   # blocks released during a stepped iteration
        self._busy = False      # committing: arrivals just queue, the plan follows
        self._work = None       # stepped loop: an idle replica waits on this
        self._next = None       # (params, clock) to switch to when the running iteration ends
        self.ready.callbacks.append(self._on_ready)

    # ---- speed -----------------------------------------------------------------------------
    def fits_alone(self, r: int) -> bool:
        """Whether an empty engine's rules admit request r (leaving the watermark free; with
        SGLang's estimate, beside its whole output), for a request that fits the cache."""
        cols = es.requests(self.table)
        return bool(fits(blocks_to_join(r, 0, cols, self.rules), r, 0, self.total_blocks, cols, self.rules))

    def set_params(self, params: np.ndarray, clock: float) -> None:
        """Run at a new speed from the end of the iteration running now: the iterations that
        have ended keep the old one, and the plan is made again from that boundary."""
        if self.stepper is not None or not self._active():
            self.params, self.clock = params, clock
            if self._next is not None:       # a switch already scheduled lands on these
                self._next = (params, clock)
            return
        pending = self._next is not None
        self._next = (params, clock)
        if not pending:
            j = self._seen()
            at(self.env, self.ends[j] if j < self.k else self.env.now).callbacks.append(self._switch)

    def latest_params(self) -> np.ndarray:
        return self._next[0] if self._next is not None else self.params

    def latest_clock(self) -> float:
        return self._next[1] if self._next is not None else self.clock

    def _switch(self, _) -> None:
        if self._next is None:
            return                      # the replica failed since and starts at the new speed
        now = self.env.now
        active = self._active()
        if active:
            m = self._ended()
            if m == 0 and self.t_free < now:   # its iteration still runs: wait for its end
                at(self.env, self.ends[self.it0]).callbacks.append(self._switch)
                return
            if self.it0 + m == self.k:
                self._finish_plan()
            elif m:
                self._plan(m)                  # commit what ended, at the old speed
        self.params, self.clock = self._next
        self._next = None
        if active:
            self._plan(0)                      # from the boundary (t_free = now) at the new speed

    # ---- intake --------------------------------------------------------------------------
    def submit_prefilled(self, r: int) -> None:
        """A request whose prompt was prefilled elsewhere and whose KV cache has arrived."""
        self.table.kv_ready[r] = True
        self._enqueue(r)

    def _enqueue(self, r: int) -> None:
        if not self.up:      # went down while its prompt was being tokenized
            self.lost(r)
            return
        table = self.table
        table.replica[r] = self.index
        deferred = self.cache is not None or (self.prioritized and self.stepper is None)
        if deferred and self._active() and not self._busy:
            # With classes a newcomer may go ahead of requests already waiting, which the
            # iteration running now has seen; a prefix-cache lookup changes the KV blocks the
            # running plan counts on. Either way it joins the queue when that iteration ends.
            self.pending.append((r, self.env.now))
            if len(self.pending) == 1 and self.stepper is None:
                life = self.life
                at(self.env, self._boundary()).callbacks.append(lambda e: self._take_pending(e, life))
            self._publish_plan()
            return
        self._queue_new(r, self.env.now)
        if self._busy:  # a plan follows; until then the board must be read afresh
            self.board.until[self.index] = -np.inf
            return
        if not self.ready.triggered:
            self._publish()
            return
        if self.stepper is not None:
            self._wake()
            self._publish()
            return
        if not self._active():
            self.t_free = self.env.now
            self._plan(0)
        elif self._joins_later():
            self._publish_plan()
        else:
            self._interrupt()

    def _queue_new(self, r: int, when: float) -> None:
        """Into the waiting queue (by class when there are classes), after a prefix-cache lookup."""
        if self.cache is not None:
            self.cache.lookup(r, self.committed.counters)
        if self.prioritized:
            self.queue.insert(r, when, self.table.priority, self.queue.head)
        else:
            self.queue.push(r, when)
        self._count_new(r)

    def _count_new(self, r: int) -> None:
        """A request queued since the last plan: counted in the load until the next one."""
        self.extra_n += 1
        self.extra_demand += self.dep.blocks_for(int(self.table.prompt[r] + self.table.generated[r])) - \
            int(self.table.cached[r]) // self.bs

    def _take_pending(self, _, life: int) -> None:
        """At an iteration boundary: commit what has run, queue the newcomers by class, plan."""
        if life != self.life or not self.pending:
            return                      # the replica failed since: its newcomers went elsewhere
        if self._active():
            when = self._boundary()
            if when > self.env.now:     # a plan made since runs an iteration across now
                at(self.env, when).callbacks.append(lambda e: self._take_pending(e, life))
                return
            m = self._ended()
            if self.it0 + m == self.k:
                self._finish_plan()
            elif m:
                self._plan(m)
        self._drain_pending()
        self.t_free = self.env.now
        self._plan(0)

    def _drain_pending(self) -> None:
        for r, when in self.pending:
            self._queue_new(r, when)
        self.pending.clear()

    def release_blocks(self, n: int) -> None:
        """Blocks a handed-off sequence held until its KV cache was sent: usable from the
        next iteration that starts."""
        if self.stepper is not None and self._active():
            self.pending_free += n
            return
        if not self._active():
            self.committed.counters[es.FREE] += n
            if self.stepper is not None:
                self._wake()
            elif self.ready.triggered:
                self.t_free = self.env.now
                self._plan(0)
            return
        m = self._ended()
        start = self.t_free if m == 0 else self.ends[self.it0 + m - 1]
        late_at = m if start >= self.env.now else m + 1
        held = self.committed.counters
        self.late_at = min(self.late_at, late_at) if held[es.LATE] else late_at
        held[es.LATE] += n
        self._interrupt()

    # ---- plans ---------------------------------------------------------------------------
    def restart(self) -> simpy.Event:
        ready = super().restart()
        ready.callbacks.append(self._on_ready)
        return ready

    def _drop_all(self) -> list[int]:
        """Commit the iterations that ended, then empty the engine (see `fail`)."""
        if self.stepper is not None:
            raise RuntimeError("failures of replicas that step one iteration at a time (collectives over the "
                               "fabric, pipeline stages) are not modelled")
        self.sync()
        self.plan_id += 1                # the plan made by sync() never runs
        held = self.committed
        lost = held.running().tolist() + list(self.queue) + held.preempted().tolist()
        lost += [r for r, _ in self.pending]
        for state in (self.committed, self.planned, self.checkpoint):
            state.clear(self.total_blocks)
        self.queue = WaitQueue()
        self.pending.clear()
        self.extra_n = self.extra_demand = self.pending_free = self.late_at = 0
        self.it0 = self.k = self.lo = self.hi = self.consumed_base = 0
        self.horizon = FIRST_HORIZON if self.adaptive else 1
        self._next = None
        if self.cache is not None:
            self.cache.clear()
        self.t_free = self.env.now
        return lost

    def _on_ready(self, event) -> None:
        if event is not self.ready:
            return                      # the load of a life that ended in a failure
        self.t_free = self.env.now
        if self.stepper is not None:
            self.env.process(self._stepped_loop())
        elif len(self.queue) or self.committed.counters[es.PREEMPTED]:
            self._plan(0)
        else:
            self._publish()

    def limit_batch(self, seqs: int) -> None:
        """Run at most `seqs` sequences at once, below the engine's own limit (TensorRT-LLM's
        batch size tuning, `batch_tuning.py`); set before the run starts."""
        self.max_seqs = seqs
        self.rules = self.rules[:es.MAX_SEQS] + (int(seqs),) + self.rules[es.MAX_SEQS + 1:]

    def _interrupt(self) -> None:
        """Keep the plan's iterations that have ended and plan again from there."""
        m = self._ended()
        if self.it0 + m == self.k:
            self._finish_plan()
            self._plan(0)
        else:
            self._plan(m)

    def _plan(self, ckpt: int) -> None:
        """engine_run from the committed state: the first `ckpt` iterations (those of the
        previous plan that have ended) are committed at once, the rest become the plan."""
        held = self.committed.counters
        if self.cache is not None and ckpt == 0:
            self.cache.release(held)   # from a boundary: no plan counts on the pinned blocks
        held[es.DEMAND] += self.extra_demand
        self.extra_n = self.extra_demand = 0
        q, table = self.queue, self.table
        horizon = min(self.horizon, MAX_HORIZON - ckpt)
        late_at = self.late_at
        steps = scheduler.engine_run(self.t_free, self.committed.arrays(), self.planned.arrays(),
                                     self.checkpoint.arrays(),
                                     (q.req, q.time, q.head, q.tail), es.requests(table), self.rules,
                                     self.params, ckpt + horizon, ckpt, late_at, self.record)
        self.it0, self.k, self.lo, self.hi = 0, steps, 0, int(self.outcome[es.LOGGED])
        self.consumed_base = 0
        if ckpt:
            self._commit_checkpoint(ckpt)
            self.late_at = max(late_at - ckpt, 0) if held[es.LATE] else 0
        if self.adaptive:
            # Iterations planned past an interruption are computed for nothing, and a plan
            # that runs out costs another call: plan about twice as far as the last plan got
            # before it was interrupted, and twice as far again when plans run out.
            self.horizon = max(8, 2 * ckpt) if ckpt else min(2 * self.horizon, MAX_HORIZON)
        self.plan_id += 1
        if self._active() and self.stepper is None:
            at(self.env, self.ends[self.k - 1], self.plan_id).callbacks.append(self._on_plan_end)
        self._publish_plan()

    def _on_plan_end(self, event) -> None:
        if event.value != self.plan_id:
            return  # superseded
        self._finish_plan()
        self._plan(0)

    def _finish_plan(self) -> None:
        """Commit the whole plan and tell the router; requests it hands over meanwhile queue."""
        self._busy = True
        self._commit()
        self._notify()
        self._busy = False

    def sync(self) -> None:
        """Commit the iterations that have ended by now (the run's end calls this)."""
        if self._active() and self.stepper is None:
            self._interrupt()

    # ---- one iteration at a time: collectives over the fabric, pipeline stages -------------
    def _wake(self) -> None:
        """New work for an idle stepped loop."""
        if self._work is not None and not self._work.triggered:
            self._work.succeed()

    def _stepped_loop(self):
        env = self.env
        self.horizon, self.adaptive = 1, False
        while True:
            self.t_free = env.now
            self._drain_pending()
            self._plan(0)
            if not self._active():
                self._work = env.event()
                yield self._work
                continue
            kernel = self.ends[0] - self.t_free
            self.ends[0] = np.inf  # until the stepper says so, the iteration is running
            yield from self.stepper(self, kernel, int(self.batch[es.B_TOKENS, 0]), int(self.batch[es.B_RUNNING, 0]))
            self.ends[0] = env.now
            self._finish_plan()
