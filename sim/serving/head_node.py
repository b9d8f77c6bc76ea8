"""The head node: each server's CPU cores, shared by the work that runs on them.

Four kinds of work want a server's cores:

- each engine's scheduler loop keeps `host_threads` cores busy (scheduling, preparing
  inputs, launching kernels: the per-iteration host work);
- its front end tokenizes every prompt (`tokenize_per_token`) and detokenizes every output
  token as it streams (`detokenize_per_token`);
- a NIC without GPUDirect RDMA (`nic_path: host-staged`) has the CPU stage every message
  through host memory, at `host_staging_cost` of CPU time per message (sim.fabric.network).

The operating system shares the cores fairly, so while the work wants more cores than the
server has, each piece gets cores / demand of what it asks for: the engines' host work per
iteration and their tokenizers take demand / cores times as long (and 1 / cpu_speed on a
slower CPU), and the accelerators wait for them (`K_HOST_SCALE`). Staged transfers are not
slowed in turn: each flow's per-message cost already bounds it (sim.fabric.network).

The engine threads are a constant demand. The rest is measured: every `INTERVAL` the head
node counts the CPU seconds its front ends and staged transfers used over the interval just
ended and sets the stretch for the next one, as a governor would. A server without that
work (no tokenizer or detokenizer costs, GPUDirect NICs) keeps the constant stretch and
schedules nothing.

Pipeline-parallel engines keep their own host time (sim.serving.pipeline) and are not
stretched.
"""
from __future__ import annotations

import numpy as np

from ..core.metrics import Series
from ..timing import kernels as K

INTERVAL = 0.1    # s: a governor's period, several iterations long, so demand is an average
STEP = 0.01       # smallest change of the stretch that replans the engines


class HeadNodeLog(Series):
    """Per interval: its end, the cores the front ends and the staging wanted over it (the
    engine threads want a constant number), and the stretch in force during it."""

    FIELDS = {"time": float, "frontend": float, "staging": float, "stretch": float}

    def add(self, time: float, frontend: float, staging: float, stretch: float) -> None:
        i = self._next_row()
        c = self._cols
        c["time"][i], c["frontend"][i], c["staging"][i], c["stretch"][i] = time, frontend, staging, stretch


class HeadNode:
    def __init__(self, env, host: str, cores: int, speed: float, replicas: list, engines: list, fabric,
                 staged: bool, spill: bool = False):
        self.env = env
        self.host = host
        self.cores = cores
        self.speed = speed
        self.replicas = replicas
        self.threads = sum(e.host_threads for e in engines)
        self.tokenize = np.array([e.tokenize_per_token for e in engines])
        self.detokenize = np.array([e.detokenize_per_token for e in engines])
        self.fabric = fabric if staged else None
        self.log = HeadNodeLog(spill=spill)   # a long run's intervals go to scratch files
        self.stretch = 1.0
        self._apply(self._stretch_for(self.threads))
        # a governor ticks for ever (the run stops it: sim.simulation._run_until_done)
        self.governs = self.fabric is not None or bool(self.tokenize.any() or self.detokenize.any())
        if self.governs:
            self._last = (0.0, self._frontend_seconds(), self._staging_seconds())
            env.process(self._govern())

    def _stretch_for(self, demand: float) -> float:
        """How much longer host work takes when `demand` cores are wanted."""
        return max(1.0, demand / self.cores) / self.speed

    def _frontend_seconds(self) -> float:
        """CPU seconds (at full speed) the front ends have spent tokenizing so far; the
        detokenizers' share is added per interval from the engines' output rates."""
        return float(sum(rep.tokenized * t for rep, t in zip(self.replicas, self.tokenize, strict=True)))

    def _staging_seconds(self) -> float:
        return self.fabric.staging_cpu_seconds(self.host) if self.fabric is not None else 0.0

    def _govern(self):
        while True:
            yield self.env.timeout(INTERVAL)
            self._revise()

    def _revise(self) -> None:
        now = self.env.now
        t0, front0, staged0 = self._last
        front, staged = self._frontend_seconds(), self._staging_seconds()
        self._last = (now, front, staged)
        dt = now - t0
        detok = sum(rep.output_rate() * t for rep, t in zip(self.replicas, self.detokenize, strict=True) if t > 0)
        frontend = ((front - front0) / dt + detok) / self.speed
        staging = (staged - staged0) / dt
        stretch = self._stretch_for(self.threads + frontend + staging)
        self.log.add(now, frontend, staging, self.stretch)
        if abs(stretch - self.stretch) >= STEP * self.stretch or (stretch == 1.0 and self.stretch != 1.0):
            self._apply(stretch)

    def _apply(self, stretch: float) -> None:
        self.stretch = stretch
        for rep, t in zip(self.replicas, self.tokenize, strict=True):
            rep.tokenize_per_token = t * stretch
            p = rep.latest_params()
            if p[K.K_HOST_SCALE] != stretch:
                p = p.copy()
                p[K.K_HOST_SCALE] = stretch
                rep.set_params(p, rep.latest_clock())

    def summary(self, w0: float, w1: float) -> dict:
        """Cores wanted on average over the window, by kind, and the host work's stretch."""
        log = self.log.columns()
        t = log["time"]
        inside = (t > w0) & (t <= w1)
        demand = {"engines": float(self.threads), "frontend": 0.0, "staging": 0.0}
        stretch = peak = self.stretch          # no governor: the constant demand
        if inside.any():
            demand.update({k: float(np.mean(log[k][inside])) for k in ("frontend", "staging")})
            s = log["stretch"][inside]
            stretch, peak = float(s.mean()), float(s.max())
        return {"server": self.host, "cores": self.cores, "cpu_speed": self.speed,
                "cores_wanted": demand, "cores_wanted_total": float(sum(demand.values())),
                "host_stretch_mean": stretch, "host_stretch_max": peak}


def attach_head_nodes(env, graph, replicas: list, engines: list, placement: dict, fabric,
                      spill: bool = False) -> list[HeadNode]:
    """A head node for every server that runs engines and whose topology gives its CPUs' cores
    (an explicit topology without CPU figures keeps the catalog's host times as they are)."""
    cpus_of: dict = {}
    staged_hosts = set()
    for _, d in graph.nodes(data=True):
        if d.get("kind") == "cpu" and "cores" in d:
            cpus_of.setdefault(d.get("host"), []).append(d)
        elif d.get("kind") == "nic" and d.get("path") == "host-staged":
            staged_hosts.add(d.get("host"))
    on_host: dict = {}
    for rep, engine in zip(replicas, engines, strict=True):
        nodes = placement.get(rep.index)
        if nodes:
            on_host.setdefault(graph.nodes[nodes[0]].get("host"), []).append((rep, engine))
    heads = []
    for host, pairs in on_host.items():
        cpus = cpus_of.get(host)
        if not cpus:
            continue
        cores = sum(d["cores"] for d in cpus)
        heads.append(HeadNode(env, host, cores, cpus[0].get("speed", 1.0), [r for r, _ in pairs],
                              [e for _, e in pairs], fabric, host in staged_hosts, spill))
    return heads
