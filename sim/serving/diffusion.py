"""A replica of an image or video diffusion transformer: step-level batching.

A request is `samples` images (or one clip), each a sequence of L latent tokens (see
`sim.demand.media`), to be denoised in `output` steps; its `prompt` column holds L x samples. The
engine batches at step boundaries, as diffusion servers that batch across requests do:

- at each boundary, waiting requests join in arrival order while the batch has room:
  `max_batch_seqs` samples, and `max_batch_tokens` tokens through the transformer per pass
  (sum of L x cfg_passes x samples: what sizes the activations);
- every request in the batch takes one step (cfg_passes transformer passes per sample);
- a request leaves when its steps are done, its images decoded by the VAE in that step.

With `engine.batching: static` a batch forms only when the replica is idle and runs until
all its requests are done (nobody joins midway).

A step's time is `kernels.diffusion_step_time`: the transformer pass over the batch's tokens
(non-causal attention over every pair of a sample's tokens, and over its cross-attention
tokens; the per-sample modulation weights once per sample and pass), plus the text encoders
of the requests admitted at this step and the VAE decoding of those finishing in it. One
SimPy event per step. Records: `admitted` (its first step starts), `generated` (steps done),
`finished`; no first token (NaN: time to first token does not apply to an image).
"""
from __future__ import annotations

import numpy as np

from ..catalog.hardware import BYTES_PER_ELEMENT
from ..core.clock import at
from ..timing import kernels
from .static import ProcessReplica


class DiffusionReplica(ProcessReplica):
    def __init__(self, env, index, pool, deployment, engine, table, log, board, stop_at_completions=False,
                 role="both", prioritized=False):
        super().__init__(env, index, pool, deployment, engine, table, log, board, stop_at_completions, role,
                         prioritized)
        d = deployment.model.diffusion
        tp = deployment.tp
        wb = BYTES_PER_ELEMENT[deployment.precision]
        self.cfg_passes = d.cfg_passes
        self.cross = float(d.cross_attention_tokens)
        # the router compares a request's prompt (latent tokens x images) with max_tokens:
        # the batch-token cap counts each pass, so in latent tokens it is max_batch_tokens / passes
        self.max_tokens = engine.max_batch_tokens // d.cfg_passes
        self.tokenize_per_token = 0.0    # the prompt's text is encoded by the text encoders (per request)
        self.encode_flops = d.text_encoder_flops / tp
        self.encode_bytes = d.text_encoder_params * wb / tp
        self.decode_per_pixel = d.vae_decode_flops_per_pixel / tp
        self.decode_bytes = d.vae_params * wb / tp

    def kv_load(self) -> float:
        """Share of the batch-token budget the running and waiting requests take (no KV cache)."""
        prompt = self.table.prompt
        used = sum(int(prompt[r]) for r in self.req) + sum(int(prompt[r]) for r in self.waiting)
        return used / max(self.max_tokens, 1)

    def step_time(self, req: list[int], admitted: list[int], finishing: list[int]) -> tuple[float, int]:
        """One denoising step of the batch `req`: its duration and the tokens it puts through
        the transformer (all passes)."""
        table = self.table
        idx = np.asarray(req, np.int64)
        samples = np.maximum(table.samples[idx], 1).astype(float)
        L = table.prompt[idx] / samples
        c = float(self.cfg_passes)
        tokens = c * float(table.prompt[idx].sum())
        passes = c * float(samples.sum())
        pairs = c * float((samples * (L * L + L * self.cross)).sum())
        ctx = c * float((samples * (L + self.cross)).sum())
        encode = self.encode_flops * len(admitted)
        decode = self.decode_per_pixel * float(table.pixels[finishing].sum()) if finishing else 0.0
        dt = kernels.diffusion_step_time(tokens, passes, pairs, ctx, encode, self.encode_bytes if admitted else 0.0,
                                         decode, self.decode_bytes if finishing else 0.0, self.params)
        return dt, int(tokens)

    def _admit(self, n_samples: int, tokens: int) -> list[int]:
        """Waiting requests that join at this boundary, in arrival order, while they fit."""
        table = self.table
        out = []
        while self.waiting:
            r = self.waiting[0]
            s = max(int(table.samples[r]), 1)
            p = int(table.prompt[r])
            if n_samples + s > self.max_seqs or tokens + p > self.max_tokens:
                break
            self.waiting.popleft()
            out.append(r)
            n_samples += s
            tokens += p
        return out

    def _loop(self):
        env = self.env
        table = self.table
        yield self.ready
        left: dict[int, int] = {}       # steps each running request still needs
        while True:
            if not self.waiting and not self.req:
                self._work = env.event()
                yield self._work
            admitted = []
            if not (self.static and self.req):
                n_samples = sum(max(int(table.samples[r]), 1) for r in self.req)
                admitted = self._admit(n_samples, sum(int(table.prompt[r]) for r in self.req))
                for r in admitted:
                    left[r] = int(table.output[r])
                self.req = self.req + admitted
            if not self.req:   # the head request can never fit; the router rejects those up front
                raise RuntimeError("diffusion batch could not admit its head request")
            finishing = [r for r in self.req if left[r] == 1]
            dt, tokens = self.step_time(self.req, admitted, finishing)
            t0 = self.batch_start = env.now
            if admitted:
                table.admitted[admitted] = t0
            self.busy_until = t0 + dt
            self._publish_plan()
            yield at(env, t0 + dt)
            if self.collective is not None:      # tensor parallelism over the fabric
                yield from self.collective(tokens)
            t1 = env.now
            self.busy_time += t1 - t0
            self.iterations += 1
            self.log.add(self.index, t0, t1, 1, tokens, 0, self.clock, self.host_wait())
            running = []
            for r in self.req:
                left[r] -= 1
                table.generated[r] += 1
                if left[r] == 0:
                    del left[r]
                    table.complete(r, t1)
                else:
                    running.append(r)
            done = len(running) < len(self.req)
            self.req = running
            self.busy_until = np.inf
            self._publish_plan()
            if done:
                self._notify()


