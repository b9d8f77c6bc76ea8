"""Power capping: when the fleet would draw more than its budget, devices run at a lower clock.

The frequency/power relation. Dynamic power of CMOS logic goes as C V^2 f, and under DVFS the
voltage tracks the frequency, so a device's draw above idle goes as the cube of its clock:

    P(f) = P_idle + (P_peak - P_idle) x a x f^3     (a: share of time it computes)

A capped device runs its compute (GEMM and attention rates) at f. HBM keeps its own clock, so
memory-bound decode slows far less than compute-bound prefill, as measured: Maliakel et al.
(arXiv 2501.08219) find decode "largely insensitive to GPU frequency" (1-6% slower for 42%
less energy), and Samsi et al. (arXiv 2310.03003) a 30% cap costing LLaMA inference 6-7% of
latency. On-chip SRAM (memory_type: sram) runs at the core clock and slows with it. The cube
law is the textbook DVFS relation; below the lowest voltage a real chip's power falls only
linearly with f, which `min_clock` bounds.

The controller. Every `interval`, for each scope (the datacenter, or each rack of
`rack_devices` accelerators in placement order), it reads how long each device computed in
the last interval, works out the draw at the clock in force, and sets the next clock so the
draw fits: f' = clamp(f x (B_dyn / P_dyn)^(1/3), min_clock, 1), where B_dyn is the budget
less idle and server overhead and P_dyn the measured dynamic draw. It raises the clock again
when there is headroom. A new clock takes effect at each replica's next iteration boundary.
"""
from __future__ import annotations

import numpy as np

from ..catalog import economics
from ..timing import kernels as K

STEP = 0.01     # clock changes smaller than this are not applied (each costs a replan)


