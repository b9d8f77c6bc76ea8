"""Autoscaling a pool: how many of its replicas run, decided every `interval`.

The decision follows the Kubernetes Horizontal Pod Autoscaler. From the metric of the last
interval it recommends a replica count:

- `utilization`: busy fraction of the running replicas; recommends ceil(sum of their busy
  fractions / target);
- `queue`: requests outstanding at the pool (running, waiting, and waiting at the router for
  a replica) per replica; recommends ceil(outstanding / target);
- `slo`: TTFT p99 (seconds) of the requests that got their first token in the interval.
  Above target it recommends ceil(running x p99 / target), at least one more; within target
  it releases replicas while the rest would stay below `down_utilization` busy (latency is
  not proportional to the replica count, so a ratio rule alone swings from idle to overload).

Stabilization (HPA's behaviour windows): scaling up goes to the lowest recommendation of the
last `scale_up_window`, scaling down to the highest of the last `scale_down_window`, so a
brief lull or burst does not make replicas come and go. The count stays within [min, max].

Scale to zero: with `min: 0` the pool may stop every replica; a request that then arrives
waits at the router and wakes one at once (as Knative's activator does), paying a cold
start. Starting replicas cost provisioning and weight loading (`sim.ops.lifecycle`);
stopped ones finish what they hold first.

On devices that models swap (`swap_devices_with`), a replica starts only on devices no model
holds; when there are not enough, `sim.ops.model_swap` claims some from another model.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..serving import sharing
from ..spec.base import Seconds, Spec
from .lifecycle import LIVE, OFF, STARTING
from .model_swap import ModelSwap


class AutoscaleSpec(Spec):
    policy: Literal["utilization", "queue", "slo"] = Field(
        default="utilization", description="what the target measures: the replicas' busy fraction, requests "
                                           "waiting per replica, or TTFT p99")
    target: float = Field(gt=0, description="utilization: busy fraction; queue: requests per replica; "
                                            "slo: TTFT p99 in seconds")
    min: int = Field(default=1, ge=0, description="replicas kept running (0: scale to zero)")
    max: int | None = Field(default=None, ge=1, description="default: every replica the pool's devices hold")
    initial: int | None = Field(default=None, ge=0, description="replicas running when the run starts (default: min)")
    interval: Seconds = Field(default=15.0, gt=0, description="how often the replica count is decided")
    scale_up_window: Seconds = Field(default=0.0, ge=0, description="scaling out goes to the lowest "
                                                                    "recommendation of this last stretch")
    scale_down_window: Seconds = Field(default=300.0, ge=0, description="scaling in goes to the highest "
                                                                        "recommendation of this last stretch")
    down_utilization: float = Field(default=0.8, gt=0, le=1, description="slo: busy fraction the running replicas "
                                                                          "may reach after scaling in")

    @model_validator(mode="after")
    def _bounds(self):
        if self.policy == "utilization" and self.target > 1:
            raise ValueError(f"a utilization target is a busy fraction in (0, 1], got {self.target:g}")
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) exceeds max ({self.max})")
        if self.initial is not None and not (self.min <= self.initial <= (self.max or self.initial)):
            raise ValueError(f"initial ({self.initial}) must lie within min ({self.min}) and max ({self.max})")
        return self


class Autoscaler:
    def __init__(self, env, spec: AutoscaleSpec, pool, groups: list[int], lifecycle, router, table, until: float,
                 healthy=lambda g: True):
        self.env, self.spec, self.pool, self.groups, self.until = env, spec, pool, groups, until
        self.life, self.router, self.table, self.healthy = lifecycle, router, table, healthy
        self.max = spec.max if spec.max is not None else len(groups)
        self.engines = [rep for g in groups for rep in lifecycle.groups[g]]
        self.engine_ids = np.array([rep.index for rep in self.engines], np.int64)
        self.recommendations: list[tuple[float, int]] = []
        self.history: list[tuple[float, int]] = []        # (time, replicas running or starting) at changes
        self._activity = {rep.index: rep.activity()[0] for rep in self.engines}
        self.swap = None                      # ops.model_swap.ModelSwap when its devices are swapped
        env.process(self._loop())

    def initial_count(self) -> int:
        return self.spec.initial if self.spec.initial is not None else self.spec.min

    def initial_off(self) -> set[int]:
        """The groups that start off: all but the first `initial` (for swapped devices, the
        swap group places them)."""
        if self.swap is not None:
            return self.swap.initial_off(self)
        return set(self.groups[self.initial_count():])

    def current(self) -> int:
        """Replicas running or starting, and devices claimed from another model (swapping)."""
        n = sum(self.life.state[g] in (STARTING, LIVE) for g in self.groups)
        return n + (self.swap.reserved_for(self) if self.swap is not None else 0)

    def waiting(self) -> int:
        """Requests for the pool's model waiting at the router for a replica."""
        model = self.router.model_of[self.engines[0].index]
        return len(self.router.parked[model]) + len(self.router.backlog[model])

    # ---- deciding ----------------------------------------------------------------------
    def _loop(self):
        # as Kubernetes' HPA does for a target it meets first, the replicas running at the start
        # are the first recommendation: scale-down stabilization holds them for its window
        self.recommendations.append((self.env.now, self.current()))
        t = self.table
        # past the arrival window it ticks while requests are still open, so a run ends
        while self.env.now < self.until or ((t.state == 0) & ~np.isnan(t.arrival)).any():
            yield self.env.timeout(self.spec.interval)
            self.decide()

    def recommend(self) -> int:
        spec, now = self.spec, self.env.now
        live = [g for g in self.groups if self.life.state[g] == LIVE]
        busy = {}
        for rep in self.engines:
            seconds = rep.activity()[0]
            busy[rep.index] = (seconds - self._activity[rep.index]) / spec.interval
            self._activity[rep.index] = seconds
        outstanding = sum(rep.outstanding() for rep in self.engines if rep.up) + self.waiting()
        used = sum(np.mean([busy[rep.index] for rep in self.life.groups[g]]) for g in live)
        if spec.policy == "utilization":
            want = math.ceil(used / spec.target - 1e-9)
        elif spec.policy == "queue":
            want = math.ceil(outstanding / spec.target - 1e-9)
        else:
            t = self.table
            mine = np.isin(t.replica, self.engine_ids) & (t.first_token > now - spec.interval)
            p99 = float(np.percentile(t.first_token[mine] - t.arrival[mine], 99)) if mine.any() else 0.0
            if p99 > spec.target:
                want = max(len(live) + 1, math.ceil(len(live) * p99 / spec.target - 1e-9))
            else:
                want = min(len(live), math.ceil(used / spec.down_utilization - 1e-9))
        if outstanding and want == 0:
            want = 1                 # requests are waiting: keep (or wake) one
        return want

    def decide(self) -> None:
        now, spec = self.env.now, self.spec
        want = self.recommend()
        self.recommendations.append((now, want))
        current = self.current()
        if want > current:
            window = [w for t, w in self.recommendations if t >= now - spec.scale_up_window]
            want = max(current, min(window))
        elif want < current:
            window = [w for t, w in self.recommendations if t >= now - spec.scale_down_window]
            want = min(current, max(window))
        horizon = max(spec.scale_up_window, spec.scale_down_window)
        self.recommendations = [(t, w) for t, w in self.recommendations if t >= now - horizon]
        self.scale_to(min(max(want, spec.min), self.max), "scale-up")

    def scale_to(self, n: int, reason: str) -> None:
        current = self.current()
        if n > current:
            for g in self.groups:
                if current >= n:
                    break
                if self.life.state[g] == OFF and self.healthy(g) and (self.swap is None or self.swap.free(g)):
                    self.life.start(g, reason)
                    current += 1
            if current < n and self.swap is not None:
                self.swap.claim(self, n - current)     # devices another model holds
        elif n < current:
            if self.swap is not None:                  # claims not yet started go first
                current -= self.swap.cancel(self, current - n)
            # stop those still starting first, then the least loaded running ones
            order = sorted((g for g in self.groups if self.life.state[g] in (STARTING, LIVE)),
                           key=lambda g: (self.life.state[g] == LIVE,
                                          sum(rep.outstanding() for rep in self.life.groups[g]), -g))
            for g in order[:max(0, current - n)]:
                self.life.stop(g)
        self.record()

    def surplus(self) -> int:
        """Replicas its own scale-down would release now: those above the highest
        recommendation of the last `scale_down_window` (and above min)."""
        now = self.env.now
        window = [w for t, w in self.recommendations if t >= now - self.spec.scale_down_window]
        if not window:
            return 0
        return max(0, self.current() - max(max(window), self.spec.min))

    def record(self) -> None:
        """Note the replica count if it changed."""
        if not self.history or self.history[-1][1] != self.current():
            self.history.append((self.env.now, self.current()))

    def wake(self) -> None:
        """A request waits and nothing runs (scaled to zero, or all failed): start one now."""
        if self.current() == 0 and self.max > 0:
            self.scale_to(1, "wake-up")


def attach_autoscalers(env, scenario, lifecycle, router, table) -> list[Autoscaler]:
    """An autoscaler per pool with `autoscale:`; a request waiting for a model none of whose
    replicas runs wakes the first of its pools that has none running."""
    out = []
    for pool in scenario.pools:
        if pool.spec.autoscale is not None:
            groups = [g for g, p in enumerate(lifecycle.pool_of) if p is pool]
            out.append(Autoscaler(env, pool.spec.autoscale, pool, groups, lifecycle, router, table,
                                  scenario.spec.duration))
    by_pool = {a.pool.name: a for a in out}
    for group in sharing.swap_groups(scenario):     # models taking turns on the same devices
        ModelSwap(env, lifecycle, [by_pool[p.name] for p in group])
    if out:
        def starved(model):
            for a in out:
                if a.pool.model_key == model and a.current() == 0:
                    a.wake()
                    return
        router.starved.subscribe(starved)
    return out
