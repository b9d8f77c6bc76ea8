"""Which accelerators each engine runs on, and which pool each engine belongs to."""
from __future__ import annotations

from . import sharing


def pool_of_engines(scenario) -> list:
    """The pool of each engine (a replica runs pp engines over its stages, or one per ep rank)."""
    return [p for p in scenario.pools for _ in range(p.replicas * p.spec.engines_per_replica)]


def place(scenario) -> dict[int, list[str]]:
    """Engine index -> the accelerators of its replica, stage by stage (tp per stage): pools
    in order, each replica taking the next tp x pp accelerators of the topology's placement
    order, so a tensor-parallel group stays inside a server when tp divides its accelerators.
    The pp engines of a pipeline replica share its accelerators. Without a topology the
    devices are named by their index, 0.., in the same order."""
    if sharing.shares_devices(scenario):   # MIG slices, or pools on another pool's devices
        return sharing.place(scenario)
    topo = scenario.spec.topology
    accels = (topo.accelerators() if topo is not None
              else [str(i) for i in range(sum(p.spec.count for p in scenario.pools))])
    out, k, engine = {}, 0, 0
    for pool in scenario.pools:
        serve = pool.spec.serve
        width = serve.tp * serve.pp * serve.ep
        for _ in range(pool.replicas):
            group = accels[k:k + width]
            for rank in range(serve.pp * serve.ep):
                # an expert-parallel rank's own device first: its attention and KV live there
                out[engine] = group if serve.ep == 1 else group[rank:] + group[:rank]
                engine += 1
            k += width
    return out
