"""Build the SimPy world from a validated scenario and run it.

    arrivals (workload) -> router -> replicas (one SimPy process each) -> request table
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from .core.clock import at
from .core.metrics import BusyLog, RequestTable
from .demand.closed_loop import ClosedLoop
from .demand.workload import Arrivals, generate, media_columns, rng_for, stream_models
from .fabric.network import Fabric
from .ops import device_share
from .ops.admission import Admission
from .ops.autoscaler import Autoscaler, attach_autoscalers
from .ops.failures import Components, Failures
from .ops.lifecycle import Lifecycle
from .ops.power_cap import PowerCap
from .scenario import Scenario
from .serving import batch_tuning, pipeline
from .serving.collectives import collectives_over_fabric
from .serving.diffusion import DiffusionReplica
from .serving.disagg import Disaggregation
from .serving.head_node import attach_head_nodes
from .serving.ingress import carry_requests
from .serving.placement import place, pool_of_engines
from .serving.pool_figures import pool_figures
from .serving.prefix_cache import PrefixIndex, attach_prefix_caches
from .serving.replica import Replica
from .serving.replica_base import LoadBoard
from .serving.router import Router
from .serving.session_runner import ServiceStation, SessionRunner
from .serving.static import StaticReplica
from .timing import kernels


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
    role: str = "both"
    accelerators: list[str] = field(default_factory=list)   # topology nodes it runs on
    weight_load_s: float | None = None                      # time to load its weights at the start
    iteration_overhead: float = 0.0                         # host time per iteration at the end, after CPU sharing
    evicted_blocks: int = 0                                 # prefix cache: blocks evicted during the run
    cached_blocks: int = 0                                  # prefix cache: blocks held when it ended
    itl: np.ndarray | None = None                           # inter-token gaps in the window (event_log.itl_edges)


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
    fabric: Fabric | None = None
    events: int = 0           # SimPy events scheduled
    power_cap: PowerCap | None = None
    sessions: SessionRunner | None = None   # session streams: their plan, failures, tool services
    prefix_reusable: np.ndarray | None = None   # with prefix caching: requests that could reuse a prefix
    lifecycle: Lifecycle | None = None      # replicas' starts, stops, failures: states over time
    failures: Failures | None = None        # what failed when
    autoscalers: list = field(default_factory=list)   # ops.autoscaler.Autoscaler per autoscaled pool
    pipelines: list = field(default_factory=list)     # serving.pipeline.Pipeline per pipeline replica
    head_nodes: list = field(default_factory=list)    # serving.head_node.HeadNode per server running engines


SETTLE_EVERY = 1 << 16    # arrivals between looks for requests that have ended (sim.core.column_store)


def simulate(scenario: Scenario, seed: int | None = None, trace: bool = False) -> RunResult:
    """Run one scenario; `seed` overrides the scenario's seed. `trace` keeps a record of
    every network flow (`Fabric.flow_log`) for `sim.results.trace`.

    The stages run in this order, and the order is part of the model: SimPy runs events of
    the same instant in the order they were scheduled."""
    wall0 = time.perf_counter()
    world = World(scenario, scenario.spec.seed if seed is None else seed)
    draw_demand(world)
    build_replicas(world)
    build_router(world)
    build_fabric(world, trace)
    build_operations(world)
    start_demand(world)
    run(world)
    return collect(world, time.perf_counter() - wall0)


@dataclass
class World:
    """Everything one run builds, stage by stage (`simulate`)."""
    scenario: Scenario
    seed: int
    env: simpy.Environment = field(default_factory=simpy.Environment)
    arrivals: Arrivals | None = None
    table: RequestTable | None = None
    log: BusyLog | None = None
    prioritized: bool = False       # streams of more than one priority class
    replicas: list[Replica] = field(default_factory=list)
    engine_pools: list = field(default_factory=list)    # each engine's pool (ResolvedPool)
    by_model: dict[str, list[Replica]] = field(default_factory=dict)   # where new requests go
    decoders: dict[str, list[Replica]] = field(default_factory=dict)   # disaggregated decode replicas
    board: LoadBoard | None = None
    pipelines: list = field(default_factory=list)
    prefix: PrefixIndex | None = None
    router: Router | None = None
    fabric: Fabric | None = None
    placement: dict[int, list[str]] = field(default_factory=dict)
    heads: list = field(default_factory=list)
    lifecycle: Lifecycle | None = None
    failures: Failures | None = None
    scalers: list[Autoscaler] = field(default_factory=list)
    sessions: SessionRunner | None = None
    power_cap: PowerCap | None = None
    model_of_stream: list[str] = field(default_factory=list)

    @property
    def spec(self):
        return self.scenario.spec

    def model_of(self, r: int) -> str:
        """The model request r asks for: its session call's, else its stream's."""
        plan = self.arrivals.sessions
        named = plan.model[r] if plan is not None else None
        return named or self.model_of_stream[self.arrivals.stream[r]]


def draw_demand(w: World) -> None:
    """Every request of the run, drawn up front, and the table that records their lives."""
    spec, scenario = w.spec, w.scenario
    arrivals = w.arrivals = generate(spec.workload, spec.duration, w.seed, stream_models(scenario))
    table = w.table = RequestTable(arrivals.time, arrivals.stream, arrivals.prompt, arrivals.output)
    # one copy of the inputs: the table's (in memory they are the same arrays already)
    arrivals.time, arrivals.stream, arrivals.prompt, arrivals.output = table.arrival, table.stream, table.prompt, \
        table.output
    table.window_start = spec.warmup
    media_columns(table, arrivals, scenario)
    priorities = np.array([s.priority for s in spec.workload], np.int64)
    table.priority[:] = priorities[table.stream]
    w.prioritized = len(set(priorities.tolist())) > 1
    plan = arrivals.sessions
    if plan is not None:
        calls = plan.node_of >= 0
        table.session[calls] = plan.session[plan.node_of[calls]]
        table.step[calls] = plan.step[plan.node_of[calls]]
        table.final[:] = plan.final
    w.log = BusyLog(spill=table.store.spill)


def build_replicas(w: World) -> None:
    """An engine per replica (per pipeline stage or expert-parallel rank), with its pipeline
    and prefix cache."""
    spec, scenario, table = w.spec, w.scenario, w.table
    # completions someone acts on at their time: central dispatch, closed-loop clients, replies
    stop_at_completions = (spec.router.dispatch == "central" or any(s.closed_loop for s in spec.workload)
                           or spec.ingress is not None or w.arrivals.sessions is not None)
    w.engine_pools = pool_of_engines(scenario)
    w.board = LoadBoard(len(w.engine_pools))
    for pool in w.engine_pools:
        role = pool.spec.serve.role
        kind = StaticReplica if pool.spec.serve.engine.batching == "static" else Replica
        if pool.deployment.model.diffusion is not None:   # image and video: step-level batching
            kind = DiffusionReplica
        rep = kind(w.env, len(w.replicas), pool.name, pool.deployment, pool.spec.serve.engine, table, w.log,
                   w.board, stop_at_completions, role, w.prioritized)
        w.replicas.append(rep)
        (w.decoders if role == "decode" else w.by_model).setdefault(pool.model_key, []).append(rep)
    served = sorted(w.by_model)
    w.model_of_stream = [s.model or (s.session.model if s.session else None) or served[0] for s in spec.workload]
    tune_batches(w)
    w.pipelines = pipeline.attach(w.env, scenario.pools, w.replicas)
    w.prefix = attach_prefix_caches(w.engine_pools, w.replicas, table, w.arrivals)


def tune_batches(w: World) -> None:
    """Engines with TensorRT-LLM's batch size tuning cap their batch at what their KV cache
    holds of the run's average request for their model (`serving/batch_tuning.py`); the
    average is taken once per model and the cap once per pool, then set on each replica."""
    tuned = [(pool, rep) for pool, rep in zip(w.engine_pools, w.replicas, strict=True)
             if isinstance(rep, Replica) and pool.spec.serve.engine.batch_size_tuning]
    lengths_of: dict[str, tuple[int, int] | None] = {}
    for pool, rep in tuned:
        key = pool.model_key
        if key not in lengths_of:
            lengths_of[key] = batch_tuning.average_lengths(w.table.prompt, w.table.output, _asks_for(w, key))
        lengths = lengths_of[key]
        if lengths is None:
            continue
        capacity = batch_tuning.capacity(rep.total_blocks, rep.dep.blocks_for(sum(lengths)))
        seqs = batch_tuning.tuned_batch(rep.max_seqs, capacity)
        if seqs < rep.max_seqs:
            note = (f"engine: batch of {seqs} sequences, not {rep.max_seqs} (TensorRT-LLM batch size tuning: "
                    f"the KV cache holds {capacity} requests of the run's average {lengths[0]} in / "
                    f"{lengths[1]} out)")
            if note not in pool.deployment.assumptions:
                pool.deployment.assumptions.append(note)
            rep.limit_batch(seqs)


def _asks_for(w: World, model: str) -> np.ndarray:
    """Which requests of the run ask for `model`: by their stream, or by their session call."""
    table = w.table
    if w.arrivals.sessions is None:
        streams = [i for i, m in enumerate(w.model_of_stream) if m == model]
        return np.isin(table.stream, streams)
    return np.array([w.model_of(r) == model for r in range(table.n)], dtype=bool)


def build_router(w: World) -> None:
    """The router in front of the replicas, with admission at the front door."""
    spec = w.spec
    admission = None
    if spec.admission is not None:
        admission = Admission(spec.admission, w.table, [s.tenant or s.name for s in spec.workload])
    w.router = Router(w.env, w.by_model, spec.router.policy, spec.router.queue_limit, spec.router.dispatch,
                      rng_for(w.seed, "router"), w.table, w.board, pool_figures(w.scenario, w.arrivals),
                      w.prioritized, (spec.router.cache_threshold, spec.router.balance_abs_threshold,
                                      spec.router.balance_rel_threshold),
                      model_of_request=w.model_of, admission=admission)


def build_fabric(w: World, trace: bool) -> None:
    """With a topology: engines placed on accelerators, requests and collectives carried as
    flows, head nodes sharing their cores; the KV hand-off of disaggregated pools."""
    spec = w.spec
    if spec.topology is not None:
        w.fabric = Fabric(w.env, spec.topology.graph(), bin_width=max(spec.duration / 200, 1e-3))
        if trace:
            w.fabric.flow_log = []
        w.placement = place(w.scenario)
    if spec.ingress is not None:
        carry_requests(w.env, spec, w.router, w.table, w.fabric, w.placement)
    w.lifecycle = Lifecycle(w.env, w.scenario, w.replicas, w.engine_pools, w.fabric, w.placement, w.router)
    if spec.topology is not None:
        engines = [p.spec.serve.engine for p in w.engine_pools]
        w.heads = attach_head_nodes(w.env, w.fabric.graph, w.replicas, engines, w.placement, w.fabric,
                                    w.table.store.spill)
        collectives_over_fabric(w.scenario, w.replicas, w.placement, w.fabric, w.pipelines)
    if w.decoders:
        model_of = {rep.index: pool.model_key for pool, rep in zip(w.engine_pools, w.replicas, strict=True)}
        disagg = Disaggregation(w.env, w.fabric, w.placement, w.decoders, w.table, model_of)
        for rep in w.replicas:
            if rep.role == "prefill":
                rep.prefilled.subscribe(disagg.hand_off)


def build_operations(w: World) -> None:
    """Failures and repairs, autoscalers and model swaps; then the first replicas start."""
    spec = w.spec
    for rep in w.replicas:   # a request that reaches a replica gone down: retried, or failed with a reason
        rep.lost.subscribe(w.router.lost)
    if spec.failures is not None:
        w.router.retry_limit = spec.failures.retries
        components = Components(w.scenario, w.placement or place(w.scenario))
    w.scalers = attach_autoscalers(w.env, w.scenario, w.lifecycle, w.router, w.table)
    scaled = {g for a in w.scalers for g in a.groups}
    if spec.failures is not None:
        # a repaired replica of an autoscaled pool stays off until its autoscaler wants it
        w.failures = Failures(w.env, spec.failures, components, w.lifecycle, w.fabric, rng_for(w.seed, "failures"),
                              spec.duration, wanted=lambda g: g not in scaled)
        for a in w.scalers:
            a.healthy = w.failures.healthy
    w.lifecycle.begin(set().union(*(a.initial_off() for a in w.scalers)))


def start_demand(w: World) -> None:
    """The open-loop source, session calls and their tool services, closed-loop clients; and
    the controllers that act on the running fleet (time slicing, the power cap)."""
    spec, env, table, router, arrivals = w.spec, w.env, w.table, w.router, w.arrivals
    # the open-loop requests come first, in time order (sim.demand.workload.generate); closed-loop
    # ones (time NaN until their client sends them) after
    open_loop = int(np.count_nonzero(~np.isnan(arrivals.time)))

    def source():
        times = arrivals.time
        for i in range(open_loop):
            yield at(env, float(times[i]))
            router.arrive(i, w.model_of(i))
            if i % SETTLE_EVERY == 0:
                table.settle(i)

    env.process(source())
    services = {s.name: ServiceStation(env, s.name, s.servers, s.service_time, rng_for(w.seed, "service", s.name))
                for s in spec.services}
    if arrivals.sessions is not None:
        w.sessions = SessionRunner(env, arrivals.sessions, table, router, w.model_of, services)
    device_share.attach(w.scenario, w.replicas)   # engines of pools on the same devices take turns
    if spec.power:
        w.power_cap = PowerCap(env, spec.power, w.scenario, w.replicas, w.engine_pools)
    closed = [i for i, s in enumerate(spec.workload) if s.closed_loop]
    if closed:
        ClosedLoop(env, spec, arrivals, table, router, w.model_of_stream, closed)


def run(w: World) -> None:
    """Until the drain ends, or until every request is accounted for."""
    spec = w.spec
    if spec.drain is None:
        # a power controller and head-node governors tick for ever: with them, run until the
        # last request is accounted for
        tickers = int(w.power_cap is not None) + sum(h.governs for h in w.heads)
        w.env.run() if not tickers else _run_until_done(w.env, w.table, spec, tickers)
    else:
        w.env.run(until=spec.duration + spec.drain)
    for rep in w.replicas:
        rep.sync()


def collect(w: World, wall_seconds: float) -> RunResult:
    """The request table of the requests that were sent, and each replica's figures."""
    sent = ~np.isnan(w.table.arrival)
    w.table.keep(sent)  # closed-loop requests never sent did not arrive
    reusable = w.prefix.reusable()[sent] if w.prefix is not None else None
    load_time = w.lifecycle.load_time
    infos = []
    for rep, pool in zip(w.replicas, w.engine_pools, strict=True):
        infos.append(ReplicaInfo(rep.index, pool.name, pool.device_key, pool.model_key, pool.deployment.tp,
                                 rep.busy_time, rep.preemptions, rep.total_blocks, rep.role,
                                 [str(a) for a in w.placement.get(rep.index, [])], load_time.get(rep.index),
                                 float(rep.params[kernels.K_OVERHEAD] * rep.params[kernels.K_HOST_SCALE]),
                                 rep.cache.evicted_blocks if rep.cache else 0,
                                 rep.cache.blocks_held() if rep.cache else 0, rep.itl))
    return RunResult(w.scenario, w.table, w.log, infos, w.env.now, wall_seconds, w.seed,
                     [s.name for s in w.spec.workload], w.fabric, next(w.env._eid), w.power_cap, w.sessions,
                     reusable, w.lifecycle, w.failures, w.scalers, w.pipelines, w.heads)


def _run_until_done(env, table, spec, tickers: int, step: float = 1.0) -> None:
    """Run past the arrival window until every request that arrived has completed or been
    rejected (the queue holds more than the `tickers` controllers' next ticks)."""
    env.run(until=spec.duration)
    # stop when nothing is open, or nothing but the controllers' next ticks is scheduled
    while ((table.state == 0) & ~np.isnan(table.arrival)).any() and len(env._queue) > tickers:
        env.run(until=env.now + step)


