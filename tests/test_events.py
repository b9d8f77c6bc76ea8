"""The lifecycle's topics (sim.core.events): order of subscribers, and every request's end
published exactly once."""
from __future__ import annotations

import os
from collections import Counter

from sim import simulation as S
from sim.core.events import Topic
from sim.core.metrics import IN_FLIGHT
from sim.scenario import load_scenario

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_subscribers_are_called_in_the_order_they_subscribed():
    heard = []
    topic = Topic("ended")
    assert not topic
    for k in range(3):
        topic.subscribe(lambda r, when, k=k: heard.append((k, r, when)))
    topic(7, 1.5)
    assert topic and heard == [(0, 7, 1.5), (1, 7, 1.5), (2, 7, 1.5)]


def test_every_request_that_ends_is_announced_once():
    """A subscriber to the request table's `ended` hears each request that completed, was
    rejected, shed or failed, once; those still in flight, never."""
    scenario = load_scenario(os.path.join(ROOT, "scenarios", "failure-rack.yaml"), ["duration=60s"])
    w = S.World(scenario, scenario.spec.seed)
    S.draw_demand(w)
    heard = Counter()
    w.table.ended.subscribe(lambda r, when: heard.update([r]))
    for stage in (S.build_replicas, S.build_router):
        stage(w)
    S.build_fabric(w, trace=False)
    for stage in (S.build_operations, S.start_demand, S.run):
        stage(w)
    ended = {int(r) for r in range(w.table.n)
             if w.table.state[r] != IN_FLIGHT and w.table.arrival[r] == w.table.arrival[r]}
    assert set(heard) == ended and max(heard.values()) == 1
    assert len(ended) > 0
