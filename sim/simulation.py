"""Build the SimPy world from a validated scenario and run it.

    arrivals (workload) -> router -> replicas (one SimPy process each) -> request table
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import simpy

from .metrics import BusyLog, RequestTable
from .scenario import Scenario
from .serving.clock import at
from .serving.replica import Replica
from .serving.router import Router
from .workload import generate, rng_for


@dataclass
class ReplicaInfo:
    index: int
    pool: str
    device: str
    model: str
    tp: int
    busy_time: float
    preemptions: int
    total_blocks: int


@dataclass
class RunResult:
    scenario: Scenario
    table: RequestTable
    log: BusyLog
    replicas: list[ReplicaInfo]
    end_time: float           # simulated time when the run stopped
    wall_seconds: float
    seed: int
    stream_names: list[str] = field(default_factory=list)


def simulate(scenario: Scenario, seed: int | None = None) -> RunResult:
    """Run one scenario; `seed` overrides the scenario's seed."""
    spec = scenario.spec
    seed = spec.seed if seed is None else seed
    wall0 = time.perf_counter()
    arrivals = generate(spec.workload, spec.duration, seed)
    table = RequestTable(arrivals.time, arrivals.stream, arrivals.prompt, arrivals.output)
    log = BusyLog()
    env = simpy.Environment()
    central = spec.router.dispatch == "central"

    replicas: list[Replica] = []
    by_model: dict[str, list[Replica]] = {}
    for pool in scenario.pools:
        for _ in range(pool.replicas):
            rep = Replica(env, len(replicas), pool.name, pool.deployment, pool.spec.serve.engine, table, log, central)
            replicas.append(rep)
            by_model.setdefault(pool.model_key, []).append(rep)
    router = Router(env, by_model, spec.router.policy, spec.router.queue_limit, spec.router.dispatch,
                    rng_for(seed, "router"), table)

    served = sorted(by_model)
    model_of_stream = [s.model or served[0] for s in spec.workload]

    def source():
        times, streams = arrivals.time, arrivals.stream
        for i in range(len(times)):
            yield at(env, times[i])
            router.arrive(i, model_of_stream[streams[i]])

    env.process(source())
    if spec.drain is None:
        env.run()
    else:
        env.run(until=spec.duration + spec.drain)
    for rep in replicas:
        rep.sync()
    end = env.now
    infos = []
    for rep, pool in zip(replicas, [p for p in scenario.pools for _ in range(p.replicas)]):
        infos.append(ReplicaInfo(rep.index, pool.name, pool.device_key, pool.model_key, pool.deployment.tp,
                                 rep.busy_time, rep.preemptions, rep.total_blocks))
    return RunResult(scenario, table, log, infos, end, time.perf_counter() - wall0, seed,
                     [s.name for s in spec.workload])
