"""Pipeline parallelism: micro-batches through stages.

A replica of pp stages (each of tp devices holding 1/pp of the layers) runs pp engines, as
vLLM's virtual engines do: each has its own requests and 1/pp of the KV cache, and each
iteration of an engine is a micro-batch. The host forms the micro-batch, then it passes the
stages in order; a stage computes one micro-batch at a time, first come first served, and
hands its activations to the next stage over the link between them. So a micro-batch waits
while another engine's holds a stage (a long prefill chunk holds back the decodes behind
it), and a stage idles while the micro-batches are elsewhere: the pipeline's bubbles. With
one busy engine a token takes the whole pass; with pp equal micro-batches every stage works.

Each engine plans one iteration at a time (`Replica` in stepped mode) with a cost vector of
the device's work alone, all layers; the stage computes 1/pp of it.
"""
from __future__ import annotations

import numpy as np
import simpy

from ..timing import kernels as K


class Pipeline:
    def __init__(self, env: simpy.Environment, params: np.ndarray):
        p = params
        self.env = env
        self.pp = int(p[K.K_PP])
        self.stages = [simpy.Resource(env, capacity=1) for _ in range(self.pp)]
        self.busy = np.zeros(self.pp)             # seconds each stage computed
        self.host = float(p[K.K_OVERHEAD])
        self.host_per_seq = float(p[K.K_HOST_PER_SEQ])
        self.overlap = p[K.K_HOST_OVERLAP] > 0.0
        # a stage's activations go to the next over tp links in parallel
        self.send_per_token = float(p[K.K_HIDDEN] * p[K.K_ABYTES] / p[K.K_TP] / p[K.K_LINK_BW]) \
            if p[K.K_LINK_BW] > 0 else 0.0
        self.send_latency = float(p[K.K_LINK_LAT])
        self.sends = None        # per stage boundary: a generator of fabric flows, when stages are apart
        self.stage_comm = None   # per stage: its all-reduces as fabric flows, when its tp group is apart
        self.engines: list = []

    @staticmethod
    def device_params(params: np.ndarray) -> np.ndarray:
        """The cost vector an engine plans with: the device's work for all layers, without the
        host's part or the stage sends, which the pipeline adds in their places."""
        p = params.copy()
        p[K.K_OVERHEAD] = p[K.K_HOST_PER_SEQ] = 0.0
        p[K.K_HOST_OVERLAP] = 0.0
        p[K.K_PP] = 1.0
        return p

    def run(self, device: float, tokens: int, seqs: int):
        """One micro-batch: the host forms it, then stage by stage (a SimPy generator)."""
        env = self.env
        host = self.host + self.host_per_seq * seqs
        if host > 0.0 and not self.overlap:
            yield env.timeout(host)
        tau = device / self.pp
        for s, stage in enumerate(self.stages):
            request = stage.request()
            yield request
            yield env.timeout(tau)
            if self.stage_comm is not None:
                yield from self.stage_comm[s](tokens)
            stage.release(request)
            self.busy[s] += tau
            if s + 1 < self.pp:
                if self.sends is not None:
                    yield from self.sends[s](tokens)
                else:
                    yield env.timeout(tokens * self.send_per_token + self.send_latency)


def attach(env, pools, replicas) -> list[Pipeline]:
    """A pipeline for each replica of pp > 1 stages, shared by its pp engines, which then
    plan one iteration at a time with the device's cost vector."""
    pipelines, i = [], 0
    for pool in pools:
        per = pool.spec.engines_per_replica
        for _ in range(pool.replicas):
            engines = replicas[i:i + per]
            i += per
            if pool.deployment.pp <= 1 or pool.deployment.model.diffusion is not None:
                continue
            if not all(hasattr(rep, "_stepped_loop") for rep in engines):
                continue          # static batching keeps the whole pass in its kernel
            pipe = Pipeline(env, engines[0].params)
            pipe.engines = engines
            for rep in engines:
                rep.params = Pipeline.device_params(rep.params)
                rep.stepper = _stepper(pipe)
            pipelines.append(pipe)
    return pipelines


def _stepper(pipe: Pipeline):
    def step(rep, device: float, tokens: int, seqs: int):
        yield from pipe.run(device, tokens, seqs)
    return step
