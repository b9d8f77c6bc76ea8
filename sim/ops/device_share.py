"""Time slicing: engines of several pools on the same devices take turns computing.

The CUDA time-slice scheduler gives each context the whole GPU for a slice of time in turn,
so while k engines on the same devices have work, each gets about 1/k of the time and so
runs at 1/k of the compute and memory rates (and of the scale-up link, which its slices
also own). An engine with the devices to itself runs at full speed. The host work of an
iteration (scheduling, kernel launch) runs on the CPU and is not shared.

The controller hears from each replica when it starts and stops computing (its plan becomes
non-empty or empty; `Replica.busy`, core.events) and sets the speed of each engine of the group with
`set_params`, which takes effect at the engine's next iteration boundary: busy engines run
at 1/k, and an idle one is set to the speed it would get by joining, 1/(k+1), so its first
iteration already runs at the shared speed.

Power: the busy log's clock is set so that clock^3 = 1/k (the power model weighs computing
time by clock^3), so each of k busy engines accounts for 1/k of the devices' dynamic power
and the group draws what one busy device draws.
"""
from __future__ import annotations

import numpy as np

from ..serving import sharing
from ..timing import kernels as K

SHARED = (K.K_COMPUTE_SCALE, K.K_MEMORY_SCALE, K.K_LINK_SCALE)


def attach(scenario, replicas) -> DeviceShare | None:
    """A controller for the engines that share devices; None when none do."""
    groups = sharing.engine_groups(scenario)
    return DeviceShare([[replicas[i] for i in g] for g in groups]) if groups else None


def shared_params(base: np.ndarray, k: int, latest: np.ndarray | None = None) -> np.ndarray:
    """An engine's cost vector while k engines take turns on its devices: its `latest` one
    (other factors, such as the head node's stretch, kept) with the shared scales of `base` x k."""
    p = (base if latest is None else latest).copy()
    for key in SHARED:
        p[key] = base[key] * k
    return p


class DeviceShare:
    def __init__(self, groups: list[list]):
        self.groups = groups
        self.group_of: dict[int, list] = {}
        self.base: dict[int, np.ndarray] = {}
        self.busy: dict[int, bool] = {}
        self.level: dict[int, int] = {}      # engines each one shares with while it computes
        for group in groups:
            for rep in group:
                self.group_of[rep.index] = group
                self.base[rep.index] = rep.params.copy()
                self.busy[rep.index] = False
                self.level[rep.index] = 1
                rep.busy.subscribe(self.report)

    def report(self, rep, busy: bool) -> None:
        """Replica `rep` starts (busy) or stops computing: re-divide its devices."""
        if busy == self.busy[rep.index]:
            return
        self.busy[rep.index] = busy
        group = self.group_of[rep.index]
        k = sum(self.busy[m.index] for m in group)
        for m in group:
            level = k if self.busy[m.index] else k + 1
            if level != self.level[m.index]:
                self.level[m.index] = level
                m.set_params(shared_params(self.base[m.index], level, m.latest_params()), level ** (-1.0 / 3.0))
