"""Build the SimPy world from a validated scenario and run it.

    arrivals (workload) -> router -> replicas (one SimPy process each) -> request table
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from . import economics, kernels, sharing
from .metrics import BusyLog, RequestTable
from .scenario import Scenario
from .network import Fabric
from .ops.admission import Admission
from .ops import device_share
from .ops.failures import Components, Failures
from .ops.autoscaler import Autoscaler
from .ops.lifecycle import Lifecycle
from .ops.model_swap import ModelSwap
from .ops.power_cap import PowerCap
from .serving.clock import at
from .serving import pipeline
from .serving.disagg import Disaggregation
from .serving.head_node import attach_head_nodes
from .serving.replica import LoadBoard, Replica
from .serving.prefix_cache import Directory, PrefixCache, PrefixIndex
from .serving.diffusion import DiffusionFigures, DiffusionReplica
from .serving.static import StaticReplica
from .serving.router import PoolFigures, Router
from .serving.session_runner import ServiceStation, SessionRunner
from .workload import generate, media_columns, rng_for, stream_models


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
    itl: np.ndarray | None = None                           # inter-token gaps in the window (scheduler.itl_edges)


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


SETTLE_EVERY = 1 << 16    # arrivals between looks for requests that have ended (sim.column_store)


def simulate(scenario: Scenario, seed: int | None = None, trace: bool = False) -> RunResult:
    """Run one scenario; `seed` overrides the scenario's seed. `trace` keeps a record of
    every network flow (`Fabric.flow_log`) for `sim.trace`."""
    spec = scenario.spec
    seed = spec.seed if seed is None else seed
    wall0 = time.perf_counter()
    arrivals = generate(spec.workload, spec.duration, seed, stream_models(scenario))
    table = RequestTable(arrivals.time, arrivals.stream, arrivals.prompt, arrivals.output)
    # one copy of the inputs: the table's (in memory they are the same arrays already)
    arrivals.time, arrivals.stream, arrivals.prompt, arrivals.output = table.arrival, table.stream, table.prompt, \
        table.output
    table.window_start = spec.warmup
    media_columns(table, arrivals, scenario)
    priorities = np.array([s.priority for s in spec.workload], np.int64)
    table.priority[:] = priorities[table.stream]
    prioritized = len(set(priorities.tolist())) > 1
    plan = arrivals.sessions
    if plan is not None:
        calls = plan.node_of >= 0
        table.session[calls] = plan.session[plan.node_of[calls]]
        table.step[calls] = plan.step[plan.node_of[calls]]
        table.final[:] = plan.final
    log = BusyLog(spill=table.store.spill)
    env = simpy.Environment()
    closed = [i for i, s in enumerate(spec.workload) if s.closed_loop]
    # completions someone acts on at their time: central dispatch, closed-loop clients, replies
    stop_at_completions = (spec.router.dispatch == "central" or bool(closed) or spec.ingress is not None
                           or plan is not None)

    replicas: list[Replica] = []
    board = LoadBoard(sum(p.replicas * p.spec.engines_per_replica for p in scenario.pools))
    by_model: dict[str, list[Replica]] = {}       # replicas new requests go to
    decoders: dict[str, list[Replica]] = {}       # disaggregated decode replicas
    for pool in scenario.pools:
        role = pool.spec.serve.role
        for _ in range(pool.replicas * pool.spec.engines_per_replica):  # pp stages or ep ranks
            kind = StaticReplica if pool.spec.serve.engine.batching == "static" else Replica
            if pool.deployment.model.diffusion is not None:   # image and video: step-level batching
                kind = DiffusionReplica
            rep = kind(env, len(replicas), pool.name, pool.deployment, pool.spec.serve.engine, table, log, board,
                       stop_at_completions, role, prioritized)
            replicas.append(rep)
            (decoders if role == "decode" else by_model).setdefault(pool.model_key, []).append(rep)
    pipelines = pipeline.attach(env, scenario.pools, replicas)
    prefix = attach_prefix_caches(scenario, replicas, table, arrivals)
    router = Router(env, by_model, spec.router.policy, spec.router.queue_limit, spec.router.dispatch,
                    rng_for(seed, "router"), table, board, pool_figures(scenario, arrivals), prioritized,
                    (spec.router.cache_threshold, spec.router.balance_abs_threshold,
                     spec.router.balance_rel_threshold))
    if spec.admission is not None:
        router.admission = Admission(spec.admission, table, [s.tenant or s.name for s in spec.workload])

    fabric, placement = None, {}
    if spec.topology is not None:
        fabric = Fabric(env, spec.topology.graph(), bin_width=max(spec.duration / 200, 1e-3))
        if trace:
            fabric.flow_log = []
        placement = place(scenario)
    if spec.ingress is not None:
        carry_requests(env, spec, router, table, fabric, placement)
    lifecycle = Lifecycle(env, scenario, replicas, _pool_per_replica(scenario), fabric, placement, router)
    load_time = lifecycle.load_time
    heads = []
    if spec.topology is not None:
        engines = [p.spec.serve.engine for p in _pool_per_replica(scenario)]
        heads = attach_head_nodes(env, fabric.graph, replicas, engines, placement, fabric, table.store.spill)
        collectives_over_fabric(scenario, replicas, placement, fabric, pipelines)
    if decoders:
        model_of = {rep.index: pool.model_key for pool, rep in zip(_pool_per_replica(scenario), replicas)}
        disagg = Disaggregation(env, fabric, placement, decoders, table, model_of)
        for rep in replicas:
            if rep.role == "prefill":
                rep.on_prefilled = disagg.hand_off

    served = sorted(by_model)
    model_of_stream = [s.model or (s.session.model if s.session else None) or served[0] for s in spec.workload]

    def model_of(r: int) -> str:
        named = plan.model[r] if plan is not None else None
        return named or model_of_stream[arrivals.stream[r]]

    router.model_of_request = model_of
    failures = None
    if spec.failures is not None:
        router.retry_limit = spec.failures.retries
        for rep in replicas:
            rep.on_lost = router.lost
        components = Components(scenario, placement or place(scenario))
    scalers = autoscalers(env, scenario, lifecycle, router, table)
    scaled = {g for a in scalers for g in a.groups}
    if spec.failures is not None:
        # a repaired replica of an autoscaled pool stays off until its autoscaler wants it
        failures = Failures(env, spec.failures, components, lifecycle, fabric, rng_for(seed, "failures"),
                            spec.duration, wanted=lambda g: g not in scaled)
        for a in scalers:
            a.healthy = failures.healthy
    lifecycle.begin(set().union(*(a.initial_off() for a in scalers)))

    # the open-loop requests come first, in time order (sim.workload.generate); closed-loop
    # ones (time NaN until their client sends them) after
    open_loop = int(np.count_nonzero(~np.isnan(arrivals.time)))

    def source():
        times = arrivals.time
        for i in range(open_loop):
            yield at(env, float(times[i]))
            router.arrive(i, model_of(i))
            if i % SETTLE_EVERY == 0:
                table.settle(i)

    env.process(source())
    services = {s.name: ServiceStation(env, s.name, s.servers, s.service_time, rng_for(seed, "service", s.name))
                for s in spec.services}
    runner = SessionRunner(env, plan, table, router, model_of, services) if plan is not None else None
    device_share.attach(scenario, replicas)   # engines of pools on the same devices take turns
    power_cap = PowerCap(env, spec.power, scenario, replicas, _pool_per_replica(scenario)) if spec.power else None
    if closed:
        ClosedLoop(env, spec, arrivals, table, router, model_of_stream, closed)
    if spec.drain is None:
        # a power controller and head-node governors tick for ever: with them, run until the
        # last request is accounted for
        tickers = int(power_cap is not None) + sum(h.governs for h in heads)
        env.run() if not tickers else _run_until_done(env, table, spec, tickers)
    else:
        env.run(until=spec.duration + spec.drain)
    for rep in replicas:
        rep.sync()
    end = env.now
    sent = ~np.isnan(table.arrival)
    table.keep(sent)  # closed-loop requests never sent did not arrive
    reusable = prefix.reusable()[sent] if prefix is not None else None
    infos = []
    for rep, pool in zip(replicas, _pool_per_replica(scenario)):
        infos.append(ReplicaInfo(rep.index, pool.name, pool.device_key, pool.model_key, pool.deployment.tp,
                                 rep.busy_time, rep.preemptions, rep.total_blocks, rep.role,
                                 [str(a) for a in placement.get(rep.index, [])], load_time.get(rep.index),
                                 float(rep.params[kernels.K_OVERHEAD] * rep.params[kernels.K_HOST_SCALE]),
                                 rep.cache.evicted_blocks if rep.cache else 0,
                                 rep.cache.blocks_held() if rep.cache else 0, rep.itl))
    return RunResult(scenario, table, log, infos, end, time.perf_counter() - wall0, seed,
                     [s.name for s in spec.workload], fabric, next(env._eid), power_cap, runner, reusable,
                     lifecycle, failures, scalers, pipelines, heads)


def autoscalers(env, scenario: Scenario, lifecycle: Lifecycle, router: Router, table) -> list[Autoscaler]:
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
        router.on_starved = starved
    return out


def attach_prefix_caches(scenario: Scenario, replicas, table: RequestTable, arrivals) -> PrefixIndex | None:
    """Replicas of pools with engine.prefix_cache get a cache; those serving one model share
    a directory of who holds what (for cache-aware routing)."""
    index = None
    directories: dict[str, Directory] = {}
    for rep, pool in zip(replicas, _pool_per_replica(scenario)):
        if not pool.spec.serve.engine.prefix_cache:
            continue
        if index is None:
            index = prefix_index(table.n, arrivals)
        directory = directories.setdefault(pool.model_key, Directory())
        rep.cache = PrefixCache(rep.index, rep.bs, index, table, directory)
    return index


def prefix_index(n: int, arrivals) -> PrefixIndex:
    """What each request of the run could reuse: calls that extend an earlier call's context
    (the session plan), and shared system prompts (of sessions and of plain streams)."""
    plan = arrivals.sessions
    prefix_of = plan.prefix_of if plan is not None else None
    system = np.full(n, -1, np.int64)
    system_len = np.zeros(n, np.int64)
    for source in (plan, arrivals):
        if source is not None and source.system is not None:
            has = source.system >= 0
            system[has], system_len[has] = source.system[has], source.system_len[has]
    return PrefixIndex(n, prefix_of, system, system_len)


def _run_until_done(env, table, spec, tickers: int, step: float = 1.0) -> None:
    """Run past the arrival window until every request that arrived has completed or been
    rejected (the queue holds more than the `tickers` controllers' next ticks)."""
    env.run(until=spec.duration)
    # stop when nothing is open, or nothing but the controllers' next ticks is scheduled
    while ((table.state == 0) & ~np.isnan(table.arrival)).any() and len(env._queue) > tickers:
        env.run(until=env.now + step)


def pool_figures(scenario: Scenario, arrivals) -> dict[str, PoolFigures] | None:
    """Per pool, what the weighted, lowest-latency and lowest-cost policies read; None for
    the other policies. The typical request is the mean of the pool's model's streams."""
    spec = scenario.spec
    if spec.router.policy not in ("weighted", "lowest-latency", "lowest-cost"):
        return None
    eco = spec.economics
    served = sorted(scenario.models_served())
    out = {}
    for pool in scenario.pools:
        streams = [i for i, s in enumerate(spec.workload) if (s.model or served[0]) == pool.model_key]
        mine = np.isin(arrivals.stream, streams)
        prompt = float(arrivals.prompt[mine].mean()) if mine.any() else 1024.0
        output = float(arrivals.output[mine].mean()) if mine.any() else 256.0
        dep = pool.deployment
        cost = economics.device_cost_per_hour(dep.device, scenario.pricing.name, eco.amortize_years, eco.cost_of_capital)
        usd = None
        if cost.usd_per_hour is not None:
            devices = pool.spec.count / (pool.replicas * pool.spec.engines_per_replica)   # per engine
            usd = cost.usd_per_hour * devices
            watts = economics.device_power(dep.device, 1.0)
            if cost.pays_for_power and watts is not None:
                usd += (watts + economics.node_power_per_device(dep.device, 1.0)) * devices * eco.pue / 1000 * eco.usd_per_kwh
        weight = (spec.router.weights or {}).get(pool.name, 0.0)
        if dep.model.diffusion is not None:
            samples = float(arrivals.samples[mine].mean()) if mine.any() else 1.0
            pixels = float(arrivals.pixels[mine].mean()) if mine.any() else 0.0
            out[pool.name] = DiffusionFigures(dep, pool.spec.serve.engine, prompt, output, samples, pixels, usd, weight)
            continue
        out[pool.name] = PoolFigures(dep.params, pool.spec.serve.engine.max_batch_seqs, prompt, output, usd, weight)
    return out


def carry_requests(env, spec, router, table, fabric, placement) -> None:
    """Requests enter at the ingress node: the prompt's payload flows to the replica's host
    CPU before the replica sees it; the reply's flows back when the request completes."""
    topo = spec.topology
    node, per_token = spec.ingress.node, spec.ingress.bytes_per_token
    host = {i: topo.host_cpu(nodes[0]) for i, nodes in placement.items()}

    def deliver(rep, r):
        flow = fabric.transfer(node, host[rep.index], float(table.prompt[r]) * per_token, "request")
        flow.callbacks.append(lambda _: rep.submit(r))
    router.deliver = deliver

    previous = table.on_done

    def reply(r, when):
        if table.state[r] == 1 and table.replica[r] >= 0:
            fabric.transfer(host[int(table.replica[r])], node, float(table.output[r]) * per_token, "reply")
        if previous is not None:
            previous(r, when)
    table.on_done = reply


def collectives_over_fabric(scenario: Scenario, replicas, placement, fabric, pipelines) -> None:
    """Communication that cannot stay on the scale-up link runs as flows over the fabric.

    - A tensor-parallel group whose devices sit in more than one scale-up domain: each
      iteration's all-reduces (layers x per layer x tokens x hidden x 2 bytes) run as one ring
      of flows, plus the hop latency of the remaining per-layer calls.
    - Pipeline stages in different domains: a micro-batch's activations go from each stage
      to the next as tp flows (device i to device i) of tokens x hidden x 2 / tp bytes.
    """
    topo = scenario.spec.topology
    pipeline_of = {rep.index: pipe for pipe in pipelines for rep in pipe.engines}
    for rep in replicas:
        nodes, tp, pp, ep = placement[rep.index], rep.dep.tp, rep.dep.pp, rep.dep.ep
        stages = [nodes[s * tp:(s + 1) * tp] for s in range(pp)]
        tp_over_fabric = ep == 1 and any(len({topo.scale_up_domain(a) for a in st}) > 1 for st in stages)
        pp_over_fabric = pp > 1 and len({topo.scale_up_domain(st[0]) for st in stages}) > 1
        ep_over_fabric = ep > 1 and len({topo.scale_up_domain(a) for a in nodes}) > 1
        if not (tp_over_fabric or pp_over_fabric or ep_over_fabric):
            continue
        p = rep.params = rep.params.copy()
        hidden_bytes = p[kernels.K_HIDDEN] * p[kernels.K_ABYTES]
        calls = p[kernels.K_LAYERS] * p[kernels.K_ALLREDUCES] / pp  # per stage
        tree = p[kernels.K_TREE] > 0
        rings, steps = [], []   # each a generator function of the iteration's token count
        if tp_over_fabric:
            p[kernels.K_TP] = 1.0  # the kernel's own all-reduce term is replaced by the flows
            for st in stages:
                n = len(st)
                hop = max(fabric.path_latency(a, b) for a, b in zip(st, st[1:] + st[:1]))
                rounds = 2 * math.ceil(math.log2(n)) if tree else 2 * (n - 1)
                rings.append(_ring(fabric, tree, st, calls * hidden_bytes, (calls - 1) * rounds * hop))
        if pp_over_fabric:   # the pipeline's stage sends become flows between the stages' devices
            pipe = pipeline_of[rep.index]
            pipe.sends = [_stage_send(fabric, a, b, hidden_bytes / tp) for a, b in zip(stages, stages[1:])]
        if ep_over_fabric:
            # this rank's share of every MoE layer's dispatch and combine: its tokens' hidden
            # vectors (x active experts) to the other ranks and back, as flows; the kernel's
            # all-to-all term is dropped, and the per-layer latency added
            p[kernels.K_EP_ON_LINK] = 0.0
            moe = p[kernels.K_MOE_LAYERS]
            per_token = moe * p[kernels.K_ACTIVE] * hidden_bytes / ep
            hop = max(fabric.path_latency(nodes[0], b) for b in nodes[1:])
            steps.append(_all_to_all(fabric, nodes, per_token, (2 * moe - 2) * hop))

        if rep.index in pipeline_of:   # in a pipeline each stage runs its own ring while it holds the stage
            pipe = pipeline_of[rep.index]
            if tp_over_fabric and pipe.stage_comm is None:
                pipe.stage_comm = rings
            continue
        steps = rings + steps
        if not steps:
            continue

        def collective(tokens, steps=steps):
            for step in steps:
                yield from step(tokens)
        rep.collective = collective
        if rep.stepper is None and hasattr(rep, "_stepped_loop"):
            rep.stepper = _after_kernel(collective)


def _after_kernel(collective):
    """Stepping with collectives over the fabric: the kernel's time, then the flows."""
    def step(rep, kernel: float, tokens: int, seqs: int):
        yield at(rep.env, rep.t_free + kernel)
        yield from collective(tokens)
    return step


def _ring(fabric, tree: bool, devices: list, per_token: float, extra_latency: float):
    """A tensor-parallel group's all-reduces over the fabric (a pipeline stage's, or the whole
    replica's): one ring (or tree) of flows, and the hop latency of its other calls."""
    def ring(tokens: int):
        algorithm = fabric.tree_allreduce if tree else fabric.ring_allreduce
        yield from algorithm(devices, tokens * per_token, "tp-allreduce")
        yield fabric.env.timeout(extra_latency)
    return ring


def _all_to_all(fabric, ranks: list, per_token: float, extra_latency: float):
    """This rank's (ranks[0]) all-to-all over the fabric: dispatch out, then combine back."""
    def exchange(tokens: int):
        me, others = ranks[0], ranks[1:]
        for a, b in ((me, None), (None, me)):
            yield fabric.env.all_of([fabric.transfer(a or o, b or o, tokens * per_token, "ep-all-to-all")
                                     for o in others])
        yield fabric.env.timeout(extra_latency)
    return exchange


def _stage_send(fabric, src: list, dst: list, per_token: float):
    """A pipeline stage's activations to the next: device i to device i, as flows."""
    def send(tokens: int):
        yield fabric.env.all_of([fabric.transfer(x, y, tokens * per_token, "pp-send") for x, y in zip(src, dst)])
    return send


def _pool_per_replica(scenario: Scenario):
    """The pool of each engine (a replica runs pp engines over its stages, or one per ep rank)."""
    return [p for p in scenario.pools for _ in range(p.replicas * p.spec.engines_per_replica)]


def place(scenario: Scenario) -> dict[int, list[str]]:
    """Engine index -> the accelerators of its replica, stage by stage (tp per stage): pools
    in order, each replica taking the next tp x pp accelerators of the topology's placement
    order, so a tensor-parallel group stays inside a server when tp divides its accelerators.
    The pp engines of a pipeline replica share its accelerators. Without a topology the
    devices are named by their index, 0.., in the same order."""
    if sharing.shares_devices(scenario):   # MIG slices, or pools on another pool's devices
        return sharing.place(scenario)
    topo = scenario.spec.topology
    accels = topo.accelerators() if topo is not None else [str(i) for i in range(sum(p.spec.count for p in scenario.pools))]
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


class ClosedLoop:
    """Clients of closed-loop streams: each sends its next request when its last one ends
    (completed or rejected), `think_time` later, until the stream's `requests` are sent or
    the arrival window closes."""

    def __init__(self, env, spec, arrivals, table, router, model_of_stream, streams):
        self.env, self.spec, self.table, self.router = env, spec, table, router
        self.model_of_stream = model_of_stream
        self.pending = {s: list(np.nonzero(arrivals.stream == s)[0][::-1]) for s in streams}
        self._previous = table.on_done
        table.on_done = self._done
        for s in streams:
            for _ in range(spec.workload[s].concurrency):
                self._send(s, 0.0)

    def _send(self, s: int, when: float) -> None:
        if not self.pending[s] or when >= self.spec.duration:
            return
        r = int(self.pending[s].pop())
        # a separate event, so a completion never re-enters the replica that reported it
        at(self.env, max(when, self.env.now)).callbacks.append(lambda _: self._arrive(r, s))

    def _arrive(self, r: int, s: int) -> None:
        self.table.arrival[r] = self.env.now
        self.router.arrive(r, self.model_of_stream[s])

    def _done(self, r: int, when: float) -> None:
        if self._previous is not None:
            self._previous(r, when)
        s = int(self.table.stream[r])
        if s in self.pending:
            self._send(s, when + self.spec.workload[s].think_time)
