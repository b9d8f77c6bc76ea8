"""Flow-level fabric: hand cases, max-min fairness as a property, collectives by formula."""
from __future__ import annotations

import math
import os

import networkx as nx
import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.fabric.network import MAX_ECMP_PATHS, Fabric
from sim.scenario import load_scenario
from sim.timing import fair_share, kernels
from tests.conftest import ROOT

GB = 1e9


def finish_times(graph, transfers):
    """Start transfers [(t0, a, b, bytes)] and return when each is delivered."""
    env = simpy.Environment()
    fabric = Fabric(env, graph)
    done = {}

    def start(i, t0, a, b, n):
        yield env.timeout(t0)
        yield fabric.transfer(a, b, n)
        done[i] = env.now

    for i, (t0, a, b, n) in enumerate(transfers):
        env.process(start(i, t0, a, b, n))
    env.run()
    return done, fabric


def line(*links):
    g = nx.Graph()
    for a, b, bw, lat in links:
        g.add_edge(a, b, bandwidth=bw, latency=lat)
    return g


def test_single_flow_is_size_over_bottleneck_plus_latency():
    g = line(("a", "b", 10 * GB, 1e-6), ("b", "c", 5 * GB, 2e-6))
    done, fabric = finish_times(g, [(0.0, "a", "c", 1 * GB)])
    assert done[0] == pytest.approx(1 * GB / (5 * GB) + 3e-6, rel=1e-9)
    assert fabric.bytes.sum() == pytest.approx(2 * GB)  # one byte counted on each of two links


def test_two_flows_share_a_link_and_the_other_link_is_unaffected():
    g = line(("a", "s", 10 * GB, 0.0), ("b", "s", 10 * GB, 0.0), ("s", "d", 10 * GB, 0.0),
             ("x", "y", 10 * GB, 0.0))
    # f0 and f1 share s->d: 5 GB/s each; f0 is 1 GB, f1 2 GB. After f0 ends at 0.2 s,
    # f1 has 1 GB left at 10 GB/s: ends at 0.3 s. f2 on x-y alone: 1 GB at 10 GB/s.
    done, _ = finish_times(g, [(0.0, "a", "d", 1 * GB), (0.0, "b", "d", 2 * GB), (0.0, "x", "y", 1 * GB)])
    assert done[0] == pytest.approx(0.2)
    assert done[1] == pytest.approx(0.3)
    assert done[2] == pytest.approx(0.1)


def test_rates_recomputed_when_a_flow_joins():
    g = line(("a", "b", 10 * GB, 0.0))
    # f0 alone for 0.05 s (0.5 GB), then shares with f1 (5 GB/s each): f0's last 0.5 GB takes 0.1 s
    done, _ = finish_times(g, [(0.0, "a", "b", 1 * GB), (0.05, "a", "b", 1 * GB)])
    assert done[0] == pytest.approx(0.15)
    assert done[1] == pytest.approx(0.05 + 0.1 + 0.05)  # 0.5 GB shared, then 0.5 GB alone


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n_nodes=st.integers(3, 12), n_flows=st.integers(1, 25))
def test_maxmin_fairness_on_random_graphs(seed, n_nodes, n_flows):
    rng = np.random.default_rng(seed)
    g = nx.connected_watts_strogatz_graph(n_nodes, min(4, n_nodes - 1), 0.5, seed=seed)
    for a, b in g.edges:
        g.edges[a, b]["bandwidth"] = float(rng.uniform(1, 10))
    env = simpy.Environment()
    fabric = Fabric(env, g)
    paths = []
    for f in range(n_flows):
        a, b = rng.choice(n_nodes, 2, replace=False)
        paths.append(fabric.route(int(a), int(b), f))
    ptr = np.cumsum([0] + [len(p) for p in paths])
    caps = np.where(rng.random(n_flows) < 0.2, rng.uniform(0.1, 5, n_flows), np.inf)
    rates = fair_share.maxmin_rates(fabric.capacity, ptr, np.concatenate(paths), caps)
    load = np.zeros(len(fabric.capacity))
    for p, r in zip(paths, rates, strict=True):
        load[p] += r
    assert (load <= fabric.capacity * (1 + 1e-9)).all()  # no link over capacity
    for p, r, c in zip(paths, rates, caps, strict=True):
        assert r > 0
        if r >= c * (1 - 1e-9):
            continue  # limited by its own cap
        # a bottleneck: a full link on its path where no other flow gets more
        full = [link for link in p if load[link] >= fabric.capacity[link] * (1 - 1e-9)]
        assert any(max(rr for pp, rr in zip(paths, rates, strict=True) if link in pp) <= r * (1 + 1e-9)
                   for link in full)