class PowerCap:
    def __init__(self, env, spec, scenario, replicas, pools_of_engine):
        self.env = env
        self.spec = spec
        pue = scenario.spec.economics.pue
        # a datacenter budget is facility power; the controller works in IT watts
        self.budget_it = spec.budget / pue if spec.scope == "datacenter" else spec.budget
        self.replicas = replicas
        n = len(replicas)
        self.idle = np.zeros(n)        # W: idle draw of each engine's devices
        self.dynamic = np.zeros(n)     # W: (peak - idle) of each engine's devices
        self.node = np.zeros(n)        # W: server overhead share at full activity
        self.node_idle = np.zeros(n)
        self.overhead = np.zeros(n)    # s: host time per iteration
        self.base = [rep.params.copy() for rep in replicas]
        self.sram = np.zeros(n, bool)
        scope = np.zeros(n, np.int64)
        # each engine stands for tp devices (a pipeline's pp engines share its tp x pp), as in
        # the summary; its rack is that of its replica's first device
        device_at, engine_in_pool, first_device = 0, {}, {}
        for i, (rep, pool) in enumerate(zip(replicas, pools_of_engine, strict=True)):
            dev = pool.deployment.device
            tp = pool.deployment.tp
            if dev.tdp is None:
                raise ValueError(f"power budget: {pool.device_key} has no TDP in the catalog, so its draw is unknown")
            self.idle[i] = dev.idle_watts() * tp
            self.dynamic[i] = (dev.tdp - dev.idle_watts()) * tp
            self.node[i] = economics.node_power_per_device(dev, 1.0) * tp
            self.node_idle[i] = economics.node_power_per_device(dev, 0.0) * tp
            self.overhead[i] = rep.params[K.K_OVERHEAD]
            self.sram[i] = dev.memory_type == "sram"
            k = engine_in_pool[pool.name] = engine_in_pool.get(pool.name, -1) + 1
            key = (pool.name, k // pool.spec.engines_per_replica)
            if key not in first_device:    # an engine's devices start where its replica's do
                first_device[key] = device_at
                device_at += pool.spec.serve.tp * pool.spec.serve.pp * pool.spec.serve.ep
            scope[i] = first_device[key] // spec.rack_devices if spec.scope == "rack" else 0
        self.scope = scope
        self.scopes = int(scope.max()) + 1 if n else 0
        self.clock = np.ones(self.scopes)
        self.last = np.array([rep.activity() for rep in replicas], float).reshape(n, 2)
        # history per interval and scope: clock in force, draw measured, draw wanted at full speed
        self.times: list[float] = []
        self.clocks: list[np.ndarray] = []
        self.drawn: list[np.ndarray] = []
        self.wanted: list[np.ndarray] = []
        env.process(self._loop())

    def _loop(self):
        dt = self.spec.interval
        while True:
            yield self.env.timeout(dt)
            self._revise(dt)

    def _revise(self, dt: float) -> None:
        now = np.array([rep.activity() for rep in self.replicas], float).reshape(len(self.replicas), 2)
        busy = now[:, 0] - self.last[:, 0]
        host = (now[:, 1] - self.last[:, 1]) * self.overhead
        self.last = now
        active = np.clip((busy - np.minimum(host, busy)) / dt, 0.0, 1.0)
        f = self.clock[self.scope]
        fixed = np.bincount(self.scope, self.idle + self.node_idle + (self.node - self.node_idle) * active,
                            minlength=self.scopes)
        dyn = np.bincount(self.scope, self.dynamic * active * f ** 3, minlength=self.scopes)
        self.times.append(self.env.now)
        self.clocks.append(self.clock.copy())
        self.drawn.append(fixed + dyn)
        self.wanted.append(fixed + np.bincount(self.scope, self.dynamic * active, minlength=self.scopes))
        room = self.budget_it - fixed
        new = self.clock.copy()
        for s in range(self.scopes):
            if dyn[s] <= 0:
                new[s] = 1.0
            elif room[s] <= 0:
                new[s] = self.spec.min_clock
            else:
                new[s] = self.clock[s] * (room[s] / dyn[s]) ** (1.0 / 3.0)
        new = np.clip(new, self.spec.min_clock, 1.0)
        changed = (np.abs(new - self.clock) >= STEP) | ((new == 1.0) & (self.clock < 1.0))
        if not changed.any():
            return
        self.clock = np.where(changed, new, self.clock)
        for i in np.flatnonzero(changed[self.scope]).tolist():
            c = float(self.clock[self.scope[i]])
            # from the engine's latest costs, so the head node's stretch of its host work stays
            p = self.replicas[i].latest_params().copy()
            p[K.K_COMPUTE_SCALE] = self.base[i][K.K_COMPUTE_SCALE] / c
            if self.sram[i]:
                p[K.K_MEMORY_SCALE] = self.base[i][K.K_MEMORY_SCALE] / c
            self.replicas[i].set_params(p, c)

    def summary(self, w0: float, w1: float) -> dict:
        """How often and how much the cap held inside [w0, w1]: the share of scope-intervals
        below full clock, the mean clock while capped, the lowest, and the draws."""
        t = np.array(self.times)
        inside = (t > w0) & (t <= w1 + 1e-12)
        spec = self.spec
        out = {"budget_w": spec.budget, "scope": spec.scope, "scopes": self.scopes,
               "interval_s": spec.interval, "budget_it_w": self.budget_it}
        if not inside.any():
            return {**out, "capped_fraction": 0.0, "mean_clock_when_capped": None, "min_clock": 1.0,
                    "peak_drawn_it_w": None, "peak_wanted_it_w": None}
        # the clock in force during an interval is the one recorded at its end
        clocks = np.array(self.clocks)[inside]
        capped = clocks < 1.0
        return {**out,
                "capped_fraction": float(capped.mean()),
                "mean_clock_when_capped": float(clocks[capped].mean()) if capped.any() else None,
                "min_clock": float(clocks.min()),
                "peak_drawn_it_w": float(np.array(self.drawn)[inside].max()),
                "peak_wanted_it_w": float(np.array(self.wanted)[inside].max())}