class DiffusionFigures:
    """What the pool-aware routing policies read of a diffusion pool (the fields of
    `router.PoolFigures`), from its step time: `step[b - 1]` is one denoising step with b
    typical samples in the batch (beyond what fits, the batches ahead of it: the step at the
    largest batch that fits, times how many such batches), the per-request work (text
    encoding, VAE decoding) per latent token in `prefill_per_token`, and dollars per
    sample-step at a full batch."""

    def __init__(self, deployment, engine, prompt: float, output: float, samples: float, pixels: float,
                 usd_per_hour: float | None, weight: float):
        d = deployment.model.diffusion
        tp = deployment.tp
        wb = BYTES_PER_ELEMENT[deployment.precision]
        p = deployment.params
        s = max(samples, 1.0)
        L = max(prompt / s, 1.0)
        c = float(d.cfg_passes)
        fit = max(1, min(engine.max_batch_seqs, int(engine.max_batch_tokens // max(c * L, 1.0))))

        def step(b):
            return kernels.diffusion_step_time(c * L * b, c * b, c * b * (L * L + L * d.cross_attention_tokens),
                                               c * b * (L + d.cross_attention_tokens), 0.0, 0.0, 0.0, 0.0, p)
        full = step(fit)
        self.step = np.array([step(b) if b <= fit else full * -(-b // fit)
                              for b in range(1, engine.max_batch_seqs + 1)])
        extras = (kernels.roofline(d.text_encoder_flops / tp, d.text_encoder_params * wb / tp, p[kernels.K_GEMM_RATE],
                                   p[kernels.K_MEM_RATE])
                  + kernels.roofline(d.vae_decode_flops_per_pixel * pixels / tp, d.vae_params * wb / tp,
                                     p[kernels.K_GEMM_RATE], p[kernels.K_MEM_RATE]))
        self.prefill_per_token = extras / max(prompt, 1.0)
        per_s = fit / full
        self.usd_per_token = np.inf if usd_per_hour is None else usd_per_hour / 3600.0 / per_s
        self.weight = weight
