"""Sleeping until an absolute instant.

`env.timeout(t - env.now)` lands on `now + (t - now)`, which in floating point can differ
from `t` by one ulp. The fast path computes end times as `t = t + dt`, exactly as stepping
does, and must land on those same instants, so both paths schedule at absolute times.
"""
from __future__ import annotations

from heapq import heappush

import simpy
from simpy.core import NORMAL


def at(env: simpy.Environment, when: float, value=None, event: simpy.Event | None = None) -> simpy.Event:
    """An event that fires at exactly `when` (never earlier than now): a new one, or `event`
    (not yet triggered), which saves a second event for whoever waits on it."""
    ev = simpy.Event(env) if event is None else event
    ev._ok = True
    ev._value = value
    when = when if when >= env.now else env.now
    # simpy.Environment.schedule only takes a delay; push the absolute time ourselves.
    heappush(env._queue, (when, NORMAL, next(env._eid), ev))
    return ev
