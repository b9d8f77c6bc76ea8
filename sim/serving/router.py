"""The router in front of the replicas: picks one per request, or rejects it with a reason.

Immediate dispatch sends each request to a replica on arrival (each replica queues its
own). Central dispatch holds requests in one FIFO at the router and hands the oldest to a
replica as soon as one has a free batch slot: with `max_batch_seqs: 1` this is the M/G/c
queue of queueing theory. When the workload has several classes (`priority:`), the
router's queue serves the highest class first, oldest first within a class.
"""
from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from ..core.events import Topic
from ..core.metrics import FAILED, REJECTED, SHED, RequestTable
from ..timing import kernels
from .prefix_cache import best_holders
from .replica import Replica
from .replica_base import LoadBoard

POLICIES = ("round-robin", "random", "least-outstanding", "least-kv", "power-of-two", "weighted",
            "lowest-latency", "lowest-cost", "cache-aware")


class PoolFigures:
    """What the pool-aware policies know of each pool, worked out once from the kernels: the
    decode iteration time at each batch size (at the pool's typical context), the prefill
    time per prompt token, the dollars per token at full load, and its routing weight."""

    def __init__(self, params: np.ndarray, max_seqs: int, prompt: float, output: float,
                 usd_per_hour: float | None, weight: float):
        ctx = max(1, int(round(prompt + output / 2)))
        self.step = np.array([kernels.decode_time(params, b, ctx) for b in range(1, max_seqs + 1)])
        P = max(1, int(round(prompt)))
        self.prefill_per_token = kernels.prefill_time(params, P) / P
        tokens_per_s = max_seqs / self.step[-1]
        self.usd_per_token = np.inf if usd_per_hour is None else usd_per_hour / 3600.0 / tokens_per_s
        self.weight = weight


