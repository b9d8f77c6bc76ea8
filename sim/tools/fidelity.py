"""Predictions held against published and measured figures.

A case (`validation/cases/<level>/<id>.yaml`, format in `validation/CASE_FORMAT.md`) asks
the simulator one question, from a single GEMM to a whole serving scenario, and compares
the answer with a cited reference within a tolerance. `calibration` cases come from the
sources that set the catalog's efficiency factors, so only `held-out` cases measure error.
"""
from __future__ import annotations

import glob
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Field

from . import oracles
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


Query = Annotated[Union[GemmQuery, AttentionQuery, MemoryQuery, StepQuery, ScenarioQuery, QueueingQuery],
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
    for case, path, src in out:
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


def summary_rows(outcomes: list[Outcome]) -> list[dict]:
    """Median and worst |error| per level and role."""
    rows = []
    for level in LEVELS:
        for role in ("held-out", "calibration"):
            signed = [o.error for o in outcomes if o.case.level == level and o.case.role == role
                      and o.error is not None]
            errs = [abs(e) for e in signed]
            n = sum(1 for o in outcomes if o.case.level == level and o.case.role == role)
            if n:
                rows.append({"level": level, "role": role, "cases": n,
                             "within_tolerance": sum(1 for o in outcomes if o.case.level == level
                                                     and o.case.role == role and o.ok),
                             "median_abs_error": statistics.median(errs) if errs else None,
                             "median_error": statistics.median(signed) if signed else None,
                             "worst_abs_error": max(errs) if errs else None})
    return rows


def headline(outcomes: list[Outcome], levels=("kernel", "step", "serving")) -> dict:
    errs = [abs(o.error) for o in outcomes if o.case.role == "held-out" and o.error is not None
            and o.case.level in levels]
    return {"held_out_cases": len(errs), "median_abs_error": statistics.median(errs) if errs else None,
            "worst_abs_error": max(errs) if errs else None}


def tensor_parallel_steps(outcomes: list[Outcome]) -> dict:
    """Held-out step cases at tp > 1: the sign of their error (are multi-GPU steps too fast?)."""
    signed = [o.error for o in outcomes if o.case.level == "step" and o.case.role == "held-out"
              and o.error is not None and getattr(o.case.query, "tp", 1) > 1]
    return {"cases": len(signed), "median_error": statistics.median(signed) if signed else None}


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:+.1f}%"


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:,.4g}"


def _device_name(case: Case) -> str:
    q = case.query
    if q.kind == "scenario":
        dev = q.scenario.get("fleet", [{}])[0].get("device", "")
    else:
        dev = getattr(q, "device", "")
    if isinstance(dev, dict):
        return dev.get("base", dev.get("name", "inline"))
    return str(dev)


def markdown_report(outcomes: list[Outcome], families=(), cover=None) -> str:
    head = headline(outcomes)
    e2e = headline(outcomes, ("step", "serving"))
    tp = tensor_parallel_steps(outcomes)
    lines = ["# Validation report", "",
             "Generated by `make validate` (`dcsim validate-model`). Error is (predicted - reference) / reference.",
             "Calibration cases come from the sources that set the catalog's efficiency factors; the headline",
             "error is over held-out cases (queueing oracles are listed apart: their reference is a formula).", "",
             f"**Held-out (kernel, step, serving): {head['held_out_cases']} cases, median |error| "
             f"{_pct(head['median_abs_error']).lstrip('+')}, worst {_pct(head['worst_abs_error']).lstrip('+')}.**", "",
             f"**Held-out end to end (step, serving): {e2e['held_out_cases']} cases, median |error| "
             f"{_pct(e2e['median_abs_error']).lstrip('+')}.**", "",
             "| level | role | cases | within tolerance | median abs error | worst abs error | median signed error |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in summary_rows(outcomes):
        lines.append(f"| {r['level']} | {r['role']} | {r['cases']} | {r['within_tolerance']} | "
                     f"{_pct(r['median_abs_error']).lstrip('+')} | {_pct(r['worst_abs_error']).lstrip('+')} | "
                     f"{_pct(r['median_error'])} |")
    lines += ["", f"Held-out step cases at tp > 1: {tp['cases']}, median signed error {_pct(tp['median_error'])}.",
              "", "Signed error: for rates (FLOP/s, bytes/s, tokens/s) positive means the simulator is "
              "optimistic; for times (step, TTFT, TPOT) negative does."]
    if cover:
        lines += ["", "## Intervals", "",
                  f"Every run prints a {accuracy.CONFIDENCE:.0%} interval for its figures, from these held-out "
                  "errors of the run's class (`sim/catalog/accuracy.py`, data in `sim/catalog/accuracy.json`). "
                  "Coverage: each held-out case's interval built from all the other cases, and whether it "
                  "holds the reference (target 85-95 %).", "",
                  "| level | cases | inside their interval | coverage |", "|---|---:|---:|---:|"]
        for level, c in cover.items():
            lines.append(f"| {level} | {c['cases']} | {c['inside']} | {c['coverage']:.0%} |")
    if families:
        from ..timing import crosscheck
        k = crosscheck.headline(families)
        lines += ["", "## The analytical model against every measured kernel", "",
                  "Each GEMM, attention call and all-reduce in aiconfigurator-core's vLLM tables of a catalog "
                  "device, timed by the shape-aware analytical model from the device's datasheet and "
                  "microbenchmark figures alone (`sim/timing/crosscheck.py`). Its shape rules were set from "
                  "H100's tables (and L40S's efficiencies from its own), so those are calibration; the rest "
                  "are held out.", "",
                  f"**Held-out: {k['kernels']:,} kernels, median |error| {_pct(k['median_abs_error']).lstrip('+')}.**",
                  "", "| device | family | role | kernels | median abs error | p90 abs error | median signed error |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for f in families:
            r = f.row()
            lines.append(f"| {r['device']} | {r['family']} | {r['role']} | {r['kernels']:,} | "
                         f"{_pct(r['median_abs_error']).lstrip('+')} | {_pct(r['p90_abs_error']).lstrip('+')} | "
                         f"{_pct(r['median_error'])} |")
    worst = sorted((o for o in outcomes if o.case.role == "held-out" and o.error is not None),
                   key=lambda o: -abs(o.error))[:5]
    lines += ["", "## Worst held-out cases", ""]
    for o in worst:
        lines.append(f"- `{o.case.id}` ({_pct(o.error)}): {o.case.diagnosis or 'no diagnosis written yet'}")
    lines += ["", "## All cases", "",
              "| id | level | role | device | predicted | reference | unit | error | tolerance | ok | source |",
              "|---|---|---|---|---:|---:|---|---:|---:|---|---|"]
    for o in outcomes:
        c = o.case
        src = c.reference.url or c.reference.source
        ok = "yes" if o.ok else ("FAIL" if o.error is not None else f"ERROR: {o.failure}")
        lines.append(f"| `{c.id}` | {c.level} | {c.role} | {_device_name(c)} | {_num(o.predicted)} | "
                     f"{_num(o.reference)} | {c.reference.unit} | {_pct(o.error)} | {c.tolerance:.0%} | {ok} | "
                     f"[source]({src}) |" if src.startswith("http") else
                     f"| `{c.id}` | {c.level} | {c.role} | {_device_name(c)} | {_num(o.predicted)} | "
                     f"{_num(o.reference)} | {c.reference.unit} | {_pct(o.error)} | {c.tolerance:.0%} | {ok} | "
                     f"{src} |")
    return "\n".join(lines) + "\n"
