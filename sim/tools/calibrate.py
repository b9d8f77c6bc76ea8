"""`dcsim calibrate`: fit the simulator to measurements of one's own cluster.

Inputs are the files benchmark clients write (`sim.tools.bench_files`): serving runs (vLLM's and
SGLang's benchmark results) and measured iterations (a CSV of step times). They must match the
scenario's pool: its model, and its device and tensor-parallel degree where a file says them.

Half of the measurements (every other one, per kind) fit two factors, the other half check
them:

- **Device time** x `time_scale`, one factor on compute, memory and link time alike.
- **Host time per iteration**, only from step times: a step is `time_scale` x the device's
  time (host work left out) + the host's time, a line fitted by least squares in relative
  error. Without step times the engine preset's host times stay.
- Serving runs are simulated as the client ran them (its prompt count, request rate or
  concurrency, and token lengths: per request where saved, else the run's means or SGLang's
  random ranges), and `time_scale` is the one that best matches their median TTFT, median TPOT
  and output throughput (least squares in log error, golden-section search); with step times
  too, the host time stays the steps' and the runs refine the device factor.

The error on the held-out half is reported before (the catalog's factors) and after, and the
overlay written (`sim.timing.calibration`) carries the held-out errors that set a calibrated run's
intervals.
"""
from __future__ import annotations

import copy
import datetime
import math
import os
import statistics
from dataclasses import dataclass, field

import numpy as np
import yaml

from ..catalog import accuracy
from ..results.summary import summarize
from ..scenario import scenario_from_source
from ..simulation import simulate
from ..spec import source
from ..spec.errors import Loc, Problem, ScenarioError
from ..timing import calibration
from ..timing import kernels as K
from .bench_files import ServingRun, StepRow, model_name, read

LOG_RANGE = (math.log(0.2), math.log(5.0))   # the device factors the search considers
SEARCH_STEPS = 20                              # golden-section steps: the factor to ~0.02 %


@dataclass
class Fit:
    time_scale: float = 1.0
    iteration_overhead: float | None = None       # s; None: the engine preset's host times


@dataclass
class Check:
    """One held-out measured figure and the simulator's before and after calibration."""
    name: str
    metric: str
    measured: float
    before: float
    after: float

    @property
    def is_time(self) -> bool:
        return self.metric != "output_throughput"

    def error(self, value: float) -> float:
        return value / self.measured - 1.0

    def optimism(self, value: float) -> float:
        return accuracy.optimism(value, self.measured, self.is_time)


@dataclass
class Calibration:
    pool: str
    device: str
    model: str
    tp: int
    fit: Fit
    fitted_on: list[str]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def median_abs(self, which: str) -> float | None:
        errs = [abs(c.error(getattr(c, which))) for c in self.checks]
        return statistics.median(errs) if errs else None

    def overlay(self) -> dict:
        body = {"device": self.device, "model": self.model, "tp": self.tp,
                "time_scale": round(self.fit.time_scale, 6)}
        if self.fit.iteration_overhead is not None:
            body["iteration_overhead"] = f"{self.fit.iteration_overhead * 1e3:.4f}ms"
        body["fitted_on"] = self.fitted_on
        body["held_out"] = {"figures": [f"{c.name} {c.metric}" for c in self.checks],
                            "optimism": [round(c.optimism(c.after), 6) for c in self.checks],
                            "median_abs_error_before": _round(self.median_abs("before")),
                            "median_abs_error_after": _round(self.median_abs("after"))}
        return {"calibration": body}


def _round(x):
    return None if x is None else round(x, 6)


