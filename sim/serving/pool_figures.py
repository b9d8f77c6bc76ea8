"""What the cost- and latency-aware routing policies know of each pool before the run."""
from __future__ import annotations

import numpy as np

from ..catalog import economics
from .diffusion import DiffusionFigures
from .router import PoolFigures


def pool_figures(scenario, arrivals) -> dict[str, PoolFigures] | None:
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
        cost = economics.device_cost_per_hour(dep.device, scenario.pricing.name, eco.amortize_years,
                                              eco.cost_of_capital)
        usd = None
        if cost.usd_per_hour is not None:
            devices = pool.spec.count / (pool.replicas * pool.spec.engines_per_replica)   # per engine
            usd = cost.usd_per_hour * devices
            watts = economics.device_power(dep.device, 1.0)
            if cost.pays_for_power and watts is not None:
                usd += ((watts + economics.node_power_per_device(dep.device, 1.0)) * devices * eco.pue / 1000
                        * eco.usd_per_kwh)
        weight = (spec.router.weights or {}).get(pool.name, 0.0)
        if dep.model.diffusion is not None:
            samples = float(arrivals.samples[mine].mean()) if mine.any() else 1.0
            pixels = float(arrivals.pixels[mine].mean()) if mine.any() else 0.0
            out[pool.name] = DiffusionFigures(dep, pool.spec.serve.engine, prompt, output, samples, pixels, usd, weight)
            continue
        out[pool.name] = PoolFigures(dep.params, pool.spec.serve.engine.max_batch_seqs, prompt, output, usd, weight)
    return out
