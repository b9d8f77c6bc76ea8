"""Predictions held against published and measured figures.

A case (`validation/cases/<level>/<id>.yaml`, format in `validation/CASE_FORMAT.md`) asks
the simulator one question, from a single GEMM to a whole serving scenario, and compares
the answer with a cited reference within a tolerance. `calibration` cases come from the
sources that set the catalog's efficiency factors, so only `held-out` cases measure error.
The report of a run of the cases is `sim.tools.fidelity_report`.
"""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from .. import catalog
from ..catalog import accuracy
from ..catalog.hardware import BYTES_PER_ELEMENT, DeviceSpec, Precision
from ..catalog.models import ModelSpec
from ..results.summary import summarize
from ..scenario import scenario_from_source
from ..scenario.resolve import catalog_entry
from ..simulation import simulate
from ..spec import source
from ..spec.base import Spec
from ..spec.errors import Problem, ScenarioError
from ..spec.validate import validate
from ..timing import kernels
from . import oracles

LEVELS = ("kernel", "step", "serving", "queueing")
UNITS = {  # reference unit -> (quantity, factor to SI)
    "s": ("time", 1.0), "ms": ("time", 1e-3), "us": ("time", 1e-6),
    "TFLOP/s": ("flops", 1e12), "GFLOP/s": ("flops", 1e9),
    "GB/s": ("bandwidth", 1e9), "TB/s": ("bandwidth", 1e12),
    "tokens/s": ("rate", 1.0), "requests/s": ("rate", 1.0),
}


class GemmQuery(Spec):
    kind: Literal["gemm"]
    device: Any
    m: int = Field(ge=1)
    n: int = Field(ge=1)
    k: int = Field(ge=1)
    precision: Precision = "bf16"


class AttentionQuery(Spec):
    kind: Literal["attention"]
    device: Any
    batch: int = Field(ge=1)
    heads: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    causal: bool = True
    precision: Precision = "bf16"


class MemoryQuery(Spec):
    kind: Literal["memory"]
    device: Any


class StepQuery(Spec):
    kind: Literal["prefill", "decode"]
    device: Any
    model: Any
    precision: Precision = "bf16"
    kv_precision: Precision = "bf16"
    tp: int = Field(default=1, ge=1)
    batch: int = Field(default=1, ge=1)
    tokens: int | None = Field(default=None, ge=1, description="prefill: prompt tokens")
    context: int | None = Field(default=None, ge=1, description="decode: tokens each sequence attends")
    overhead: bool = Field(default=False, description="include the engine's host time per iteration")
    engine: dict = Field(default_factory=dict, description="engine fields, as a pool's engine: (framework, "
                                                           "version, ...); none: the device's usual engine")


class ScenarioQuery(Spec):
    kind: Literal["scenario"]
    scenario: dict
    metric: str


class QueueingQuery(Spec):
    kind: Literal["queueing"]
    discipline: Literal["md1", "mg1", "mgc"]
    rho: float = Field(gt=0, lt=1)
    servers: int = Field(default=1, ge=1)
    seeds: int = Field(default=4, ge=2)
    requests: int = Field(default=8000, ge=100, description="arrivals per seed")


Query = Annotated[GemmQuery | AttentionQuery | MemoryQuery | StepQuery | ScenarioQuery | QueueingQuery,
                  Field(discriminator="kind")]


class Reference(Spec):
    value: float | None = None      # None only for queueing cases: the formula gives it
    unit: str
    source: str
    url: str = ""


class Case(Spec):
    id: str
    level: Literal["kernel", "step", "serving", "queueing"]
    role: Literal["calibration", "held-out"]
    description: str
    query: Query
    reference: Reference
    tolerance: float = Field(gt=0)
    diagnosis: str = ""
    slow: bool = False


@dataclass
class Outcome:
    case: Case
    path: str
    predicted: float | None       # in the reference's unit
    reference: float | None
    error: float | None           # (predicted - reference) / reference
    seconds: float
    failure: str = ""             # why no prediction could be made
    klass: tuple | None = None    # (timing source, vendor, multi-device) of the pool that answered

    def entry(self) -> accuracy.Entry | None:
        """The error as `sim.catalog.accuracy` keeps it (held-out kernel, step and serving cases)."""
        if self.error is None or self.klass is None or self.case.role != "held-out":
            return None
        is_time = UNITS[self.case.reference.unit][0] == "time"
        return accuracy.Entry(self.case.id, self.case.level, *self.klass,
                              accuracy.optimism(self.predicted, self.reference, is_time))

    @property
    def ok(self) -> bool:
        return self.error is not None and abs(self.error) <= self.case.tolerance


