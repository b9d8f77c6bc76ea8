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
plan's per-iteration record. The request table's columns for requests on a replica are
written when a plan is committed: at the latest when the run ends (`sync`).

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

from bisect import bisect_left, bisect_right

import numpy as np
import simpy

from . import engine_state as es
from .engine_state import EngineState
from . import event_log, scheduler
from ..core.clock import at
from ..core.events import Topic
from ..core.metrics import BusyLog, COMPLETED, RequestTable
from ..timing import kernels as K
from ..timing.deployment import Deployment
from .waitqueue import WaitQueue

MAX_HORIZON = 1024   # iterations one plan may cover
FIRST_HORIZON = 16


class LoadBoard:
    """Each replica's outstanding requests, and until when that count holds without new
    input: what a router reads to pick the least-loaded replica without asking each one."""

    def __init__(self, replicas: int):
        self.outstanding = np.zeros(replicas, np.int64)
        self.until = np.full(replicas, np.inf)


class ReplicaBase:
    """What every kind of replica shares: its identity, engine limits, and intake."""

    def __init__(self, env: simpy.Environment, index: int, pool: str, deployment: Deployment, engine,
                 table: RequestTable, log: BusyLog, board: LoadBoard, role: str = "both"):
        self.env = env
        self.index = index
        self.pool = pool
        self.dep = deployment
        self.table = table
        self.log = log
        self.board = board
        self.bs = engine.block_size
        self.max_seqs = engine.max_batch_seqs
        self.max_tokens = engine.max_batch_tokens
        self.chunk_limit = engine.chunked_prefill or engine.max_batch_tokens
        self.chunked = engine.chunked_prefill is not None
        self.static = engine.batching == "static"
        # disaggregated serving: a prefill replica hands each sequence off after its prefill
        # (holding its KV until the transfer ends); a decode replica takes sequences whose KV
        # has arrived and only decodes them
        self.role = role
        self.prefilled = Topic("prefilled")   # prefill role: (replica, r, blocks) after a prefill (core.events)
        self.params = deployment.params
        self.total_blocks = deployment.total_blocks
        self.per_seq_blocks = deployment.per_seq_blocks
        self.kv_grows = deployment.kv_bytes_per_token > 0
        self.preemptions = 0
        self.busy_time = 0.0
        self.iterations = 0            # committed iterations (host work: iterations x overhead)
        self.clock = 1.0               # clock as a fraction of full speed (power capping)
        self.capacity_freed = Topic("capacity_freed")   # (replica) when sequences leave
        self.busy = Topic("busy")      # (replica, computing) after each plan
        # host CPU seconds to tokenize one prompt token (after the head node's slowdown)
        self.tokenize_per_token = engine.tokenize_per_token
        self.tokenized = 0             # prompt tokens its front end has tokenized (head-node CPU work)
        # gaps between consecutive tokens of a sequence from the window's start: a histogram
        # over event_log.itl_edges()
        self.itl = np.zeros(event_log.ITL_BINS, np.int64)
        self.ready = env.event()       # weights in place; succeeded at once when preloaded
        self.up = True                 # takes new requests (False while failed, stopped or starting again)
        self.life = 0                  # starts so far: callbacks of an earlier life are void
        self.lost = Topic("lost")      # (r) for a request that reaches it while down
        # A tensor-parallel group that spans scale-up domains runs each iteration's
        # all-reduces over the fabric (set by the simulation): a generator taking the
        # iteration's token count.
        self.collective = None
        # An engine whose iterations take more than its kernels' time steps one iteration at a
        # time: with collectives over the fabric, or as a pipeline's micro-batches (through
        # shared stages). Set by the simulation: a generator stepper(replica, kernel seconds,
        # tokens, sequences) that returns when the iteration has ended.
        self.stepper = None
        self.cache = None              # a PrefixCache when the engine caches prefixes

    def submit(self, r: int) -> None:
        """A new request for this replica: its host tokenizes the prompt, then it queues."""
        if not self.up:      # went down while the request crossed the fabric to it
            self.lost(r)
            return
        self.table.replica[r] = self.index
        self.tokenized += int(self.table.prompt[r])
        if self.tokenize_per_token > 0:
            delay = float(self.table.prompt[r]) * self.tokenize_per_token
            at(self.env, self.env.now + delay).callbacks.append(lambda _: self._enqueue(r))
        else:
            self._enqueue(r)

    def activity(self) -> tuple[float, int]:
        """Seconds busy and iterations run so far, including work under way now."""
        return self.busy_time, self.iterations

    def set_params(self, params: np.ndarray, clock: float) -> None:
        """Run at a new speed (a power cap's clock) from the next batch on."""
        self.params, self.clock = params, clock

    def host_wait(self) -> float:
        """Host seconds per iteration during which the devices wait: none where the engine
        overlaps its host work with the device's previous iteration."""
        p = self.params
        return 0.0 if p[K.K_HOST_OVERLAP] > 0.0 else float(p[K.K_OVERHEAD] * p[K.K_HOST_SCALE])

    def latest_params(self) -> np.ndarray:
        """The cost vector the next iterations will run with (one switch may be pending): what
        a change of one factor (a power cap's clock, the head node's stretch) starts from."""
        return self.params

    def latest_clock(self) -> float:
        return self.clock

    def output_rate(self) -> float:
        """Output tokens per second it streams now (what its detokenizer keeps up with); an
        engine that streams no text (diffusion) reports none."""
        return 0.0

    def has_room(self) -> bool:
        """A free batch slot (for central dispatch)."""
        return self.outstanding() < self.max_seqs

    def _notify(self) -> None:
        for fn in self.capacity_freed.subscribers:
            fn(self)

    def fail(self) -> list[int]:
        """The replica goes down now: work in progress is lost. Returns the requests it held
        (running, waiting, preempted), reset to start again elsewhere; the iteration running
        now is lost, the ones that ended are kept. It takes no requests until `restart`."""
        self.up = False
        self.life += 1
        lost = self._drop_all()
        t = self.table
        t.replica[lost] = -1
        t.generated[lost] = 0
        t.admitted[lost] = np.nan       # the attempt that serves it sets these again
        t.first_token[lost] = np.nan
        t.kv_ready[lost] = False
        t.cached[lost] = 0
        t.keep_blocks[lost] = 0
        self.ready = self.env.event()
        self._publish()
        return lost

    def restart(self) -> simpy.Event:
        """It starts again after `fail`: the `ready` event to succeed once its weights are
        loaded (the router then puts it back in service)."""
        return self.ready

    def _drop_all(self) -> list[int]:
        raise NotImplementedError

    def _publish(self, until: float = np.inf) -> None:
        self.board.outstanding[self.index] = self.outstanding()
        self.board.until[self.index] = until


