"""Where an iteration's time comes from, chosen once per pool when the scenario is built.

1. `measured`: for a device whose catalog entry names a system in aiconfigurator-core's
   kernel database (`kernel_tables:`) and a model the composition covers, every operator of
   the iteration is looked up in the serving framework's own measurements
   (`sim.timing.measured`) and the sums are tabulated (`sim.timing.tables`); the compiled
   scheduler only reads the tables.
2. `analytical`: everywhere else, the same composition with each operator timed by the
   shape-aware roofline of `sim.timing.analytical` (datasheet rates, microbenchmark
   efficiencies, kernel floors); for models the composition does not cover (state-space,
   latent attention, encoders and diffusion transformers, expert parallelism), the
   closed-form roofline of `sim.timing.kernels` over aggregated operators.

`build` returns the cost vector to use and a `Timing` that says which source each pool got
(the console, summary.json and the report print its label) and what was assumed on the way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import database
from . import kernels as K
from .analytical import Analytical
from .measured import Measured
from .operators import operators, unsupported
from .tables import compose, pack

SOURCES = ("auto", "measured", "analytical")


@dataclass
class Timing:
    source: str                     # "measured" or "analytical"
    label: str                      # e.g. "measured (aiconfigurator-core 0.12.0, vllm 0.24.0)"
    notes: list[str] = field(default_factory=list)


class TimingError(ValueError):
    """`timing: measured` was asked for where no measurement applies."""


def build(deployment, engine, framework: str, version: str | None,
          max_context: int | None) -> tuple[np.ndarray, Timing]:
    """The cost vector (with its tables, and the engine's host costs) and the timing source of
    a deployment. The pool's `engine.timing` says which: auto (measured where possible),
    measured (an error where not possible) or analytical."""
    d = deployment
    host(d.params, d, engine)
    context = max_context or 131072
    notes = []
    if engine.timing != "analytical":
        why = _why_not_measured(d, framework)
        if why is None:
            return _measured(d, framework, version, context)
        if engine.timing == "measured":
            raise TimingError(f"timing: measured is not possible here: {why}")
        notes.append(f"timing analytical: {why}")
    return _analytical(d, context, notes)


def _measured(d, framework: str, version: str | None, context: int) -> tuple[np.ndarray, Timing]:
    system = d.device.kernel_tables
    fallback = Analytical(d.device, d.precision, custom_allreduce=d.limits.custom_allreduce)
    times = Measured(system, framework, version, fallback)
    ops = operators(d.model, d.tp, d.precision, d.kv_precision)
    tables = compose(ops, times, fallback, d.limits.max_batch_tokens, d.limits.max_batch_seqs, context)
    database.release()
    used = sorted(set(times.read.values()))
    label = f"measured (aiconfigurator-core {database.package_version()}, {system}: {', '.join(used)})"
    notes = [f"timing {n}" for n in times.notes]
    if times.fell_back:
        # the operators the tables lack rest on the analytical model's own assumptions
        notes += [f"timing {n}" for n in fallback.assumptions()]
    if d.limits.tree_allreduce:
        notes.append("timing engine.allreduce: tree applies to analytical timing; the measured all-reduce is "
                     "the engine's own")
    return pack(tables, d.params), Timing("measured", label, notes)


def _analytical(d, context: int, notes: list[str]) -> tuple[np.ndarray, Timing]:
    """The shape-aware operator model composed like the measurements, where the composition
    covers the model; else the closed-form roofline over aggregated operators."""
    why = unsupported(d.model, d.ep) or ("a tree all-reduce (engine.allreduce: tree)" if d.limits.tree_allreduce
                                         else None)
    if why is not None:
        notes.append(f"timing closed-form roofline: no operator composition for {why}")
        return d.params, Timing("analytical", "analytical (closed-form roofline: datasheet rates, microbenchmark "
                                              "efficiencies)", notes)
    model = Analytical(d.device, d.precision, torus=d.torus, custom_allreduce=d.limits.custom_allreduce)
    ops = operators(d.model, d.tp, d.precision, d.kv_precision)
    tables = compose(ops, model, model, d.limits.max_batch_tokens, d.limits.max_batch_seqs, context)
    notes += [f"timing {n}" for n in model.assumptions()]
    where = ""
    if d.torus is not None:
        shape = "x".join(map(str, d.torus.dims))
        closed = ", ".join("ring" if w else "line" for w in d.torus.wrap)
        where = f"; tensor-parallel collectives over the torus's links ({shape} chips: {closed})"
    return pack(tables, d.params), Timing("analytical", "analytical (shape-aware roofline: datasheet rates, "
                                                        "microbenchmark efficiencies, kernel floors)" + where, notes)


def host(p: np.ndarray, d, engine) -> None:
    """The engine's host costs into the cost vector: per iteration and per sequence, whether
    they overlap the device, and what launching an iteration's kernels outside graphs costs."""
    p[K.K_OVERHEAD] = engine.iteration_overhead or 0.0
    p[K.K_HOST_PER_SEQ] = engine.host_per_seq
    p[K.K_HOST_OVERLAP] = 1.0 if engine.overlap else 0.0
    p[K.K_GRAPH_MAX] = np.inf if engine.graph_max_tokens is None else engine.graph_max_tokens
    p[K.K_GRAPH_DECODE_ONLY] = 1.0 if engine.graph_decode_only else 0.0
    p[K.K_LAUNCH] = engine.launch * kernels_per_iteration(d.model, d.tp, d.precision)


def kernels_per_iteration(model, tp: int, precision: str) -> float:
    """Kernels one iteration launches: the composition's operators and one attention kernel
    per layer (for models the composition does not cover, as many per layer as a Llama layer)."""
    if model.architecture == "ssm" or model.attention == "mla" or model.diffusion is not None:
        return 12.0 * model.layers + 4.0
    ops = operators(model, tp, precision, "bf16")
    return sum(op.count for op in ops.tokens + ops.logits) + model.layers


def _why_not_measured(d, framework: str) -> str | None:
    if framework not in database.FRAMEWORKS:
        return f"no kernel measurements under {framework}"
    if database.data_root() is None:
        return "the aiconfigurator-core package is not installed"
    if not d.device.kernel_tables:
        return f"no measured kernel tables for {d.device_key or d.device.name}"
    if d.device.kernel_tables not in _systems():
        return f"aiconfigurator-core has no system '{d.device.kernel_tables}'"
    return unsupported(d.model, d.ep)


def _systems() -> set[str]:
    import os
    return set(os.listdir(database.data_root()))
