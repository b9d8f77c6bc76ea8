"""The continuous-batching rules written plainly, one SimPy step per iteration: the oracle
the compiled scheduler (`sim.serving.scheduler.engine_run`) is checked against.

Kept deliberately simple and independent of the compiled code: Python lists, one batch
formed and applied per iteration, table written as it goes.
"""
from __future__ import annotations

import numpy as np

from sim.core.clock import at
from sim.serving import output_estimate as oe
from sim.serving.event_log import itl_bins
from sim.serving.static import ProcessReplica
from sim.timing import kernels


class SteppingReplica(ProcessReplica):
    def __init__(self, *args, **kwargs):
        self.target: list[int] = []   # tokens to prefill: prompt + tokens generated before a preemption
        self.kv: list[int] = []       # tokens in the KV cache
        self.blocks: list[int] = []   # KV blocks held
        self.last: dict[int, int] = {}  # request -> its last token's time (integer ns, as the scheduler keeps it)
        self.gap: dict[int, int] = {}   # request -> its longest gap between tokens so far (ns)
        super().__init__(*args, **kwargs)
        self.mixed = args[4].mixed_batches   # the engine: prefill and decode in one iteration, or apart
        # what a joining request holds (a prefill-only replica hands off first: its prompt's blocks)
        reservation = args[4].kv_reservation if self.role != "prefill" else "on_demand"
        self.reserve = reservation == "to_completion"    # its whole output
        self.estimate = reservation == "estimated"       # room for its output beside a share of the others'
        self.ratio = oe.RATIO_INIT                       # that share, in parts per billion
        self.watermark = int(args[4].kv_watermark * self.total_blocks)   # blocks a joining request leaves free

    def kv_load(self) -> float:
        demand = sum(self.dep.blocks_for(int(self.table.prompt[r] + self.table.generated[r])) for r in self.waiting)
        return (self.total_blocks - self.free_blocks + demand) / self.total_blocks

    def submit_prefilled(self, r: int) -> None:
        self.table.kv_ready[r] = True
        self._enqueue(r)

    def release_blocks(self, n: int) -> None:
        self.free_blocks += n
        self._wake()

    def _loop(self):
        env = self.env
        yield self.ready
        while True:
            if not self.waiting and not self.req:
                self._work = env.event()
                yield self._work
            t0 = env.now
            dec, pre = self._form_batch()
            if not dec and not pre:
                self._work = env.event()
                yield self._work
                continue
            kv, target = self.kv, self.target
            pf_len = np.array([c for _, c in pre], np.int64)
            pf_off = np.array([kv[i] for i, _ in pre], np.int64)
            pf_target = np.array([target[i] for i, _ in pre], np.int64)
            dec_ctx = np.array([kv[i] + 1 for i in dec], np.int64)
            self.busy_until = t0 + kernels.batch_time(pf_len, pf_off, pf_target, dec_ctx, self.params)
            self._publish_plan()
            yield at(env, self.busy_until)
            self.busy_time += self.busy_until - t0
            self.log.add(self.index, t0, self.busy_until, 1, int(pf_len.sum()) + len(dec),
                         self.total_blocks - self.free_blocks)
            self._apply(dec, pre, self.busy_until)
            self.busy_until = np.inf
            self._publish_plan()
            self._notify()

    def _prefill_ready(self) -> bool:
        """A prompt has chunks left, or the next waiting request fits a slot and the cache."""
        if any(self.kv[i] < self.target[i] for i in range(len(self.req))):
            return True
        if not self.waiting or len(self.req) >= self.max_seqs or self.table.kv_ready[self.waiting[0]]:
            return False
        r = self.waiting[0]
        need = self._need(r, self.dep.blocks_for(int(self.table.prompt[r] + self.table.generated[r])))
        return self._fits(r, need, self.free_blocks - self._held())

    def _remaining(self, r: int) -> int:
        return min(int(self.table.output[r] - self.table.generated[r]), oe.CLIP_TOKENS)

    def _held(self) -> int:
        """Blocks held back for the decoding sequences' remaining output (SGLang's estimate)."""
        if not self.estimate:
            return 0
        tokens = sum(self._remaining(r) for i, r in enumerate(self.req) if self.kv[i] >= self.target[i])
        return int(np.ceil(self.ratio * 1e-9 * tokens / self.bs))

    def _output_blocks(self, r: int) -> int:
        return -(-self._remaining(r) // self.bs)

    def _fits(self, r: int, need: int, room: int) -> bool:
        if self.estimate:
            return need + self._output_blocks(r) + self.watermark < room
        return need + self.watermark <= room

    def _next_ratio(self, retracted: bool) -> None:
        if not retracted:
            self.ratio = max(self.ratio - oe.RATIO_DECAY, oe.RATIO_MIN)
            return
        decoding = [r for i, r in enumerate(self.req) if self.kv[i] >= self.target[i]]
        written = int(sum(self.table.generated[r] for r in decoding))
        whole = int(sum(self.table.output[r] for r in decoding))
        estimate = int(np.floor(oe.RATIO_ONE * ((written + oe.RETRACT_STEPS * len(decoding)) / (whole + 1.0))))
        self.ratio = min(estimate, oe.RATIO_ONE)

    def _need(self, r: int, blocks: int) -> int:
        """What request r takes when it joins: `blocks`, or its whole output's when reserving."""
        if not self.reserve:
            return blocks
        return max(blocks, self.dep.blocks_for(int(self.table.prompt[r] + self.table.output[r] - 1)))

    def _form_batch(self):
        """Decodes, then prefill chunks and admissions. An engine that does not mix runs all
        prefill when a prefill can run, else all decode."""
        if not self.req:
            self.ratio = oe.RATIO_INIT
        prefill_turn = not self.mixed and self._prefill_ready()
        dec, pre = self._form(prefill_turn)
        if prefill_turn and not dec and not pre:
            dec, pre = self._form(False)
        return dec, pre

    def _form(self, prefill_turn: bool):
        table = self.table
        held = self._held()
        dec: list[int] = []
        running = len(self.req)
        i = 0
        while i < len(self.req) and not prefill_turn:
            if self.kv[i] >= self.target[i]:
                need = 1 if (self.kv_grows and not self.reserve and self.kv[i] % self.bs == 0) else 0
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
        if self.estimate and not prefill_turn and (dec or len(self.req) < running):
            self._next_ratio(len(self.req) < running)
        prefill_budget = min(self.max_tokens - len(dec), self.chunk_limit)
        if not self.mixed and not prefill_turn:
            prefill_budget = 0
        pre: list[tuple[int, int]] = []
        for i in range(len(self.req)):
            if prefill_budget <= 0:
                break
            left = self.target[i] - self.kv[i]
            if left > 0:
                c = min(left, prefill_budget)
                pre.append((i, c))
                prefill_budget -= c
        while (self.waiting and len(self.req) < self.max_seqs
               and (prefill_budget > 0 or table.kv_ready[self.waiting[0]])):
            r = self.waiting[0]
            if table.kv_ready[r]:  # prefilled elsewhere: decodes right away
                kv = int(table.prompt[r])
                need = self._need(r, self.dep.blocks_for(kv) + (1 if self.kv_grows and kv % self.bs == 0 else 0))
                if need > self.free_blocks or len(dec) >= self.max_tokens:
                    break
                self._admit(r, kv, kv, need)
                dec.append(len(self.req) - 1)
                continue
            target = int(table.prompt[r] + table.generated[r])
            need = self._need(r, self.dep.blocks_for(target))
            if need > self.free_blocks or not self._fits(r, need, self.free_blocks - held):
                break
            if not self.chunked and min(target, self.max_tokens) > prefill_budget:
                break
            self._admit(r, target, 0, need)
            if self.estimate:
                held += self._output_blocks(r)
            c = min(target, prefill_budget)
            pre.append((len(self.req) - 1, c))
            prefill_budget -= c
        assert 0 <= self.free_blocks <= self.total_blocks
        return dec, pre

    def _admit(self, r, target, kv, need):
        self.waiting.popleft()
        self.free_blocks -= need
        self.req.append(r)
        self.target.append(target)
        self.kv.append(kv)
        self.blocks.append(need)
        if np.isnan(self.table.admitted[r]):
            self.table.admitted[r] = self.env.now

    def _preempt(self, i: int) -> None:
        r = self.req[i]
        self.free_blocks += self.blocks[i]
        self._remove(i)
        self.waiting.appendleft(r)
        self.table.preemptions[r] += 1
        self.table.kv_ready[r] = False
        self.preemptions += 1

    def _token(self, r: int, t_end: float) -> None:
        """Request r gets a token at t_end: the gap since its last one (if any) goes into its
        longest gap and, from the window's start, into the inter-token histogram."""
        now = np.int64(t_end * 1e9)
        if r not in self.last and self.table.kv_ready[r] and not np.isnan(self.table.first_token[r]):
            self.last[r] = np.int64(self.table.first_token[r] * 1e9)   # prefilled elsewhere
        if r in self.last:
            gap = now - self.last[r]
            self.gap[r] = max(self.gap.get(r, 0), gap)
            if t_end >= self.table.window_start:
                self.itl[itl_bins(np.array([gap / 1e9]))[0]] += 1
        self.last[r] = now

    def _apply(self, dec, pre, t_end) -> None:
        table = self.table
        done, handoff = [], []
        for i in dec:
            self.kv[i] += 1
            r = self.req[i]
            self._token(r, t_end)
            table.generated[r] += 1
            if table.generated[r] >= table.output[r]:
                done.append(i)
        for i, c in pre:
            self.kv[i] += c
            if self.kv[i] == self.target[i]:
                r = self.req[i]
                self._token(r, t_end)
                table.generated[r] += 1
                if np.isnan(table.first_token[r]):
                    table.first_token[r] = t_end
                if table.generated[r] >= table.output[r]:
                    done.append(i)
                elif self.role == "prefill":
                    handoff.append(i)
        for i in sorted(done + handoff, reverse=True):
            r, blocks = self.req[i], self.blocks[i]
            self._remove(i)
            if i in handoff:
                self.prefilled(self, r, blocks)
            else:
                self.free_blocks += blocks
                table.longest_stall[r] = self.gap.get(r, 0) / 1e9
                table.complete(r, t_end)

    def _remove(self, i: int) -> None:
        for col in (self.req, self.target, self.kv, self.blocks):
            del col[i]