def test_ecmp_spreads_flows_over_equal_paths():
    g = line(("a", "s1", 10 * GB, 0.0), ("a", "s2", 10 * GB, 0.0), ("s1", "b", 10 * GB, 0.0),
             ("s2", "b", 10 * GB, 0.0))
    fabric = Fabric(simpy.Environment(), g)
    assert len(fabric.paths("a", "b")) == 2
    used = {tuple(fabric.route("a", "b", f)) for f in range(32)}
    assert len(used) == 2


def collective_time(graph, bw, lat, method, size) -> float:
    """Time of one collective over all nodes of a graph whose links all have bw and lat."""
    nx.set_edge_attributes(graph, bw, "bandwidth")
    nx.set_edge_attributes(graph, lat, "latency")
    env = simpy.Environment()
    fabric = Fabric(env, graph)
    env.process(getattr(fabric, method)(list(graph.nodes), size))
    env.run()
    return env.now


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ring_allreduce_matches_formula(n):
    bw, lat, size = 50 * GB, 2e-6, 256e6
    t = collective_time(nx.cycle_graph(n) if n > 2 else nx.path_graph(2), bw, lat, "ring_allreduce", size)
    assert t == pytest.approx(2 * (n - 1) / n * size / bw + 2 * (n - 1) * lat, rel=0.01)
    assert t == pytest.approx(kernels.ring_allreduce_time(size, n, bw, lat), rel=0.01)


def test_tree_allreduce_matches_formula():
    n, bw, lat, size = 8, 50 * GB, 2e-6, 64e6
    t = collective_time(nx.complete_graph(n), bw, lat, "tree_allreduce", size)
    assert t == pytest.approx(2 * math.ceil(math.log2(n)) * (size / bw + lat), rel=1e-6)


def test_contention_slows_a_collective():
    n, bw, size = 4, 50 * GB, 256e6

    def collective_time(competing: bool) -> float:
        g = nx.cycle_graph(n)
        nx.set_edge_attributes(g, bw, "bandwidth")
        nx.set_edge_attributes(g, 0.0, "latency")
        env = simpy.Environment()
        fabric = Fabric(env, g)
        ended = {}

        def run():
            yield env.process(fabric.ring_allreduce(list(range(n)), size))
            ended["t"] = env.now

        env.process(run())
        if competing:
            fabric.transfer(0, 1, 10 * GB)  # shares the ring's 0->1 link
        env.run()
        return ended["t"]

    alone = collective_time(False)
    assert alone == pytest.approx(2 * (n - 1) / n * size / bw)
    # every step waits for its slowest flow, the one sharing 0->1 at half rate
    assert collective_time(True) == pytest.approx(2 * alone, rel=1e-6)


def test_link_log_conserves_bytes():
    g = line(("a", "b", 10 * GB, 0.0), ("b", "c", 10 * GB, 0.0))
    done, fabric = finish_times(g, [(0.0, "a", "c", 3 * GB), (0.5, "c", "a", 2 * GB)])
    frame = fabric.link_frame()
    assert frame["bytes"].sum() == pytest.approx(2 * (3 + 2) * GB)
    assert (frame["utilization"] <= 1 + 1e-9).all()


def test_paths_from_one_search_per_endpoint_equal_networkx():
    """Fabric.paths serves a pair from the lesser endpoint's search (reversed when needed):
    from the lesser endpoint, networkx's first MAX_ECMP_PATHS paths in its order; from the
    other, as many, all of them shortest paths."""
    graph = load_scenario(os.path.join(ROOT, "scenarios", "fabric-512-chat.yaml")).spec.topology.graph()
    fabric = Fabric(simpy.Environment(), graph)
    pairs = [("frontend", "s5.cpu0"), ("s5.cpu0", "frontend"), ("s3.gpu2", "s40.gpu6"), ("s40.gpu6", "s3.gpu2")]
    for a, b in pairs:
        ours = [tuple(p.tolist()) for p in fabric.paths(a, b)]
        theirs = [tuple(fabric.link_index[(u, v)] for u, v in zip(n, n[1:], strict=False))
                  for n in nx.all_shortest_paths(graph, a, b)]
        assert len(ours) == min(len(theirs), MAX_ECMP_PATHS) > 1
        if a < b:
            assert ours == theirs[:MAX_ECMP_PATHS]
        else:
            assert set(ours) <= set(theirs) and len(set(ours)) == len(ours)


def test_a_lone_flow_gets_what_the_maxmin_kernel_gives():
    g = line(("a", "b", 10 * GB, 0.0), ("b", "c", 4 * GB, 0.0))
    done, fabric = finish_times(g, [(0.0, "a", "c", 2 * GB)])
    links = fabric.route("a", "c", 0)
    rate = fair_share.maxmin_rates(fabric.capacity, np.array([0, len(links)]), links, np.array([math.inf]))[0]
    assert rate == 4 * GB and done[0] == pytest.approx(2 * GB / rate)
    assert fabric.bytes[links].tolist() == [2 * GB, 2 * GB]  # per-route accounting spread over its links