class Calibrator:
    def __init__(self, scenario_path: str, files: list[str], pool: str | None = None, overrides=()):
        self.src = source.load(scenario_path)
        self.src.select_variant(None)
        for a in overrides:
            self.src.override(a)
        self.path = scenario_path
        base = scenario_from_source(copy.deepcopy(self.src), (), scenario_path)
        names = [p.name for p in base.pools]
        if pool is None and len(names) > 1:
            raise ScenarioError.one(Loc("--pool"), "pool", f"the scenario has {len(names)} pools "
                                                           f"({', '.join(names)}): name the one these files measured")
        if pool is not None and pool not in names:
            raise ScenarioError.one(Loc("--pool"), "pool", f"no pool '{pool}'; pools: {', '.join(names)}")
        self.index = names.index(pool) if pool else 0
        self.pool = base.pools[self.index]
        self.notes: list[str] = []
        items = [x for f in files for x in read(f)]
        self._check_match(items)
        self.steps = [x for x in items if isinstance(x, StepRow)]
        self.runs = [x for x in items if isinstance(x, ServingRun)]
        if len(self.steps) + len(self.runs) < 2:
            raise ScenarioError.one(Loc(files[0] if files else "calibrate"), "files",
                                    "calibration needs at least 2 measurements: half fit, half check")

    # ---- what the files measured must be what the scenario runs ----------------------------
    def _check_match(self, items) -> None:
        pool = self.pool
        dep = pool.deployment
        problems = []
        for x in items:
            where = Loc(x.path, x.line)
            if x.model is not None and not _same_model(x.model, pool.model_key, dep.model):
                problems.append(Problem(where, "model", f"'{x.model}' is not the scenario's model "
                                                        f"{pool.model_key} (pool {pool.name})"))
            if x.device is not None and x.device != pool.device_key:
                problems.append(Problem(where, "device", f"'{x.device}' is not the scenario's device "
                                                         f"{pool.device_key} (pool {pool.name})"))
            if x.tp is not None and x.tp != dep.tp:
                problems.append(Problem(where, "tp", f"tp {x.tp} is not the pool's tp {dep.tp} (pool {pool.name})"))
        if problems:
            raise ScenarioError(problems)
        unnamed = sorted({os.path.basename(x.path) for x in items if x.device is None})
        if unnamed:
            self.notes.append(f"assumed: {', '.join(unnamed)} ran on {pool.device_key} (the file does not say; "
                              f"vllm bench serve --metadata device=... tp=... records it)")

    # ---- step times --------------------------------------------------------------------------
    def _device_times(self, rows: list[StepRow]) -> np.ndarray:
        p = self.pool.deployment.params.copy()
        p[K.K_OVERHEAD] = p[K.K_HOST_PER_SEQ] = p[K.K_LAUNCH] = 0.0
        return np.array([_step_time(p, r) for r in rows])

    def _step_prediction(self, rows: list[StepRow], fit: Fit) -> np.ndarray:
        if fit.iteration_overhead is not None:
            return fit.time_scale * self._device_times(rows) + fit.iteration_overhead
        p = _scaled(self.pool.deployment.params, fit)
        return np.array([_step_time(p, r) for r in rows])

    def fit_steps(self, rows: list[StepRow]) -> Fit:
        """time = s x device + h, least squares in relative error (h >= 0)."""
        d = self._device_times(rows)
        t = np.array([r.step_time for r in rows])
        a = np.column_stack([d / t, 1.0 / t])
        (s, h), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
        if h < 0 or len(rows) < 2:
            s, h = float(np.sum(d / t) / np.sum((d / t) ** 2)), 0.0
        return Fit(float(s), float(h))

    # ---- serving runs ------------------------------------------------------------------------
    def _run_scenario(self, run: ServingRun):
        if not math.isinf(run.rate) and run.max_concurrency is not None:
            self._note(f"{run.name}: max_concurrency {run.max_concurrency} with a request rate is simulated as "
                       f"open-loop arrivals at the rate (the client's cap not modelled)")
        return benchmarked(self.src, self.index, self.path, run)

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _simulated(self, run: ServingRun, scenario, fit: Fit) -> dict[str, float]:
        dep = scenario.pools[0].deployment
        base = dep.params
        dep.params = _scaled(base, fit)
        try:
            s = summarize(simulate(scenario))
        finally:
            dep.params = base
        lat = s["latency_s"]
        out = {"ttft_p50": lat["ttft"]["p50"], "tpot_p50": lat["tpot"]["p50"],
               "output_throughput": s["makespan"].get("output_tokens_per_s")}
        return {k: v for k, v in out.items() if v is not None and v > 0}

    def fit_runs(self, runs: list[ServingRun], host: float | None) -> Fit:
        scenarios = [self._run_scenario(r) for r in runs]

        def loss(log_s: float) -> float:
            fit = Fit(math.exp(log_s), host)
            total = 0.0
            for run, sc in zip(runs, scenarios, strict=True):
                sim = self._simulated(run, sc, fit)
                for metric, value in run.measured().items():
                    if metric in sim:
                        total += math.log(sim[metric] / value) ** 2
            return total
        return Fit(math.exp(_golden(loss, *LOG_RANGE)), host)

    # ---- the whole calibration ---------------------------------------------------------------
    def run(self, progress=lambda text: None) -> Calibration:
        fit_steps, check_steps = self.steps[0::2], self.steps[1::2]
        fit_runs, check_runs = self.runs[0::2], self.runs[1::2]
        if not fit_runs and not fit_steps:
            fit_steps, check_steps = check_steps, []
        fit = Fit()
        if fit_steps:
            progress(f"fitting {len(fit_steps)} step times")
            fit = self.fit_steps(fit_steps)
        if fit_runs:
            progress(f"fitting {len(fit_runs)} serving runs (each simulated ~{SEARCH_STEPS + 2} times)")
            fit = self.fit_runs(fit_runs, fit.iteration_overhead)
        dep = self.pool.deployment
        cal = Calibration(self.pool.name, self.pool.device_key, self.pool.model_key, dep.tp, fit,
                          [x.name for x in fit_steps + fit_runs], notes=self.notes)
        if check_steps:
            before, after = self._step_prediction(check_steps, Fit()), self._step_prediction(check_steps, fit)
            cal.checks += [Check(r.name, "step_time", r.step_time, float(b), float(a))
                           for r, b, a in zip(check_steps, before, after, strict=True)]
        for run in check_runs:
            progress(f"checking {run.name}")
            sc = self._run_scenario(run)
            before, after = self._simulated(run, sc, Fit()), self._simulated(run, sc, fit)
            cal.checks += [Check(run.name, metric, value, before[metric], after[metric])
                           for metric, value in run.measured().items() if metric in before and metric in after]
        return cal