class Replica(ReplicaBase):
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
                              mixed_batches=engine.mixed_batches)
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
        self.late_at = 0        # iteration of the next plan from which st[LATE] blocks are free
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

    # ---- what others see ---------------------------------------------------------------
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

    # ---- speed -----------------------------------------------------------------------------
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

    def output_rate(self) -> float:
        """Sequences in the iteration running now over its duration: each streams one token."""
        if not self._active():
            return 0.0
        j = self._seen()
        if j >= self.k:
            return 0.0
        start = self.t_free if j == self.it0 else self.ends[j - 1]
        return float(self.batch[es.B_RUNNING, j]) / max(self.ends[j] - start, 1e-9)

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

    def _boundary(self) -> float:
        """The end of the iteration running now (now, between iterations)."""
        j = self._seen()
        start = self.t_free if j == self.it0 else self.ends[j - 1]
        return self.ends[j] if j < self.k and start < self.env.now else self.env.now

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

    def _joins_later(self) -> bool:
        """Whether a request queued now could join none of the plan's iterations that have
        yet to start: each of them leaves someone waiting (FIFO admission stops at the head)."""
        now = self.env.now
        if self.t_free >= now:
            j0 = self.it0
        else:
            j0 = 1 + bisect_left(self.ends, now, self.it0, self.k)
        return j0 >= self.k or bool(self.batch[es.B_WAITING, j0:self.k].min() > 0)

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

    def _ended(self) -> int:
        """Iterations of the plan that have ended by now."""
        return self._seen() - self.it0

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
            for kind, j, r, v in self.events[lo:hi].tolist():
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
