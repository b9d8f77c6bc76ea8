"""Replicas coming and going: starts (provisioning, then weights), stops, failures, repairs.

A replica is a group of engines on the same devices (a pipeline's stages, an expert-parallel
replica's ranks). Each group is in one state at a time:

    off -> starting -> live -> draining -> off          (the autoscaler's starts and stops)
    any state but off -> failed -> starting or off      (a device failed; repaired)

A start costs the pool's `serve.provision` delay (allocating the node, starting the
container and the engine), then loading the weights: every device its share (weights / tp)
as a flow over the fabric from a storage node (round robin) or its host's memory
(`serve.weights: storage | host`), or nothing when they are `preloaded`. Replicas that serve
from the start load their weights without a provisioning delay (the run begins with them
provisioned). Only a live replica takes requests; a draining one finishes what it holds. A
group counts as powered (paid for) while starting, live or draining.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.clock import at
from ..core.events import Topic

OFF, STARTING, LIVE, DRAINING, FAILED = "off", "starting", "live", "draining", "failed"
POWERED = (STARTING, LIVE, DRAINING)


@dataclass
class ColdStart:
    group: int
    pool: str
    reason: str                # "scale-up" or "repair"
    requested: float
    provisioned: float = np.nan
    live: float = np.nan       # NaN: it failed again, or the run ended, before it was live


class Lifecycle:
    def __init__(self, env, scenario, replicas, pools_of_engine, fabric, placement, router):
        self.env, self.router, self.fabric = env, router, fabric
        self.topology = scenario.spec.topology
        self.storage = []
        if fabric is not None:
            self.storage = [n for n, d in fabric.graph.nodes(data=True) if d.get("kind") == "storage"]
        self._k = 0                        # round robin over storage nodes
        # groups: engines that share devices, in engine order
        self.groups: list[list] = []
        self.pool_of: list = []
        self.group_of: dict[int, int] = {}
        for pool in scenario.pools:
            engines = [(rep, p) for rep, p in zip(replicas, pools_of_engine, strict=True) if p is pool]
            per = pool.spec.engines_per_replica
            for k in range(0, len(engines), per):
                self.group_of.update({rep.index: len(self.groups) for rep, _ in engines[k:k + per]})
                self.groups.append([rep for rep, _ in engines[k:k + per]])
                self.pool_of.append(pool)
        self.placement = placement
        self.state = [LIVE] * len(self.groups)
        self.history: list[list[tuple[float, str]]] = [[(0.0, LIVE)] for _ in self.groups]
        self.starts: list[ColdStart] = []
        self.load_time: dict[int, float] = {}    # engine -> when its first weights arrived
        self.changed = Topic("changed")           # (group, state) after each change
        self._watched: set[int] = set()           # engines whose completions a drain waits on

    # ---- the run's first replicas ---------------------------------------------------------
    def begin(self, off: set[int] = frozenset()) -> None:
        """Groups not in `off` serve from the start: they load their weights now (requests
        routed to them meanwhile queue there); the others start off."""
        for g, engines in enumerate(self.groups):
            if g in off:
                self._set(g, OFF)
                for rep in engines:
                    self.router.stop(rep)
                    rep.fail()            # holds nothing yet; waits for a start
                continue
            if self.pool_of[g].spec.serve.weights == "preloaded":
                for rep in engines:
                    rep.ready.succeed()
                continue

            def fire(_, g=g, lives=tuple(rep.life for rep in engines)):
                if lives != tuple(rep.life for rep in self.groups[g]):
                    return      # it failed while loading: its restart loads the weights again
                for rep in self.groups[g]:
                    self.load_time.setdefault(rep.index, self.env.now)
                    rep.ready.succeed()
            self._load(g).callbacks.append(fire)

    # ---- starts and stops -------------------------------------------------------------------
    def start(self, g: int, reason: str) -> None:
        """Provision group g, load its weights, then put it in service."""
        if self.state[g] not in (OFF, FAILED):
            return
        record = ColdStart(g, self.pool_of[g].name, reason, self.env.now)
        self.starts.append(record)
        self._set(g, STARTING)
        life = [rep.life for rep in self.groups[g]]
        for rep in self.groups[g]:
            rep.restart()
        provision = self.pool_of[g].spec.serve.provision

        def void() -> bool:
            """It failed, or was stopped, since this start began."""
            return self.state[g] != STARTING or life != [rep.life for rep in self.groups[g]]

        def provisioned(_):
            if void():
                return
            record.provisioned = self.env.now
            self._load(g).callbacks.append(loaded)

        def loaded(_):
            if void():
                return
            record.live = self.env.now
            self._set(g, LIVE)
            for rep in self.groups[g]:
                rep.ready.succeed()
                self.router.bring_up(rep)
        at(self.env, self.env.now + provision).callbacks.append(provisioned)

    def stop(self, g: int) -> None:
        """Take group g out of service: it drains what it holds, then powers off."""
        if self.state[g] == STARTING:     # not serving yet: nothing to drain
            for rep in self.groups[g]:
                rep.fail()                # voids its start
                self.router.stop(rep)
            self._set(g, OFF)
            return
        if self.state[g] != LIVE:
            return
        self._set(g, DRAINING)
        for rep in self.groups[g]:
            self.router.stop(rep)
            if rep.index not in self._watched:    # hear of its completions from now on
                self._watched.add(rep.index)
                rep.capacity_freed.subscribe(self._capacity)
        self._maybe_off(g)

    def fail(self, groups: list[int]) -> list[int]:
        """Devices of `groups` failed together: their engines go down and the requests they
        held go to replicas still up (returned). A group that is off stays off."""
        hit = [g for g in groups if self.state[g] not in (OFF, FAILED)]
        for g in hit:
            self._set(g, FAILED)
        return self.router.take_down([rep for g in hit for rep in self.groups[g]])

    def repair(self, g: int, wanted: bool) -> None:
        """Group g's devices work again: it starts again if it is still wanted, else stays off."""
        if self.state[g] != FAILED:
            return
        if wanted:
            self.start(g, "repair")
        else:
            self._set(g, OFF)

    # ---- internals -------------------------------------------------------------------------
    def _capacity(self, rep) -> None:
        g = self.group_of[rep.index]
        if self.state[g] == DRAINING:
            self._maybe_off(g)

    def _maybe_off(self, g: int) -> None:
        if all(rep.outstanding() == 0 for rep in self.groups[g]):
            for rep in self.groups[g]:
                rep.fail()                # nothing is lost: it held nothing
            self._set(g, OFF)

    def _set(self, g: int, state: str) -> None:
        self.state[g] = state
        self.history[g].append((self.env.now, state))
        self.changed(g, state)

    def _load(self, g: int):
        """An event that fires when group g's weights are on its devices."""
        pool = self.pool_of[g]
        source = pool.spec.serve.weights
        if source == "preloaded":
            done = self.env.event()
            done.succeed()
            return done
        flows = []
        for accel in self.placement[self.groups[g][0].index]:
            if source == "storage":
                origin = self.storage[self._k % len(self.storage)]
                self._k += 1
            else:
                origin = self.topology.host_cpu(accel)
            flows.append(self.fabric.transfer(origin, accel, pool.deployment.weight_bytes, "weights"))
        return self.env.all_of(flows)

    # ---- what it adds up to -------------------------------------------------------------
    def seconds_in(self, g: int, states: tuple, t0: float, t1: float) -> float:
        """Seconds group g spent in `states` inside [t0, t1] (POWERED: the time it is paid for)."""
        total = 0.0
        h = self.history[g] + [(np.inf, None)]
        for (a, state), (b, _) in zip(h, h[1:], strict=False):
            if state in states:
                total += max(0.0, min(b, t1) - max(a, t0))
        return total
