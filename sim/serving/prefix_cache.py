"""Prefix caching: KV blocks of finished requests kept in the replica's KV budget for later
requests that start with the same tokens (vLLM's automatic prefix caching, SGLang's radix
cache).

What can be reused is known from the workload (`PrefixIndex`): a session's call extends the
context of an earlier call (a conversation's next turn, an agent's next round), and calls
may share a system prompt. The cache is a tree of entries, each a run of whole KV blocks
that extends its parent's: a system prompt, then a conversation's turns under it.

Blocks and the compiled scheduler (`scheduler.engine_run`) meet in three numbers per
request and one per replica:
  cached[r]  prompt tokens of r found in the cache when it was queued (whole blocks, less
             than its prompt: the last token is always computed, as engines do); its
             prefill starts after them and its own blocks exclude them
  keep[r]    r's own blocks that stay cached when it completes, instead of being freed
  counters[EVICT]  blocks of entries no queued or running request uses: the engine takes them
             back when its free pool runs short
An entry a queued or running request reads is pinned: its blocks are neither free nor
evictable. The engine only counts evictable blocks; which entries lose blocks is decided
here, least recently used leaf first, block by block from the end (a truncated entry still
serves the shorter prefix). After every commit the cache and the engine's count are
reconciled (`reconcile`); pins and unpins change the count, so they are applied only where
no plan is running (`Replica._plan` from a boundary), which keeps plans equal to stepping.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from . import engine_state as es

MAX_CHAIN = 64   # earlier calls a lookup walks back through to find a cached ancestor


class PrefixIndex:
    """Per request of a run: the call whose context it extends (`prefix_of`, -1: none) and its
    shared system prompt (`system` key, -1: none, of `system_len` tokens); `extended[r]`:
    some later call extends r's context, so r's blocks are worth keeping."""

    def __init__(self, n: int, prefix_of=None, system=None, system_len=None):
        self.prefix_of = np.full(n, -1, np.int64) if prefix_of is None else np.asarray(prefix_of, np.int64)
        self.system = np.full(n, -1, np.int64) if system is None else np.asarray(system, np.int64)
        self.system_len = np.zeros(n, np.int64) if system_len is None else np.asarray(system_len, np.int64)
        self.extended = np.zeros(n, bool)
        self.extended[self.prefix_of[self.prefix_of >= 0]] = True

    def reusable(self) -> np.ndarray:
        """Requests that could find something in a cache."""
        return (self.prefix_of >= 0) | (self.system >= 0)

    @staticmethod
    def system_key(k: int) -> int:
        """Cache key of system prompt k (request contexts are keyed by their request id)."""
        return -2 - k


@dataclass(eq=False)
class Entry:
    key: int
    parent: Entry | None
    tokens: int          # tokens covered, its ancestors' included (whole blocks)
    own: int             # blocks it holds beyond its parent's
    stamp: int = 0       # last use, for LRU
    pins: int = 0        # queued or running requests that read it or a descendant
    children: int = 0


class Directory:
    """Which replicas hold which keys (for cache-aware routing): key -> {replica: entry}."""

    def __init__(self):
        self.holders: dict[int, dict[int, Entry]] = {}

    def add(self, key: int, replica: int, entry: Entry) -> None:
        self.holders.setdefault(key, {})[replica] = entry

    def remove(self, key: int, replica: int) -> None:
        held = self.holders.get(key)
        if held is not None:
            held.pop(replica, None)
            if not held:
                del self.holders[key]


class PrefixCache:
    def __init__(self, replica: int, block_size: int, index: PrefixIndex, table, directory: Directory | None = None):
        self.replica = replica
        self.bs = block_size
        self.index = index
        self.table = table
        self.directory = directory
        self.entries: dict[int, Entry] = {}
        self.evictable = 0             # blocks of entries nobody pins (the engine's counters[EVICT])
        self.leaves: list[tuple[int, int]] = []   # heap of (stamp, key): eviction candidates
        self.clock = 0
        self.reader: dict[int, Entry] = {}        # request -> the entry it pinned
        self.unpin_later: list[Entry] = []        # pins of finished requests, dropped at a boundary
        # what happened, for the summary
        self.lookups = 0
        self.hits = 0
        self.hit_tokens = 0
        self.evicted_blocks = 0

    # ---- lookups ------------------------------------------------------------------------
    def _candidates(self, r: int):
        """Entries that hold a prefix of request r's prompt: the nearest cached ancestor along
        the chain of calls it extends, and its system prompt."""
        idx = self.index
        q = int(idx.prefix_of[r])
        for _ in range(MAX_CHAIN):
            if q < 0:
                break
            e = self.entries.get(q)
            if e is not None:
                yield e
                break
            q = int(idx.prefix_of[q])
        if idx.system[r] >= 0:
            e = self.entries.get(PrefixIndex.system_key(int(idx.system[r])))
            if e is not None:
                yield e

    def _usable(self, r: int, e: Entry) -> int:
        """Tokens of entry e request r can skip: whole blocks, short of its last prompt token."""
        limit = (int(self.table.prompt[r]) - 1) // self.bs * self.bs
        return min(e.tokens, limit)

    def match(self, r: int) -> int:
        """Prompt tokens of r this cache would serve now (no side effects)."""
        return max((self._usable(r, e) for e in self._candidates(r)), default=0)

    def lookup(self, r: int, counters: np.ndarray) -> None:
        """A request queued here: take what the cache holds of its prompt (pinning it), and
        decide how many of its own blocks to keep when it completes. Only where no plan is
        running: it changes counters[EVICT]."""
        idx, table = self.index, self.table
        best, got = None, 0
        for e in self._candidates(r):
            u = self._usable(r, e)
            if u > got:
                best, got = e, u
        if idx.prefix_of[r] >= 0 or idx.system[r] >= 0:
            self.lookups += 1
        table.cached[r] = got
        if best is not None:
            self.hits += 1
            self.hit_tokens += got
            self._pin(best, counters)
            self.reader[r] = best
        # blocks to keep: its whole context when a later call extends it, else the part of
        # its system prompt not cached yet (nothing is kept past a partly read entry)
        base = got // self.bs
        if best is not None and got < best.tokens:
            keep = 0
        elif idx.extended[r]:
            keep = (int(table.prompt[r] + table.output[r]) - 1) // self.bs - base
        elif idx.system[r] >= 0:
            keep = int(idx.system_len[r]) // self.bs - base
        else:
            keep = 0
        table.keep_blocks[r] = max(keep, 0)

    def _pin(self, e: Entry, counters: np.ndarray) -> None:
        self.clock += 1
        while e is not None:
            if e.pins == 0:
                self.evictable -= e.own
                counters[es.EVICT] -= e.own
            e.pins += 1
            e.stamp = self.clock
            e = e.parent

    def _unpin(self, e: Entry, counters: np.ndarray) -> None:
        while e is not None:
            e.pins -= 1
            if e.pins == 0:
                self.evictable += e.own
                counters[es.EVICT] += e.own
                if e.children == 0:
                    heapq.heappush(self.leaves, (e.stamp, e.key))
            e = e.parent

    def release(self, counters: np.ndarray) -> None:
        """At a boundary with no plan running: drop the pins of requests that have finished."""
        for e in self.unpin_later:
            self._unpin(e, counters)
        self.unpin_later.clear()

    # ---- completions ----------------------------------------------------------------------
    def finished(self, r: int) -> None:
        """Request r completed: the engine moved min(keep[r], its blocks) to the evictable
        count; they become entries (a new system prompt, r's context) or, where another
        request cached the same prefix first, duplicates that `reconcile` frees."""
        idx, bs = self.index, self.bs
        kept = int(self.table.keep_blocks[r])
        parent = self.reader.pop(r, None)
        if parent is not None:
            self.unpin_later.append(parent)
        if kept <= 0:
            return
        base = int(self.table.cached[r]) // bs
        if idx.system[r] >= 0:
            s_blocks = int(idx.system_len[r]) // bs
            key = PrefixIndex.system_key(int(idx.system[r]))
            if base < s_blocks:
                own = min(kept, s_blocks - base)
                held = self.entries.get(key)
                parent = held if held is not None else self._add(key, parent, own)
                kept -= own   # a duplicate of a system prompt cached meanwhile is freed
                base += own
        if (idx.extended[r] and kept > 0 and r not in self.entries
                and (parent is None or parent.tokens == base * bs)):
            self._add(r, parent, kept)

    def _add(self, key: int, parent: Entry | None, own: int) -> Entry:
        self.clock += 1
        e = Entry(key, parent, (parent.tokens if parent else 0) + own * self.bs, own, self.clock)
        self.entries[key] = e
        self.evictable += own
        if parent is not None:
            parent.children += 1
        heapq.heappush(self.leaves, (e.stamp, key))
        if self.directory is not None:
            self.directory.add(key, self.replica, e)
        return e

    # ---- the engine's count ------------------------------------------------------------------
    def reconcile(self, counters: np.ndarray) -> None:
        """After a commit: blocks the engine took back from the evictable count come off the
        least recently used entries; evictable blocks no entry holds (duplicates) are free."""
        if counters[es.EVICT] < self.evictable:
            self._evict(self.evictable - int(counters[es.EVICT]))
        elif counters[es.EVICT] > self.evictable:
            extra = int(counters[es.EVICT]) - self.evictable
            counters[es.EVICT] -= extra
            counters[es.FREE] += extra

    def _evict(self, blocks: int) -> None:
        self.evicted_blocks += blocks
        while blocks > 0:
            if not self.leaves:
                raise RuntimeError("prefix cache: the engine evicted more blocks than the cache holds")
            stamp, key = heapq.heappop(self.leaves)
            e = self.entries.get(key)
            if e is None or e.stamp != stamp or e.pins or e.children:
                continue   # stale heap entry
            take = min(e.own, blocks)
            e.own -= take
            e.tokens -= take * self.bs
            self.evictable -= take
            blocks -= take
            if e.own > 0:
                heapq.heappush(self.leaves, (e.stamp, key))
                continue
            del self.entries[key]
            if self.directory is not None:
                self.directory.remove(key, self.replica)
            p = e.parent
            if p is not None:
                p.children -= 1
                if p.children == 0 and p.pins == 0:
                    heapq.heappush(self.leaves, (p.stamp, p.key))

    def clear(self) -> None:
        """The replica failed: its device memory, and every entry in it, is gone."""
        if self.directory is not None:
            for key in self.entries:
                self.directory.remove(key, self.replica)
        self.entries.clear()
        self.leaves.clear()
        self.reader.clear()
        self.unpin_later.clear()
        self.evictable = 0

    def blocks_held(self) -> int:
        return sum(e.own for e in self.entries.values())


def best_holders(directory: Directory, index: PrefixIndex, r: int, prompt: int, block_size: int) -> dict[int, int]:
    """Replica -> prompt tokens of request r its cache would serve (replicas with a hit only),
    from the nearest cached call along r's chain and its system prompt."""
    limit = (prompt - 1) // block_size * block_size
    best: dict[int, int] = {}
    q = int(index.prefix_of[r])
    for _ in range(MAX_CHAIN):
        if q < 0:
            break
        for rep, e in directory.holders.get(q, {}).items():
            if rep not in best:
                best[rep] = min(e.tokens, limit)
        q = int(index.prefix_of[q])
    if index.system[r] >= 0:
        for rep, e in directory.holders.get(PrefixIndex.system_key(int(index.system[r])), {}).items():
            best[rep] = max(best.get(rep, 0), min(e.tokens, limit))
    return best


def attach_prefix_caches(engine_pools, replicas, table, arrivals) -> PrefixIndex | None:
    """Replicas of pools with engine.prefix_cache get a cache (`engine_pools`: each replica's
    pool); those serving one model share a directory of who holds what (cache-aware routing)."""
    index = None
    directories: dict[str, Directory] = {}
    for rep, pool in zip(replicas, engine_pools, strict=True):
        if not pool.spec.serve.engine.prefix_cache:
            continue
        if index is None:
            index = prefix_index(table.n, arrivals)
        directory = directories.setdefault(pool.model_key, Directory())
        rep.cache = PrefixCache(rep.index, rep.bs, index, table, directory)
    return index


def prefix_index(n: int, arrivals) -> PrefixIndex:
    """What each request of the run could reuse: calls that extend an earlier call's context
    (the session plan), and shared system prompts (of sessions and of plain streams)."""
    plan = arrivals.sessions
    prefix_of = plan.prefix_of if plan is not None else None
    system = np.full(n, -1, np.int64)
    system_len = np.zeros(n, np.int64)
    for source in (plan, arrivals):
        if source is not None and source.system is not None:
            has = source.system >= 0
            system[has], system_len[has] = source.system[has], source.system_len[has]
    return PrefixIndex(n, prefix_of, system, system_len)
