"""Prefix caching: a hit skips that part of the prefill (hand case), the cache evicts least
recently used entries block by block, blocks are conserved, plans equal stepping with the
cache and with cache-aware routing, and the summary reports hits and savings."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from sim.core.metrics import COMPLETED
from sim.results.report import requests_frame
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.serving import engine_state as es
from sim.serving import replica as replica_module
from sim.serving.prefix_cache import PrefixCache, PrefixIndex
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from sim.timing import kernels
from tests.conftest import BASE, ROOT

CONVERSATION = {  # two turns: 1000-token prompt, 100-token answer; 5 s later 50 more tokens
    "context": 1000, "rounds": 2, "output_tokens": 100,
    "tools": [{"name": "user", "delay": {"dist": "fixed", "value": "5s"}, "result_tokens": 50}],
}


def conversation_scenario(write_scenario, cache: bool, **engine):
    base = copy.deepcopy(BASE)
    base["fleet"][0]["count"] = 1
    base["fleet"][0]["serve"]["engine"] = {"max_batch_seqs": 32, "chunked_prefill": None, "prefix_cache": cache,
                                           **engine}
    base["workload"] = [{"name": "chat", "rate": "1/s", "requests": 1, "session": CONVERSATION}]
    return write_scenario(base=base)


def test_a_hit_shortens_ttft_by_the_saved_prefill(write_scenario):
    runs = {cache: simulate(load_scenario(conversation_scenario(write_scenario, cache))) for cache in (False, True)}
    t_off, t_on = runs[False].table, runs[True].table
    assert t_off.n == t_on.n == 2 and (t_on.state == COMPLETED).all()
    second = 1                              # the second turn: prompt 1000 + 100 + 50
    assert t_on.prompt[second] == 1150
    # the first turn's context (1099 tokens in the KV cache when it ends) kept in whole blocks
    bs = 16
    cached = (1000 + 100 - 1) // bs * bs
    assert t_on.cached.tolist() == [0, cached]
    p = runs[True].scenario.pools[0].deployment.params
    whole = np.array([1150], np.int64)
    empty = np.zeros(0, np.int64)
    full = kernels.batch_time(whole, np.zeros(1, np.int64), whole, empty, p)
    rest = kernels.batch_time(np.array([1150 - cached], np.int64), np.array([cached], np.int64), whole, empty, p)
    ttft = lambda t: t.first_token[second] - t.arrival[second]      # noqa: E731
    assert ttft(t_off) == pytest.approx(full, rel=1e-12)             # the replica is idle: prefill alone
    assert ttft(t_on) == pytest.approx(rest, rel=1e-12)
    assert ttft(t_off) - ttft(t_on) == pytest.approx(full - rest, rel=1e-9)
    assert full - rest > 0.5 * full          # most of the prompt was cached
    # the first turn is identical either way
    assert t_on.first_token[0] == t_off.first_token[0]

    s = summarize(runs[True])["prefix_cache"][0]
    assert s["requests"] == 2 and s["reusable_requests"] == 1 and s["hits"] == 1 and s["hit_rate"] == 1.0
    assert s["cached_tokens"] == cached
    assert s["prefill_seconds_saved"] == pytest.approx(full - rest, rel=1e-9)
    assert s["prefill_pflop_saved"] == pytest.approx(
        2 * runs[True].scenario.pools[0].deployment.model.computed_active_params() * cached / 1e15)
    assert requests_frame(runs[True])["cached_tokens"].tolist() == [0, cached]
    assert summarize(runs[False])["prefix_cache"] is None


def _lengths_cache(n_requests: int) -> tuple[PrefixCache, np.ndarray]:
    class Table:
        prompt = np.full(n_requests, 1000, np.int64)
        output = np.full(n_requests, 100, np.int64)
        cached = np.zeros(n_requests, np.int64)
        keep_blocks = np.zeros(n_requests, np.int64)
    index = PrefixIndex(n_requests, prefix_of=[-1, -1, 0, -1][:n_requests] + [-1] * max(0, n_requests - 4))
    st = np.zeros(es.COUNTERS, np.int64)
    return PrefixCache(0, 16, index, Table()), st


def test_eviction_takes_least_recently_used_leaves_block_by_block():
    cache, st = _lengths_cache(4)
    index = cache.index
    index.extended[:] = [True, True, False, False]
    for r in (0, 1):                      # two conversations' first turns finish; 0 is older
        cache.lookup(r, st)
        assert cache.table.keep_blocks[r] == (1000 + 100 - 1) // 16 == 68
        st[es.EVICT] += cache.table.keep_blocks[r]     # what the engine does at completion
        cache.finished(r)
    cache.reconcile(st)
    assert cache.evictable == st[es.EVICT] == 136
    st[es.EVICT] -= 10                   # the engine took 10 blocks back
    cache.reconcile(st)
    assert cache.entries[0].own == 58 and cache.entries[1].own == 68   # from the older entry's end
    assert cache.entries[0].tokens == 58 * 16
    # request 2 extends request 0: it finds the truncated entry and pins it
    cache.lookup(2, st)
    assert cache.table.cached[2] == 58 * 16
    assert st[es.EVICT] == cache.evictable == 68       # pinned blocks are not evictable
    st[es.EVICT] -= 68
    cache.reconcile(st)                   # now only entry 1 could go
    assert 1 not in cache.entries and cache.entries[0].own == 58
    cache.finished(2)                     # done: its pin is dropped at the next boundary
    assert cache.entries[0].pins == 1
    cache.release(st)
    assert cache.entries[0].pins == 0 and st[es.EVICT] == cache.evictable == 58


def _collect_replicas(monkeypatch) -> list:
    made = []
    init = replica_module.Replica.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        made.append(self)
    monkeypatch.setattr(replica_module.Replica, "__init__", spy)
    return made


def multiturn_scenario(write_scenario, policy: str, fast: bool, replicas: int, rate: str) -> str:
    with open(f"{ROOT}/workloads/chat-multiturn.yaml") as fh:
        session = yaml.safe_load(fh)["session"]
    base = copy.deepcopy(BASE)
    base["duration"] = "60s"
    base["fleet"][0]["count"] = replicas
    base["fleet"][0]["serve"]["engine"].update(prefix_cache=True, fast_path=fast, max_batch_seqs=64,
                                               memory_utilization=0.27)   # a small KV cache: evictions
    base["router"]["policy"] = policy
    base["workload"] = [{"name": "chat", "rate": rate, "session": session}]
    return write_scenario(base=base)


@pytest.mark.parametrize("policy,replicas,rate", [("least-outstanding", 1, "4/s"), ("cache-aware", 3, "9/s")])
def test_plans_equal_stepping_and_blocks_are_conserved(write_scenario, monkeypatch, policy, replicas, rate):
    made = _collect_replicas(monkeypatch)
    fast = simulate(load_scenario(multiturn_scenario(write_scenario, policy, True, replicas, rate)))
    step = simulate(load_scenario(multiturn_scenario(write_scenario, policy, False, replicas, rate)))
    for col in ("replica", "admitted", "first_token", "finished", "cached", "preemptions"):
        assert np.array_equal(getattr(fast.table, col), getattr(step.table, col), equal_nan=True), col
    t = fast.table
    assert (t.state == COMPLETED).all()
    assert (t.cached > 0).mean() > 0.5
    assert sum(r.evicted_blocks for r in fast.replicas) > 0          # the cache was under pressure
    for rep in made:
        c = rep.cache
        c.release(rep.committed.counters)
        # every block is free or held by the cache, and the engine's count is the cache's
        assert rep.committed.counters[es.RUNNING] == 0
        assert rep.committed.counters[es.FREE] + rep.committed.counters[es.EVICT] == rep.total_blocks
        assert rep.committed.counters[es.EVICT] == c.evictable == c.blocks_held()
        assert all(e.pins == 0 for e in c.entries.values())


def test_cache_aware_routing_finds_more_of_the_context(write_scenario):
    hit = {}
    for policy in ("least-outstanding", "cache-aware"):
        r = simulate(load_scenario(multiturn_scenario(write_scenario, policy, True, 4, "12/s")))
        hit[policy] = summarize(r)["prefix_cache"][0]["token_hit_rate"]
    assert hit["cache-aware"] > hit["least-outstanding"] + 0.02


def test_prefix_cache_settings_are_checked(write_scenario):
    base = copy.deepcopy(BASE)
    base["router"]["policy"] = "cache-aware"
    with pytest.raises(ScenarioError) as e:
        load_scenario(write_scenario(base=base))
    assert "router.policy" in str(e.value) and "prefix_cache" in str(e.value)
    base = copy.deepcopy(BASE)
    base["fleet"][0]["serve"]["engine"].update(prefix_cache=True, batching="static")
    with pytest.raises(ScenarioError) as e:
        load_scenario(write_scenario(base=base))
    assert "prefix_cache needs continuous batching" in str(e.value)


def test_a_plain_streams_system_prompts_are_cached(write_scenario):
    """`system_prompt:` on a plain stream: every prompt starts with one of its variants, and
    with the cache each variant is prefilled about once per replica."""
    base = copy.deepcopy(BASE)
    base["fleet"][0]["count"] = 1
    base["fleet"][0]["serve"]["engine"].update(prefix_cache=True)
    base["workload"] = [{"name": "app", "rate": "5/s", "prompt_tokens": 200, "output_tokens": 20,
                         "system_prompt": {"tokens": 1500, "variants": 3}}]
    res = simulate(load_scenario(write_scenario(base=base)))
    t = res.table
    assert (t.prompt == 1700).all() and (t.state == COMPLETED).all()
    assert (t.cached[t.cached > 0] == 1500 // 16 * 16).all()
    misses = int((t.cached == 0).sum())
    assert 3 <= misses <= 10                # each variant missed until its first copy was cached
    s = summarize(res)["prefix_cache"][0]
    assert s["reusable_requests"] == s["requests"] > 100 and s["hit_rate"] > 0.95
    base["workload"][0]["trace"] = {"path": "x.csv"}
    with pytest.raises(ScenarioError) as e:
        load_scenario(write_scenario(base=base))
    assert "system_prompt: applies to streams that draw prompt_tokens" in str(e.value)