class Router:
    def __init__(self, env, replicas_by_model: dict[str, list[Replica]], policy: str, queue_limit: int | None,
                 dispatch: str, rng: np.random.Generator, table: RequestTable, board: LoadBoard,
                 pool_figures: dict[str, PoolFigures] | None = None, prioritized: bool = False,
                 cache_aware: tuple[float, int, float] = (0.3, 64, 1.5), *, model_of_request=None,
                 admission=None):
        self.env = env
        self.by_model = replicas_by_model
        self.policy = policy
        self.queue_limit = queue_limit
        self.central = dispatch == "central"
        self.cache_aware = cache_aware     # (cache_threshold, balance_abs, balance_rel)
        self.admission = admission         # an ops.admission.Admission: rate limits and shedding
        # replicas out of service (failed, stopped, starting) per model, and requests waiting
        # for one of the model's replicas to come up (set by the simulation)
        self.down = {m: 0 for m in replicas_by_model}
        self.parked = {m: [] for m in replicas_by_model}
        self._parked_at: dict[int, float] = {}
        # central dispatch: when each backlog request joined it, and since when the model has
        # had no replica up (its backlog's wait from then on is a wait for a start)
        self._queued_at: dict[int, float] = {}
        self._none_up_since: dict[str, float] = {}
        self.starved = Topic("starved")    # (model) when a request parks with no replica of its model up
        self.retry_limit = 0               # times a request is sent again after its replica failed
        self.model_of_request = model_of_request   # request -> the model it asks for
        self.rng = rng
        self.table = table
        self.board = board
        self.backlog = {m: (ClassQueue(table.priority) if prioritized else deque()) for m in replicas_by_model}
        self._rr = {m: 0 for m in replicas_by_model}
        self.replica = {}                  # index -> replica
        self.model_of = {}                 # index -> model it serves
        self.indices = {}                  # model -> its replicas' indices, in order
        self.pools = {}                    # model -> [(pool's first replica, start, stop)]
        for model, reps in replicas_by_model.items():
            idx = np.array([rep.index for rep in reps], np.int64)
            contiguous = len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx)))
            # a contiguous range reads the board through a view, not a gather
            self.indices[model] = slice(int(idx[0]), int(idx[0]) + len(idx)) if contiguous else idx
            spans = self.pools[model] = []
            for k, rep in enumerate(reps):
                self.replica[rep.index] = rep
                self.model_of[rep.index] = model
                rep.capacity_freed.subscribe(self._capacity_freed)
                if not spans or spans[-1][0].pool != rep.pool:
                    spans.append([rep, k, k + 1])
                else:
                    spans[-1][2] = k + 1
        self.max_seqs = np.zeros(len(board.outstanding), np.int64)
        for rep in self.replica.values():
            self.max_seqs[rep.index] = rep.max_seqs
        # pool-aware policies: each engine's pool, and each pool's figures as arrays
        self.figures = pool_figures or {}
        names = sorted(self.figures)
        self.pool_id = np.zeros(len(board.outstanding), np.int64)
        for rep in self.replica.values():
            self.pool_id[rep.index] = names.index(rep.pool) if rep.pool in self.figures else 0
        self.fig = [self.figures[n] for n in names]
        self.prefill_rate = np.array([f.prefill_per_token for f in self.fig])
        self.usd_per_token = np.array([f.usd_per_token for f in self.fig])
        self.weight = np.array([f.weight for f in self.fig])

    def arrive(self, r: int, model: str, admitted: bool = False) -> None:
        """Route request r. One `admitted` before (a retry, or one that waited for a replica
        to start) skips admission and queue limits. With none of the model's replicas up it
        waits at the router for one."""
        now = self.env.now
        if not self.by_model.get(model):
            self.table.reject(r, "no_pool_serves_model", now)
            return
        fits = self._candidates(model, r)
        if isinstance(fits, str):
            self.table.reject(r, fits, now)
            return
        if self.admission is not None and not admitted:
            verdict = self.admission.verdict(r, now, lambda: self.waiting_per_replica(model))
            if verdict is not None:
                self.table.end(r, REJECTED if verdict[0] == "rejected" else SHED, verdict[1], now)
                return
        limit = None if admitted else self.queue_limit
        if self.central:
            queue = self.backlog[model]
            if limit is not None and len(queue) >= limit:
                self.table.reject(r, "queue_full", now)
                return
            queue.append(r)
            self._queued_at[r] = now
            self._pump(model)
            return
        if fits is None:
            self.parked[model].append(r)
            self._parked_at[r] = now
            self.starved(model)
            return
        self._current = r
        rep = self._choose(model, *fits)
        if limit is not None and rep.waiting_count() >= limit:
            self.table.reject(r, "queue_full", now)
            return
        self.deliver(rep, r)

    # ---- replicas going down and coming up ----------------------------------------------
    def take_down(self, reps: list[Replica]) -> list[int]:
        """Replicas `reps` fail together: the requests they held are sent again (to the
        others), or fail with a reason. Returns them."""
        for rep in reps:
            self._set_up(rep, False)
        lost = [r for rep in reps for r in rep.fail()]
        for r in lost:
            self.lost(r)
        return lost

    def lost(self, r: int) -> None:
        """Request r's replica went down before serving it: retry it, if it has retries left."""
        model = self.model_of_request(r)
        if self.retry_limit == 0:
            self.table.end(r, FAILED, "replica_failed", self.env.now)
        elif self.table.retries[r] >= self.retry_limit:
            self.table.end(r, FAILED, "retries_exhausted", self.env.now)
        else:
            self.table.retries[r] += 1
            self.arrive(r, model, admitted=True)

    def bring_up(self, rep: Replica) -> None:
        """Replica rep is ready to serve: requests waiting for its model go now."""
        self._set_up(rep, True)
        model = self.model_of[rep.index]
        parked, self.parked[model] = self.parked[model], []
        for r in parked:
            self.table.start_wait[r] += self.env.now - self._parked_at.pop(r)
            self.arrive(r, model, admitted=True)
        if self.central:
            since = self._none_up_since.pop(model, None)
            if since is not None:
                for r in self.backlog[model]:
                    self.table.start_wait[r] += self.env.now - max(since, self._queued_at[r])
            self._pump(model)

    def stop(self, rep: Replica) -> None:
        """Take rep out of rotation (scaling in): it finishes what it holds, takes nothing new."""
        self._set_up(rep, False)

    def _set_up(self, rep: Replica, up: bool) -> None:
        if rep.up != up:
            self.down[self.model_of[rep.index]] += -1 if up else 1
        rep.up = up

    def waiting_per_replica(self, model: str) -> float:
        """Requests waiting for model's replicas (in their queues and the router's), per replica."""
        reps = [rep for rep in self.by_model[model] if rep.up]
        waiting = sum(rep.waiting_count() for rep in reps) + len(self.backlog[model]) + len(self.parked[model])
        return waiting / max(len(reps), 1)

    def deliver(self, rep: Replica, r: int) -> None:
        """Hand request r to replica rep (after its payload has crossed the fabric, when the
        scenario has ingress: set by the simulation)."""
        rep.submit(r)

    def _candidates(self, model: str, r: int):
        """The replicas that are up and can serve request r (a pool's replicas share their
        limits), with their indices; or why none can; or None while none is up."""
        spans = self.pools[model]
        reps = self.by_model[model]
        ok = [(a, b) for first, a, b in spans if self._admissible(first, r) is None]
        if not ok:
            return self._admissible(spans[0][0], r)
        if len(ok) == len(spans):
            fit, idx = reps, self.indices[model]
        else:
            idx = self._as_array(self.indices[model])
            fit, idx = [rep for a, b in ok for rep in reps[a:b]], np.concatenate([idx[a:b] for a, b in ok])
        if not self.down[model]:
            return fit, idx
        up = [k for k, rep in enumerate(fit) if rep.up]
        if not up:
            return None
        return [fit[k] for k in up], self._as_array(idx)[up]

    @staticmethod
    def _as_array(idx) -> np.ndarray:
        return np.arange(idx.start, idx.stop) if isinstance(idx, slice) else idx

    def _admissible(self, rep: Replica, r: int) -> str | None:
        """Why replica `rep` can never serve request r, or None if it can."""
        dep = rep.dep
        p, n = int(self.table.prompt[r]), int(self.table.output[r])
        if dep.model.max_context is not None and p + n > dep.model.max_context:   # None: a diffusion model
            return "exceeds_context"
        if dep.blocks_for(p + n - 1) > dep.total_blocks or (rep.strict_admission and not rep.fits_alone(r)):
            return "exceeds_kv_cache"
        if (rep.static or not rep.chunked) and p > rep.max_tokens:
            return "prompt_exceeds_batch_tokens"
        return None

    def _loads(self, idx) -> np.ndarray:
        """Outstanding requests of replicas idx (an index array or a slice), from the board;
        entries whose replica's load may have changed since it posted are refreshed first."""
        board = self.board
        stale = np.flatnonzero(board.until[idx] <= self.env.now)
        if len(stale):
            first = idx.start if isinstance(idx, slice) else None
            for k in stale.tolist():
                self.replica[first + k if first is not None else int(idx[k])]._publish_plan()
        return board.outstanding[idx]

    def _choose(self, model: str, candidates: list[Replica], idx: np.ndarray) -> Replica:
        policy = self.policy
        if policy == "round-robin":
            k = self._rr[model]
            self._rr[model] = k + 1
            return candidates[k % len(candidates)]
        if policy == "random":
            return candidates[int(self.rng.integers(len(candidates)))]
        if policy == "least-outstanding":
            return candidates[int(np.argmin(self._loads(idx)))]
        if policy == "least-kv":
            return min(candidates, key=lambda rep: rep.kv_load())
        if policy == "power-of-two":
            if len(candidates) == 1:
                return candidates[0]
            a, b = self.rng.choice(len(candidates), 2, replace=False)
            la, lb = self._loads(np.asarray(self._as_array(idx)[[a, b]]))
            return candidates[int(a)] if la <= lb else candidates[int(b)]
        if policy == "weighted":
            return candidates[self._weighted(idx)]
        if policy == "lowest-latency":
            return candidates[int(np.argmin(self._expected_latency(idx)))]
        if policy == "lowest-cost":
            return candidates[self._cheapest(idx)]
        if policy == "cache-aware":
            return self._cache_aware(model, candidates, idx)
        raise ValueError(f"unknown routing policy {policy}")

    def _cache_aware(self, model: str, candidates: list[Replica], idx) -> Replica:
        """While the load is balanced, the replica whose prefix cache holds most of the prompt
        (when that is at least cache_threshold of it); else the least loaded."""
        load = self._loads(idx)
        least = candidates[int(np.argmin(load))]
        lo, hi = int(load.min()), int(load.max())
        if hi - lo > self.cache_aware[1] and hi > self.cache_aware[2] * lo:
            return least
        cache = least.cache
        if cache is None or cache.directory is None:
            return least
        r = self._current
        prompt = int(self.table.prompt[r])
        held = best_holders(cache.directory, cache.index, r, prompt, cache.bs)
        if len(candidates) < len(self.by_model[model]):
            allowed = set(self._as_array(idx).tolist())
            held = {i: n for i, n in held.items() if i in allowed}
        if not held:
            return least
        outstanding = self.board.outstanding
        best = max(held, key=lambda i: (held[i], -outstanding[i]))
        if held[best] < self.cache_aware[0] * prompt:
            return least
        return self.replica[best]

    def _weighted(self, idx) -> int:
        """A pool drawn by weight among the candidates' pools, then its least-loaded replica."""
        idx = self._as_array(idx)
        pools = self.pool_id[idx]
        present = np.unique(pools)
        w = self.weight[present]
        if w.sum() <= 0:
            w = np.ones(len(present))
        pick = present[int(self.rng.choice(len(present), p=w / w.sum()))]
        mine = np.flatnonzero(pools == pick)
        return int(mine[np.argmin(self._loads(idx[mine]))])

    def _expected_latency(self, idx) -> np.ndarray:
        """Expected end-to-end latency of this request on each candidate: its prefill, its
        output tokens at the decode step of the batch it would join, and, past a full batch,
        waiting for slots to free (each slot frees after about one request's decode)."""
        idx = self._as_array(idx)
        r = self._current
        p, n = float(self.table.prompt[r]), float(self.table.output[r])
        load = self._loads(idx)
        cap = self.max_seqs[idx]
        pools = self.pool_id[idx]
        batch = np.minimum(load + 1, cap)
        step = np.array([self.fig[k].step[b - 1] for k, b in zip(pools.tolist(), batch.tolist(), strict=True)])
        full = np.array([self.fig[k].step[-1] for k in pools.tolist()])
        queued = np.maximum(load + 1 - cap, 0) / cap
        return self.prefill_rate[pools] * p + n * step + queued * n * full

    def _cheapest(self, idx) -> int:
        """The least-loaded replica of the cheapest pool that has a free batch slot; when all
        are full, the replica with the lowest load for its size."""
        idx = self._as_array(idx)
        load = self._loads(idx)
        room = load < self.max_seqs[idx]
        if not room.any():
            return int(np.argmin(load / self.max_seqs[idx]))
        cost = np.where(room, self.usd_per_token[self.pool_id[idx]], np.inf)
        best = np.flatnonzero(cost == cost.min())
        return int(best[np.argmin(load[best])])

    def _pump(self, model: str) -> None:
        queue = self.backlog[model]
        while queue:
            r = queue[0]
            fits = self._candidates(model, r)
            if fits is None:
                self._none_up_since.setdefault(model, self.env.now)
                self.starved(model)
                return
            reps, idx = fits
            room = np.flatnonzero(self._loads(idx) < self.max_seqs[idx])
            if not len(room):
                return
            queue.popleft()
            del self._queued_at[r]
            self._current = r
            self.deliver(self._choose(model, [reps[i] for i in room.tolist()], self._as_array(idx)[room]), r)

    def _capacity_freed(self, rep: Replica) -> None:
        if self.central:
            model = self.model_of.get(rep.index)
            if model is not None and self.backlog[model]:
                self._pump(model)


class ClassQueue:
    """The router's queue when requests have classes: highest class first, then oldest (a
    heap keyed by (-class, arrival order)); reads like the deque it replaces."""

    def __init__(self, priority: np.ndarray):
        self.priority = priority
        self.heap: list[tuple[int, int, int]] = []
        self.order = 0

    def append(self, r: int) -> None:
        heapq.heappush(self.heap, (-int(self.priority[r]), self.order, r))
        self.order += 1

    def popleft(self) -> int:
        return heapq.heappop(self.heap)[2]

    def __getitem__(self, k: int) -> int:
        if k != 0:
            raise IndexError("only the head of a class queue can be read")
        return self.heap[0][2]

    def __len__(self) -> int:
        return len(self.heap)

    def __iter__(self):
        """Every request waiting, in no particular order."""
        return (r for _, _, r in self.heap)
