"""Collectives that leave the scale-up domain: tensor-parallel all-reduces, pipeline stage
sends and expert-parallel all-to-alls as flows over the fabric."""
from __future__ import annotations

import math

from ..core.clock import at
from ..timing import kernels


def collectives_over_fabric(scenario, replicas, placement, fabric, pipelines) -> None:
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
                hop = max(fabric.path_latency(a, b) for a, b in zip(st, st[1:] + st[:1], strict=True))
                rounds = 2 * math.ceil(math.log2(n)) if tree else 2 * (n - 1)
                rings.append(_ring(fabric, tree, st, calls * hidden_bytes, (calls - 1) * rounds * hop))
        if pp_over_fabric:   # the pipeline's stage sends become flows between the stages' devices
            pipe = pipeline_of[rep.index]
            pipe.sends = [_stage_send(fabric, a, b, hidden_bytes / tp)
                          for a, b in zip(stages, stages[1:], strict=False)]
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
        yield fabric.env.all_of([fabric.transfer(x, y, tokens * per_token, "pp-send")
                                 for x, y in zip(src, dst, strict=True)])
    return send