def benchmarked(src: source.Source, index: int, path: str, run: ServingRun):
    """The scenario's pool `index` alone, one server of it, under the load a benchmark client
    offered in `run`: its prompt count, rate (or all at once, `max_concurrency` outstanding),
    and token lengths."""
    src = copy.deepcopy(src)
    data = src.data
    pool = copy.deepcopy(data["fleet"][index])
    serve = pool.get("serve", {})
    pool["count"] = serve.get("tp", 1) * serve.get("pp", 1) * serve.get("ep", 1)   # one server, as measured
    pool.pop("autoscale", None)
    data["fleet"] = [pool]
    for key in ("topology", "ingress", "failures", "power", "admission", "calibration", "variants", "services"):
        data.pop(key, None)
    data["router"] = {}
    stream = {"name": "bench", "requests": run.prompts,
              "prompt_tokens": _length(run.input_lens, run.input_range, run.mean_input),
              "output_tokens": _length(run.output_lens, run.output_range, run.mean_output)}
    if math.isinf(run.rate):
        stream["concurrency"] = min(run.max_concurrency or run.prompts, run.prompts)
        duration = 1e6
    else:
        stream["rate"] = f"{run.rate!r}/s"
        duration = 10.0 * run.prompts / run.rate
    data["workload"] = [stream]
    data.update({"duration": duration, "warmup": 0.0, "drain": None, "slo": {}})
    src.locs = {k: v for k, v in src.locs.items() if k[:1] not in (("workload",), ("fleet",))}
    return scenario_from_source(src, (), path)


def write_overlay(cal: Calibration, path: str, inputs: list[str]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    head = (f"# Calibration of {cal.device} / {cal.model} (tp {cal.tp}), written by `dcsim calibrate` on "
            f"{datetime.date.today().isoformat()}\n# from {', '.join(os.path.basename(i) for i in inputs)}.\n"
            f"# A scenario applies it with `calibration: {os.path.basename(path)}`.\n")
    with open(path, "w") as f:
        f.write(head)
        yaml.safe_dump(cal.overlay(), f, sort_keys=False)


# ---- helpers ---------------------------------------------------------------------------------

def _scaled(params: np.ndarray, fit: Fit) -> np.ndarray:
    return calibration.scaled(params, fit.time_scale, fit.iteration_overhead)


def _step_time(p: np.ndarray, r: StepRow) -> float:
    """An iteration of r.batch decoding sequences at r.context tokens and, when r.prompt_tokens,
    one prefill of that many tokens."""
    pf = np.array([r.prompt_tokens] if r.prompt_tokens else [], np.int64)
    return float(K.batch_time(pf, np.zeros(len(pf), np.int64), pf, np.full(r.batch, r.context, np.int64), p))


def _length(lens, span, mean) -> dict:
    if lens:
        return {"dist": "empirical", "values": lens}
    if span is not None:
        return {"dist": "uniform", "min": span[0], "max": span[1]}
    return {"dist": "fixed", "value": max(1, int(round(mean)))}


def _same_model(name: str, key: str, model) -> bool:
    wanted = {model_name(key)}
    url = model.source if isinstance(getattr(model, "source", None), str) else ""
    if "huggingface.co/" in url:
        wanted.add(model_name(url.split("huggingface.co/")[1].split()[0].split("(")[0]))
    return model_name(name) in wanted


def _golden(f, lo: float, hi: float) -> float:
    """The minimum of f on [lo, hi] (f unimodal there), by golden-section search."""
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(SEARCH_STEPS):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (a + b) / 2.0
