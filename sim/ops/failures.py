"""Failures and repairs of devices, servers, racks, links and switches.

Failures come scripted (`events:`, at given times, repaired after `repair_after` or never) or
drawn (`random:`, per component type: exponential times between failures with mean `mtbf`
per component, and to repair with mean `mttr`), both reproducible under the seed. Random
failures happen inside the arrival window.

What a failure does:
- a device: its replica (every engine on its devices) goes down; the requests it held are
  sent again (up to `retries` times each, then they fail with `retries_exhausted`; with
  `retries: 0` they fail with `replica_failed`). When all its devices work again it starts
  over: provisioning and weights, as a cold start (`sim.ops.lifecycle`).
- a server: its devices, and the cables of its NICs, go down together;
- a rack: `rack_servers` servers, in placement order;
- a link (a cable, both directions) or a switch (all its cables): flows reroute over what
  remains (`Fabric.set_link`); replicas keep serving.

Without a topology, devices are numbered 0.. in placement order (pools in order, each
replica taking the next tp x pp x ep), servers hold the catalog's devices per server (8 when
the catalog gives no server), a pool's first device starting a new server.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..spec.base import Seconds, Spec

COMPONENTS = ("device", "server", "rack", "link", "switch")


class FailureEvent(Spec):
    at: Seconds = Field(ge=0, description="when it fails, from the start of the run")
    fail: Literal["device", "server", "rack", "link", "switch"] = Field(description="what fails")
    target: int | str | list[str] = Field(description="device: accelerator id (index without a topology); "
                                                   "server: host id (index without); rack: index; "
                                                   "link: [a, b]; switch: node id")
    repair_after: Seconds | None = Field(default=None, gt=0, description="none: stays down for the run")


class RandomFailures(Spec):
    component: Literal["device", "server", "link", "switch"] = Field(description="which kind of component fails "
                                                                             "(each of them, independently)")
    mtbf: Seconds = Field(gt=0, description="mean time between failures of one component")
    mttr: Seconds = Field(gt=0, description="mean time to repair")


class FailureSpec(Spec):
    retries: int = Field(default=2, ge=0, description="times a request on a failed replica is sent again")
    rack_servers: int | None = Field(default=None, ge=1, description="servers per rack, in placement order")
    events: list[FailureEvent] = Field(default_factory=list, description="scripted failures, at given times")
    random: list[RandomFailures] = Field(default_factory=list, description="failures drawn at random, per kind "
                                                                            "of component")


class Components:
    """The fleet's devices, servers and racks, and the topology's cables and switches, with
    the names a scenario uses for them."""

    def __init__(self, scenario, placement: dict):
        spec = scenario.spec
        topo = spec.topology
        self.topology = topo
        if topo is not None:
            graph = topo.graph()
            accels = topo.accelerators()
            self.device_names = [str(a) for a in accels]
            host = [graph.nodes[a].get("host") for a in accels]
            self.server_names = list(dict.fromkeys(host))
            self.server_of = np.array([self.server_names.index(h) for h in host], np.int64)
            self.cables = [(a, b) for a, b in graph.edges()
                           if graph.nodes[a].get("host") is None or graph.nodes[b].get("host") is None]
            self.switches = [str(n) for n, d in graph.nodes(data=True) if d.get("kind") == "switch"]
            self.graph = graph
        else:
            total = sum(p.spec.count for p in scenario.pools)
            self.device_names = [str(i) for i in range(total)]
            server_of, s, d = [], 0, 0
            for pool in scenario.pools:
                node = pool.deployment.device.node
                per = node.devices if node is not None else 8
                for k in range(pool.spec.count):
                    server_of.append(s + k // per)
                s += -(-pool.spec.count // per)
                d += pool.spec.count
            self.server_of = np.array(server_of, np.int64)
            self.server_names = [str(i) for i in range(s)]
            self.cables, self.switches, self.graph = [], [], None
        index = {name: i for i, name in enumerate(self.device_names)}
        # each engine's devices, as indices
        self.devices_of_engine = {e: [index[str(a)] for a in nodes] for e, nodes in placement.items()}
        self.rack_servers = spec.failures.rack_servers if spec.failures else None

    def devices(self, kind: str, target) -> list[int]:
        """The devices a failure of this component takes down."""
        if kind == "device":
            return [self.device_names.index(str(target))]
        if kind == "server":
            return np.flatnonzero(self.server_of == self.server_names.index(str(target))).tolist()
        if kind == "rack":
            lo = int(target) * self.rack_servers
            return np.flatnonzero((self.server_of >= lo) & (self.server_of < lo + self.rack_servers)).tolist()
        return []

    def cables_of(self, kind: str, target) -> list[tuple]:
        """The cables a failure of this component cuts."""
        if self.graph is None:
            return []
        if kind == "link":
            return [tuple(target)]
        if kind == "switch":
            return [(target, b) for b in self.graph.neighbors(target)]
        if kind in ("server", "rack"):
            hosts = {self.server_names[int(s)] for s in set(self.server_of[self.devices(kind, target)].tolist())}
            return [(a, b) for a, b in self.cables
                    if self.graph.nodes[a].get("host") in hosts or self.graph.nodes[b].get("host") in hosts]
        return []

    def count(self, kind: str) -> int:
        return {"device": len(self.device_names), "server": len(self.server_names), "link": len(self.cables),
                "switch": len(self.switches)}[kind]

    def name(self, kind: str, k: int):
        return {"device": self.device_names, "server": self.server_names, "link": self.cables,
                "switch": self.switches}[kind][k]

    def problems(self, spec) -> list[tuple[tuple, str]]:
        """Targets that name nothing, as (field path, message)."""
        from ..spec.errors import did_you_mean
        out = []
        for i, ev in enumerate(spec.events):
            path = ("failures", "events", i, "target")
            t = ev.target
            if ev.fail in ("link", "switch") and self.graph is None:
                out.append((("failures", "events", i, "fail"), f"a {ev.fail} failure needs topology:"))
            elif ev.fail == "device" and str(t) not in self.device_names:
                out.append((path, f"no device '{t}'" + (did_you_mean(str(t), self.device_names, "accelerators")
                                                         if self.topology else
                                                         f"; devices are numbered 0-{len(self.device_names) - 1}")))
            elif ev.fail == "server" and str(t) not in self.server_names:
                out.append((path, f"no server '{t}'" + (did_you_mean(str(t), self.server_names, "servers")
                                                         if self.topology else
                                                         f"; servers are numbered 0-{len(self.server_names) - 1}")))
            elif ev.fail == "rack":
                racks = -(-len(self.server_names) // self.rack_servers) if self.rack_servers else 0
                if not self.rack_servers:
                    out.append((("failures", "rack_servers"), "a rack failure needs rack_servers: servers per rack"))
                elif not isinstance(t, int) or not 0 <= t < racks:
                    out.append((path, f"racks are numbered 0-{racks - 1} ({len(self.server_names)} servers, "
                                      f"{self.rack_servers} a rack)"))
            elif ev.fail == "link":
                if not (isinstance(t, list) and len(t) == 2 and self.graph.has_edge(*t)):
                    out.append((path, f"a link is [a, b], two nodes with a cable between them; got {t!r}"))
            elif ev.fail == "switch" and str(t) not in self.switches:
                out.append((path, f"no switch '{t}'" + did_you_mean(str(t), self.switches, "switches")))
        for i, r in enumerate(spec.random):
            if r.component in ("link", "switch") and self.graph is None:
                out.append((("failures", "random", i, "component"), f"{r.component} failures need topology:"))
        return out


class Failures:
    """Plays the failures out: devices and cables go down and come back, counted per cause
    (a device down for two reasons is repaired when both are)."""

    def __init__(self, env, spec: FailureSpec, components: Components, lifecycle, fabric, rng: np.random.Generator,
                 until: float, wanted=lambda g: True):
        self.env, self.spec, self.c, self.life, self.fabric = env, spec, components, lifecycle, fabric
        self.wanted = wanted
        self.device_down = np.zeros(len(components.device_names), np.int64)
        self.cable_down: dict[frozenset, int] = {}
        self.groups_of_device: dict[int, set[int]] = {}
        for g, engines in enumerate(lifecycle.groups):
            for d in components.devices_of_engine[engines[0].index]:
                self.groups_of_device.setdefault(d, set()).add(g)
        self.log: list[dict] = []      # one entry per failure: what, when, what it took down, repair
        plan = [(ev.at, ev.fail, ev.target, ev.repair_after) for ev in spec.events]
        for r in spec.random:
            for k in range(components.count(r.component)):
                t = float(rng.exponential(r.mtbf))
                while t < until:
                    down = float(rng.exponential(r.mttr))
                    plan.append((t, r.component, components.name(r.component, k), down))
                    t += down + float(rng.exponential(r.mtbf))
        for when, kind, target, repair in sorted(plan, key=lambda p: p[0]):
            env.process(self._episode(when, kind, target, repair))

    def _episode(self, when, kind, target, repair):
        yield self.env.timeout(max(0.0, when - self.env.now))
        devices = self.c.devices(kind, target)
        cables = self.c.cables_of(kind, target)
        groups = sorted({g for d in devices for g in self.groups_of_device.get(d, ())})
        entry = {"time": self.env.now, "component": kind, "target": target if not isinstance(target, tuple)
                 else list(target), "devices": len(devices), "replicas_down": 0, "repaired": None, "lost": [],
                 "_device_ids": [int(d) for d in devices]}
        self.log.append(entry)
        for d in devices:
            self.device_down[d] += 1
        entry["replicas_down"] = sum(self.life.state[g] not in ("off", "failed") for g in groups)
        entry["lost"] = self.life.fail(groups)
        for a, b in cables:
            key = frozenset((a, b))
            self.cable_down[key] = self.cable_down.get(key, 0) + 1
            if self.cable_down[key] == 1:
                self.fabric.set_link(a, b, False)
        if repair is None:
            return
        yield self.env.timeout(repair)
        entry["repaired"] = self.env.now
        for d in devices:
            self.device_down[d] -= 1
        for a, b in cables:
            key = frozenset((a, b))
            self.cable_down[key] -= 1
            if self.cable_down[key] == 0:
                self.fabric.set_link(a, b, True)
        for g in groups:
            if self.healthy(g):
                self.life.repair(g, self.wanted(g))

    def unpowered_seconds(self, devices, w0: float, w1: float, end: float) -> float:
        """Mean over `devices` of the seconds in [w0, w1] their server had no power (a server or
        rack failure: the devices and the server draw nothing; a failed device alone sits in a
        powered server and draws its idle power)."""
        total = 0.0
        for d in devices:
            spans = sorted((e["time"], e["repaired"] if e["repaired"] is not None else end) for e in self.log
                           if e["component"] in ("server", "rack") and d in e["_device_ids"])
            covered, reach = 0.0, w0
            for a, b in spans:
                a, b = max(a, reach), min(b, w1)
                if b > a:
                    covered += b - a
                    reach = b
            total += covered
        return total / max(len(devices), 1)

    def healthy(self, g: int) -> bool:
        """Whether every device of group g works."""
        return all(self.device_down[d] == 0 for d in self.c.devices_of_engine[self.life.groups[g][0].index])