def load_cases(root: str) -> list[tuple[Case, str, source.Source]]:
    out, problems = [], []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)):
        src = source.load(path)
        try:
            case = validate(Case, src.data, src)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        if case.reference.unit not in UNITS:
            problems.append(Problem(src.loc_of(("reference", "unit")), "reference.unit",
                                    f"unknown unit '{case.reference.unit}'; valid: {', '.join(UNITS)}"))
            continue
        if case.reference.value is None and case.query.kind != "queueing":
            problems.append(Problem(src.loc_of(("reference",)), "reference.value", "required field is missing"))
            continue
        if os.path.splitext(os.path.basename(path))[0] != case.id:
            problems.append(Problem(src.loc_of(("id",)), "id", f"id '{case.id}' differs from the file name"))
            continue
        out.append((case, path, src))
    ids = [c.id for c, _, _ in out]
    for case, _, src in out:
        if ids.count(case.id) > 1:
            problems.append(Problem(src.loc_of(("id",)), "id", f"duplicate case id '{case.id}'"))
    if problems:
        raise ScenarioError(problems)
    return out


def _device(ref, src, path) -> DeviceSpec:
    key, raw = catalog_entry(ref, catalog.device_entries(), "device", path, src)
    return validate(DeviceSpec, raw, src, path)


def _model(ref, src, path) -> ModelSpec:
    key, raw = catalog_entry(ref, catalog.model_entries(), "model", path, src)
    return validate(ModelSpec, raw, src, path)


def predict(case: Case, src: source.Source) -> tuple[float, float, tuple | None]:
    """(the simulator's answer, the reference), both in the reference's unit, and the class
    of the pool that answered (`accuracy.class_of`). A queueing case's reference is the
    formula's value for the service times the run produced."""
    q = case.query
    factor = UNITS[case.reference.unit][1]
    if q.kind == "queueing":
        simulated, theory = _queueing(q, case)
        return simulated / factor, theory / factor, None
    value, klass = _predict(case, src)
    return value, case.reference.value, klass


def _predict(case: Case, src: source.Source) -> tuple[float, tuple]:
    q = case.query
    quantity, factor = UNITS[case.reference.unit]
    if q.kind == "scenario":
        value, klass = _scenario_metric(q, src)
        return value / factor, klass
    if q.kind in ("prefill", "decode"):
        return _step(q, src, quantity, factor)
    dev = _device(q.device, src, ("query", "device"))
    return _kernel(q, dev, quantity, factor), ("roofline", dev.vendor, False)


def _kernel(q, dev: DeviceSpec, quantity: str, factor: float) -> float:
    """A single kernel timed by the catalog's rates alone (the closed-form roofline)."""
    if q.kind == "memory":
        return dev.memory_bandwidth * dev.mem_eff / factor
    if q.kind == "gemm":
        rate = dev.peak_flops.for_precision(q.precision)
        if rate is None:
            raise ValueError(f"device has no {q.precision} compute")
        b = BYTES_PER_ELEMENT[q.precision]
        t = kernels.gemm_time(float(q.m), float(q.n), float(q.k), b, max(b, 2.0),
                              rate * dev.gemm_eff(q.precision), dev.memory_bandwidth * dev.mem_eff)
        return _as(quantity, t, 2.0 * q.m * q.n * q.k) / factor
    if q.kind == "attention":
        rate = dev.attention_rate()
        t = kernels.attention_time(float(q.batch), float(q.heads), float(q.seq_len), float(q.head_dim), q.causal,
                                   BYTES_PER_ELEMENT[q.precision], rate, dev.memory_bandwidth * dev.mem_eff)
        pairs = q.seq_len ** 2 / (2.0 if q.causal else 1.0)  # the FlashAttention papers' FLOP count
        return _as(quantity, t, 4.0 * q.batch * q.heads * q.head_dim * pairs) / factor
    raise ValueError(f"not a kernel query: {q.kind}")


def _step(q: StepQuery, src: source.Source, quantity: str, factor: float) -> tuple[float, tuple]:
    p, deployment = step_params(q, src)
    klass = accuracy.class_of([deployment])
    n = q.batch
    if q.kind == "prefill":
        if q.tokens is None:
            raise ValueError("a prefill query needs tokens:")
        t = kernels.prefill_time(p, q.tokens, n)
        return _as(quantity, t, float(n * q.tokens)) / factor, klass
    if q.context is None:
        raise ValueError("a decode query needs context:")
    t = kernels.decode_time(p, n, q.context)
    return _as(quantity, t, float(n)) / factor, klass


