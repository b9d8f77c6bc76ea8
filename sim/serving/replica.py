"""A model replica on a tensor-parallel group: the batching loop as a SimPy process.

Continuous batching (vLLM-style): every iteration, sequences already decoding take one token
each, partially prefilled prompts continue, and waiting requests are admitted in arrival
order while the KV cache, `max_batch_seqs` and the token budget allow. A prompt is prefilled
whole, or in chunks of `chunked_prefill` tokens. When a decoding sequence needs a new KV
block and none is free, the most recently admitted sequence is preempted (its cache freed,
to be recomputed when it is admitted again).

Fast path: when nothing waits and every sequence is decoding, the batch can only change at
a completion, so one `decode_run` kernel call computes all iterations up to the KV limit,
and the process sleeps until the last of them. A request that arrives meanwhile wakes it;
the replica applies the iterations that have ended, finishes the one in progress, and goes
back to forming batches. Anyone who looks at the replica (the router) first brings it up to
`now` with `sync`, so what they see is what stepping one iteration at a time would show.

Static batching (the baseline): a batch is formed when the replica is idle, reserves KV
for every sequence's full length, and runs until its longest sequence finishes.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import deque

import numpy as np
import simpy

from .. import kernels
from ..deployment import Deployment
from ..metrics import BusyLog, RequestTable
from .clock import at


class Replica:
    def __init__(self, env: simpy.Environment, index: int, pool: str, deployment: Deployment, engine,
                 table: RequestTable, log: BusyLog, stop_at_completions: bool = False, role: str = "both"):
        self.env = env
        self.index = index
        self.pool = pool
        self.dep = deployment
        self.table = table
        self.log = log
        self.bs = engine.block_size
        self.max_seqs = engine.max_batch_seqs
        self.max_tokens = engine.max_batch_tokens
        self.chunk_limit = engine.chunked_prefill or engine.max_batch_tokens
        self.chunked = engine.chunked_prefill is not None
        self.fast = engine.fast_path
        self.static = engine.batching == "static"
        # disaggregated serving: a prefill replica hands each sequence off after its prefill
        # (holding its KV until the transfer ends); a decode replica takes sequences whose KV
        # has arrived and only decodes them
        self.role = role
        self.prefilled: set[int] = set()   # waiting requests whose KV is already here
        self.on_prefilled = None           # prefill role: called as on_prefilled(replica, r, blocks)
        # Someone acts on each completion at its time (central dispatch, closed-loop clients):
        # fast runs then end at every completion instead of applying them lazily.
        self.stop_at_completions = stop_at_completions
        self.params = deployment.params
        self.total_blocks = deployment.total_blocks
        self.per_seq_blocks = deployment.per_seq_blocks
        self.kv_grows = deployment.kv_bytes_per_token > 0
        self.free_blocks = self.total_blocks
        self.waiting: deque[int] = deque()
        # running sequences in admission order (parallel lists)
        self.req: list[int] = []
        self.target: list[int] = []   # tokens to prefill: prompt + tokens generated before a preemption
        self.kv: list[int] = []       # tokens in the KV cache
        self.blocks: list[int] = []   # KV blocks held
        self.preemptions = 0
        self.busy_time = 0.0
        self.on_capacity = None        # set by the router: called when a sequence leaves
        # host CPU seconds to tokenize one prompt token (after the head node's slowdown)
        self.tokenize_per_token = engine.tokenize_per_token
        self._work = env.event()
        self.ready = env.event()          # weights in place; succeeded at once when preloaded
        # A tensor-parallel group that spans scale-up domains runs each iteration's
        # all-reduces over the fabric (set by the simulation): a generator taking the
        # iteration's token count. Its iterations are stepped one by one.
        self.collective = None
        self._sleep: simpy.Event | None = None
        self._plan = None
        self.process = env.process(self._static_loop() if self.static else self._loop())

    # ---- what the router sees ----------------------------------------------------------
    def running(self) -> int:
        """Sequences in the batch now. During a fast run this counts the completions that
        have happened by now (a bisect) instead of replaying the run: same answer, cheaper."""
        plan = self._plan
        if plan is None:
            return len(self.req)
        return len(plan["req"]) - bisect_right(plan["done_times"], self.env.now)

    def outstanding(self) -> int:
        return len(self.waiting) + self.running()

    def waiting_count(self) -> int:
        return len(self.waiting)

    def kv_load(self) -> float:
        """KV blocks in use plus those waiting requests will need, over the total."""
        self.sync()
        demand = sum(self.dep.blocks_for(int(self.table.prompt[r] + self.table.generated[r])) for r in self.waiting)
        return (self.total_blocks - self.free_blocks + demand) / self.total_blocks

    def has_room(self) -> bool:
        """A free batch slot (for central dispatch)."""
        return self.outstanding() < self.max_seqs

    def submit_prefilled(self, r: int) -> None:
        """A request whose prompt was prefilled elsewhere and whose KV cache has arrived."""
        self.prefilled.add(r)
        self._enqueue(r)

    def release_blocks(self, n: int) -> None:
        """Blocks a handed-off sequence held until its KV cache was sent."""
        self.free_blocks += n
        if not self._work.triggered:
            self._work.succeed()

    def submit(self, r: int) -> None:
        """A new request for this replica: its host tokenizes the prompt, then it queues."""
        if self.tokenize_per_token > 0:
            delay = float(self.table.prompt[r]) * self.tokenize_per_token
            self.table.replica[r] = self.index
            at(self.env, self.env.now + delay).callbacks.append(lambda _: self._enqueue(r))
        else:
            self._enqueue(r)

    def _enqueue(self, r: int) -> None:
        self.sync()
        self.table.replica[r] = self.index
        self.waiting.append(r)
        if not self._work.triggered:
            self._work.succeed()
        # wake a fast run unless it already stops where this request could first join
        plan = self._plan
        joins_later = plan is not None and plan["stop_at_first"] and len(self.req) >= self.max_seqs
        if self._sleep is not None and not self._sleep.triggered and not joins_later:
            self._sleep.succeed("arrival")

    # ---- the continuous-batching loop ------------------------------------------------
    def _loop(self):
        env = self.env
        yield self.ready
        while True:
            if not self.waiting and not self.req:
                self._work = env.event()
                yield self._work
            # The batch cannot change before its next completion when nothing waits, or when
            # it is full (then the run stops at that completion, where a slot opens).
            full = len(self.req) >= self.max_seqs
            if (self.fast and self.collective is None and (full or not self.waiting) and self._all_decoding()
                    and self._plan_fast_run(stop_at_first=full and bool(self.waiting))):
                plan = self._plan
                self._sleep = env.event()
                at(env, plan["ends"][-1]).callbacks.append(self._wake_from_plan(self._sleep))
                yield self._sleep
                self._sleep = None
                self.sync()
                if self._plan is not None:  # woken by an arrival mid-iteration: finish that iteration
                    t_end = self._plan["ends"][self._plan["applied"]]
                    yield at(env, t_end)
                    self.sync()
                    if self._plan is not None:
                        self._end_plan()
                self._notify()
                continue
            yield from self._step()

    def _wake_from_plan(self, sleep):
        def fire(_):
            if not sleep.triggered:
                sleep.succeed("timer")
        return fire

    def _all_decoding(self) -> bool:
        return bool(self.req) and all(k >= t for k, t in zip(self.kv, self.target))

    def _step(self):
        """Form one batch, run it, apply its effects."""
        env = self.env
        t0 = env.now
        dec, pre = self._form_batch()
        if not dec and not pre:
            # nothing schedulable now (KV full with everything waiting): wait for a change
            self._work = env.event()
            yield self._work
            return
        kv, target = self.kv, self.target
        pf_len = np.array([c for _, c in pre], np.int64)
        pf_off = np.array([kv[i] for i, _ in pre], np.int64)
        pf_target = np.array([target[i] for i, _ in pre], np.int64)
        dec_ctx = np.array([kv[i] + 1 for i in dec], np.int64)
        dt = kernels.batch_time(pf_len, pf_off, pf_target, dec_ctx, self.params)
        tokens = int(pf_len.sum()) + len(dec)
        t_end = t0 + dt
        yield at(env, t_end)
        if self.collective is not None:
            yield from self.collective(tokens)
            t_end = env.now
        self.busy_time += t_end - t0
        self.log.add(self.index, t0, t_end, 1, tokens, self.total_blocks - self.free_blocks)
        self._apply(dec, pre, t_end)
        self._notify()

    def _form_batch(self):
        table = self.table
        dec: list[int] = []
        i = 0
        while i < len(self.req):
            if self.kv[i] >= self.target[i]:
                need = 1 if (self.kv_grows and self.kv[i] % self.bs == 0) else 0
                while need > self.free_blocks:
                    victim = len(self.req) - 1
                    self._preempt(victim)
                    if victim == i:
                        break
                else:
                    self.free_blocks -= need
                    self.blocks[i] += need
                    dec.append(i)
            i += 1
        budget = self.max_tokens - len(dec)
        prefill_budget = min(budget, self.chunk_limit)
        pre: list[tuple[int, int]] = []
        for i in range(len(self.req)):
            if prefill_budget <= 0:
                break
            left = self.target[i] - self.kv[i]
            if left > 0:
                c = min(left, prefill_budget)
                pre.append((i, c))
                prefill_budget -= c
        while self.waiting and len(self.req) < self.max_seqs and (prefill_budget > 0 or self.waiting[0] in self.prefilled):
            r = self.waiting[0]
            if r in self.prefilled:
                if not self._admit_prefilled(r, dec):
                    break
                continue
            target = int(table.prompt[r] + table.generated[r])
            need = self.dep.blocks_for(target)
            if need > self.free_blocks:
                break
            if not self.chunked and min(target, self.max_tokens) > prefill_budget:
                break
            self.waiting.popleft()
            self.free_blocks -= need
            self.req.append(r)
            self.target.append(target)
            self.kv.append(0)
            self.blocks.append(need)
            if np.isnan(table.admitted[r]):
                table.admitted[r] = self.env.now
            c = min(target, prefill_budget)
            pre.append((len(self.req) - 1, c))
            prefill_budget -= c
        if not 0 <= self.free_blocks <= self.total_blocks:
            raise RuntimeError(f"replica {self.index}: KV accounting broken ({self.free_blocks} free blocks)")
        return dec, pre

    def _admit_prefilled(self, r: int, dec: list) -> bool:
        """Admit a request that arrives with its prompt's KV cache: it decodes right away."""
        kv = int(self.table.prompt[r])
        need = self.dep.blocks_for(kv) + (1 if self.kv_grows and kv % self.bs == 0 else 0)
        if need > self.free_blocks or len(dec) >= self.max_tokens:
            return False
        self.waiting.popleft()
        self.prefilled.discard(r)
        self.free_blocks -= need
        self.req.append(r)
        self.target.append(kv)
        self.kv.append(kv)
        self.blocks.append(need)
        if np.isnan(self.table.admitted[r]):
            self.table.admitted[r] = self.env.now
        dec.append(len(self.req) - 1)
        return True

    def _preempt(self, i: int) -> None:
        r = self.req[i]
        self.free_blocks += self.blocks[i]
        self._remove(i)
        self.waiting.appendleft(r)
        self.table.preemptions[r] += 1
        self.preemptions += 1

    def _apply(self, dec, pre, t_end) -> None:
        table = self.table
        done = []
        for i in dec:
            self.kv[i] += 1
            r = self.req[i]
            table.generated[r] += 1
            if table.generated[r] >= table.output[r]:
                done.append(i)
        handoff = []
        for i, c in pre:
            self.kv[i] += c
            if self.kv[i] == self.target[i]:
                r = self.req[i]
                table.generated[r] += 1
                if np.isnan(table.first_token[r]):
                    table.first_token[r] = t_end
                if table.generated[r] >= table.output[r]:
                    done.append(i)
                elif self.role == "prefill":
                    handoff.append(i)
        for i in sorted(done + handoff, reverse=True):
            if i in handoff:
                self._hand_off(i)
            else:
                self._finish(i, t_end)

    def _remove(self, i: int) -> None:
        """Take running sequence i out of the batch (its blocks are the caller's business)."""
        for col in (self.req, self.target, self.kv, self.blocks):
            del col[i]

    def _hand_off(self, i: int) -> None:
        """Prefill role: the sequence leaves the batch; its blocks stay held until its KV is sent."""
        r, blocks = self.req[i], self.blocks[i]
        self._remove(i)
        self.on_prefilled(self, r, blocks)

    def _finish(self, i: int, when: float) -> None:
        r = self.req[i]
        self.table.complete(r, when)
        self.free_blocks += self.blocks[i]
        self._remove(i)

    def _notify(self) -> None:
        if self.on_capacity is not None:
            self.on_capacity(self)

    # ---- the fast path -----------------------------------------------------------------
    def _plan_fast_run(self, stop_at_first: bool) -> bool:
        table = self.table
        req = np.asarray(self.req, np.int64)
        kv = np.asarray(self.kv, np.int64)
        remaining = table.output[req] - table.generated[req]
        stop_at_first = stop_at_first or self.stop_at_completions
        max_steps = int(remaining.min() if stop_at_first else remaining.max())
        ends = np.empty(max_steps)
        finish = np.empty(len(req), np.int64)
        k = kernels.decode_run(self.env.now, kv, remaining, self.bs, self.free_blocks, self.per_seq_blocks,
                               0, 1 if self.kv_grows else 0, max_steps, self.params, ends, finish)
        if k == 0:
            return False
        self._plan = {"t0": self.env.now, "ends": ends[:k], "finish": finish, "req": req, "kv0": kv,
                      "target0": np.asarray(self.target, np.int64), "gen0": table.generated[req].copy(),
                      "applied": 0, "stop_at_first": stop_at_first,
                      "done_times": np.sort(ends[finish[finish >= 0]]).tolist()}
        self._count_blocks(in_progress=True)
        return True

    def sync(self) -> None:
        """Apply the planned iterations that have ended by now."""
        plan = self._plan
        if plan is None:
            return
        ends = plan["ends"]
        m = int(np.searchsorted(ends, self.env.now, side="right"))
        a = plan["applied"]
        if m <= a:
            return
        finish, req = plan["finish"], plan["req"]
        table = self.table
        # sequence j finishes in step last[j]-1; unfinished ones outlast the plan
        last = np.where(finish < 0, len(ends) + 1, finish + 1)
        tokens = int(np.sum(np.clip(last, a, m) - a))
        start = plan["t0"] if a == 0 else ends[a - 1]
        self.log.add(self.index, start, ends[m - 1], m - a, tokens, self.total_blocks - self.free_blocks)
        self.busy_time += ends[m - 1] - start
        steps = np.minimum(last, m)
        table.generated[req] = plan["gen0"] + steps
        gone = last <= m
        for j in np.nonzero(gone & (last > a))[0]:
            table.complete(req[j], ends[finish[j]])
        keep = ~gone
        self.req = req[keep].tolist()
        self.kv = (plan["kv0"] + steps)[keep].tolist()
        self.target = plan["target0"][keep].tolist()
        plan["applied"] = m
        if m == len(ends):
            self._plan = None
        self._count_blocks(in_progress=self._plan is not None)

    def _count_blocks(self, in_progress: bool) -> None:
        """Blocks held by running sequences; with `in_progress`, also those the running
        iteration allocated at its start, as the stepping path does."""
        bs = self.bs
        held = [self.dep.blocks_for(k) for k in self.kv]
        if in_progress and self.kv_grows:
            held = [b + (1 if k % bs == 0 else 0) for b, k in zip(held, self.kv)]
        self.blocks = held
        self.free_blocks = self.total_blocks - sum(held)

    def _end_plan(self) -> None:
        """Drop the rest of a plan after the iteration in progress has been applied."""
        self._plan = None
        self._count_blocks(in_progress=False)

    # ---- static batching ----------------------------------------------------------------
    def _static_loop(self):
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
            t0 = env.now
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
            yield at(env, t_last)
            for j, r in enumerate(req):
                table.generated[r] = table.output[r]
                table.complete(r, t if remaining[j] == 0 else ends[remaining[j] - 1])
            self.busy_time += t_last - t0
            self.log.add(self.index, t0, t_last, 1 + steps, int(tokens + len(req) * steps),
                         self.total_blocks - self.free_blocks)
            self.free_blocks += sum(n for _, n in batch)
            self.req = []
            self._notify()