def step_params(q: StepQuery, src: source.Source) -> tuple[np.ndarray, Any]:
    """The cost vector of the step's pool, built as a scenario builds it (the engine's preset,
    measured or analytical timing); without `overhead`, the device's time alone."""
    need = q.batch * (q.tokens or 1)
    engine = {"max_batch_seqs": max(q.batch, 1), "max_batch_tokens": max(need, q.batch, 8192),
              "activation_reserve": "0B", "memory_utilization": 1.0, **q.engine}
    data = {"name": "step", "duration": 1.0,
            "fleet": [{"pool": "p", "device": q.device, "count": q.tp,
                       "serve": {"model": q.model, "precision": q.precision, "kv_precision": q.kv_precision,
                                 "tp": q.tp, "engine": engine}}],
            "workload": [{"name": "w", "rate": 1.0, "prompt_tokens": 1, "output_tokens": 1}]}
    scenario = scenario_from_source(source.Source(data=data, root=src.root))
    deployment = scenario.pools[0].deployment
    p = deployment.params.copy()
    if not q.overhead:
        p[kernels.K_OVERHEAD] = p[kernels.K_HOST_PER_SEQ] = p[kernels.K_LAUNCH] = 0.0
    return p, deployment


def _as(quantity: str, seconds: float, work: float) -> float:
    """A time, or `work` per second (FLOP/s, tokens/s) when the reference is a rate."""
    return seconds if quantity == "time" else work / seconds


def _scenario_metric(q: ScenarioQuery, src: source.Source) -> tuple[float, tuple]:
    scenario = scenario_from_source(src.subtree(("query", "scenario")), (), src.root)
    klass = accuracy.class_of([p.deployment for p in scenario.pools])
    value: Any = summarize(simulate(scenario))
    for part in q.metric.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"summary.json has no '{q.metric}'")
        value = value[part]
    if value is None:
        raise ValueError(f"'{q.metric}' has no value in this run")
    return float(value), klass


def _queueing(q: QueueingQuery, case: Case) -> tuple[float, float]:
    """Mean queue wait of the single-server (or central-queue) scenario, and the theory's."""
    output = {"dist": "fixed", "value": 20} if q.discipline == "md1" else {"dist": "exponential", "mean": 40}
    prompt = 1 if q.discipline == "mgc" else 64

    def build(rate: float, duration: float) -> Any:
        data = {
            "name": case.id, "seed": 0, "duration": duration, "warmup": duration * 0.05,
            "fleet": [{"pool": "p", "device": "nvidia-h100-sxm", "count": q.servers,
                       "serve": {"model": "llama-3.1-8b", "engine": {"max_batch_seqs": 1}}}],
            "router": {"policy": "random", "dispatch": "central" if q.discipline == "mgc" else "immediate"},
            "workload": [{"name": "w", "rate": rate, "prompt_tokens": prompt, "output_tokens": output}],
        }
        return scenario_from_source(source.Source(data=data, root=case.id))

    probe = simulate(build(0.2, 2000.0)).table
    mean_service = float(np.mean(probe.finished - probe.admitted))
    rate = q.rho * q.servers / mean_service
    duration = q.requests / rate
    waits, theory = [], []
    for seed in range(q.seeds):
        res = simulate(build(rate, duration), seed=seed)
        t = res.table
        measured = t.arrival >= duration * 0.05
        waits.append(float(np.mean((t.admitted - t.arrival)[measured])))
        service = t.finished - t.admitted
        if q.discipline == "mgc":
            theory.append(oracles.mgc_wait(rate, q.servers, service))
        else:
            theory.append(oracles.pollaczek_khinchine_wait(rate, service))
    return float(np.mean(waits)), float(np.mean(theory))


def run_cases(root: str, levels=None, fast: bool = False, progress=None) -> list[Outcome]:
    outcomes = []
    for case, path, src in load_cases(root):
        if levels and case.level not in levels:
            continue
        if fast and case.slow:
            continue
        outcomes.append(evaluate(case, path, src))
        if progress:
            progress(outcomes[-1])
    return outcomes


def evaluate(case: Case, path: str, src) -> Outcome:
    """One case's prediction against its reference; a case that cannot run says why."""
    t0 = time.perf_counter()
    ref = case.reference.value
    klass = None
    try:
        predicted, ref, klass = predict(case, src)
        failure = ""
    except (ValueError, ScenarioError) as exc:
        predicted, failure = None, str(exc).splitlines()[0]
    error = None if predicted is None or not ref else (predicted - ref) / ref
    return Outcome(case, path, predicted, ref, error, time.perf_counter() - t0, failure, klass)

