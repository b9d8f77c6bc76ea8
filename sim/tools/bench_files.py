"""The files benchmark clients write, read as measurements to calibrate against.

- `vllm bench serve --save-result` (and the older `benchmarks/benchmark_serving.py`): one JSON
  object per run (`--append-result` appends more, one per line). Fields as vLLM writes them
  (vllm/benchmarks/serve.py): `model_id`, `num_prompts`, `request_rate` (a number or "inf"),
  `max_concurrency`, `completed`, `total_input_tokens`, `total_output_tokens`,
  `output_throughput`, `median_ttft_ms`, `median_tpot_ms`, ...; with `--save-detailed` also
  `input_lens` and `output_lens`; `--metadata KEY=VALUE` pairs appear as top-level fields, and
  `device=` and `tp=` among them say where it ran.
- SGLang's `python -m sglang.bench_serving --output-file`: one JSON object per line
  (sglang/bench_serving.py): `backend`, `dataset_name`, `request_rate`, `max_concurrency`,
  `random_input_len`, `random_output_len`, `random_range_ratio`, `server_info` (with
  `model_path` and `tp_size` when the server reports them), `completed`, `total_input_tokens`,
  `total_output_tokens`, `output_throughput`, `median_ttft_ms`, `median_tpot_ms`, ...
- A CSV of iterations, one per row: `batch` (sequences decoding), `prompt_tokens` (tokens of
  a prefill in the same iteration, 0 for none), `context` (tokens each decoding sequence
  attends to), and `step_time_ms` (or `step_time_s`); optional `device`, `model`, `tp`.

A file that is none of these, or a field that is missing or not a number, is an error at its
file and line. `vllm_result` and `sglang_result` write a simulated run in the clients' formats
(the project's example files are made that way, with known factors).
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from ..spec.errors import Loc, ScenarioError

VLLM, SGLANG, STEPS = "vllm bench serve", "sglang bench_serving", "step times"


@dataclass
class ServingRun:
    """One benchmark run: the load it offered and the medians and throughput it measured."""
    path: str
    line: int
    client: str
    model: str | None
    device: str | None
    tp: int | None
    rate: float                         # requests/s offered; inf: all at once
    max_concurrency: int | None
    prompts: int
    mean_input: float
    mean_output: float
    input_lens: list[int] | None        # per request, when the client saved them
    output_lens: list[int] | None
    input_range: tuple[int, int] | None  # SGLang's random dataset: lengths uniform in this range
    output_range: tuple[int, int] | None
    ttft_p50: float | None              # s
    tpot_p50: float | None              # s
    output_throughput: float | None     # tokens/s over the benchmark's duration

    @property
    def name(self) -> str:
        return f"{os.path.basename(self.path)}:{self.line}"

    def measured(self) -> dict[str, float]:
        """The figures a calibration matches: {metric: value}, times in s."""
        out = {"ttft_p50": self.ttft_p50, "tpot_p50": self.tpot_p50, "output_throughput": self.output_throughput}
        return {k: v for k, v in out.items() if v is not None and v > 0}


@dataclass
class StepRow:
    """One measured iteration."""
    path: str
    line: int
    batch: int
    prompt_tokens: int
    context: int
    step_time: float                    # s
    model: str | None = None
    device: str | None = None
    tp: int | None = None

    @property
    def name(self) -> str:
        return f"{os.path.basename(self.path)}:{self.line}"


def read(path: str) -> list[ServingRun | StepRow]:
    if not os.path.isfile(path):
        raise ScenarioError.one(Loc(path), "file", "no such file")
    if path.lower().endswith(".csv"):
        return _steps(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ScenarioError.one(Loc(path, 1), "file", "not a text file: expected a benchmark client's JSON or a "
                                                      "CSV of step times") from None
    objects = _json_objects(path, text)
    if not objects:
        raise ScenarioError.one(Loc(path, 1), "file", "no benchmark result in this file")
    return [_run(path, line, obj, text) for line, obj in objects]


def _json_objects(path: str, text: str) -> list[tuple[int, dict]]:
    """The file as one JSON object, or as one object per line (appended results)."""
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        return [(1, whole)]
    if isinstance(whole, list):
        raise ScenarioError.one(Loc(path, 1), "file", "a JSON list; expected one result object (or one per line)")
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ScenarioError.one(Loc(path, i), "file", f"not JSON ({exc.msg}): expected a benchmark client's "
                                                          f"result or a CSV of step times (name it .csv)") from None
        if not isinstance(obj, dict):
            raise ScenarioError.one(Loc(path, i), "file", "expected a JSON object per line")
        out.append((i, obj))
    return out


def _field_line(text: str, key: str, start_line: int) -> int:
    """The line of `"key"` in the file, at or after the object's first line."""
    lines = text.splitlines()
    for i in range(start_line - 1, len(lines)):
        if f'"{key}"' in lines[i]:
            return i + 1
    return start_line


def _number(path, line, obj, key, text, required=True, positive=True):
    v = obj.get(key)
    if v is None:
        if required:
            raise ScenarioError.one(Loc(path, line), key, "missing: the client writes it in every result")
        return None
    if isinstance(v, str) and v.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ScenarioError.one(Loc(path, _field_line(text, key, line)), key, f"not a number: {v!r}") from None
    if math.isnan(x) or (positive and x < 0):
        raise ScenarioError.one(Loc(path, _field_line(text, key, line)), key,
                                f"must be a non-negative number, got {v!r}")
    return x


def _lens(path, line, obj, key, text):
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, (int, float)) and x >= 0 for x in v):
        raise ScenarioError.one(Loc(path, _field_line(text, key, line)), key, "expected a list of token counts")
    return [max(1, int(x)) for x in v] or None


def _run(path: str, line: int, obj: dict, text: str) -> ServingRun:
    client = VLLM if "model_id" in obj else SGLANG if "dataset_name" in obj or "server_info" in obj else None
    if client is None:
        raise ScenarioError.one(Loc(path, line), "file", "neither a `vllm bench serve` result (no model_id) nor an "
                                                         "SGLang bench_serving result (no dataset_name)")
    completed = _number(path, line, obj, "completed", text)
    if completed < 1:
        raise ScenarioError.one(Loc(path, _field_line(text, "completed", line)), "completed",
                                "no request completed in this run: nothing to calibrate against")
    total_in = _number(path, line, obj, "total_input_tokens", text)
    total_out = _number(path, line, obj, "total_output_tokens", text)
    rate = _number(path, line, obj, "request_rate", text, required=False)
    conc = _number(path, line, obj, "max_concurrency", text, required=False)
    if client == VLLM:
        model = obj.get("model_id")
        device = obj.get("device") or obj.get("gpu")
        tp = obj.get("tp") or obj.get("tensor_parallel_size")
        prompts = _number(path, line, obj, "num_prompts", text, required=False) or completed
        in_range = out_range = None
    else:
        info = obj.get("server_info") if isinstance(obj.get("server_info"), dict) else {}
        model = info.get("model_path") or obj.get("model")
        device, tp = obj.get("device"), info.get("tp_size")
        prompts = completed
        in_range = out_range = None
        if obj.get("dataset_name") == "random":
            ratio = _number(path, line, obj, "random_range_ratio", text, required=False) or 0.0
            for key, setter in (("random_input_len", "in"), ("random_output_len", "out")):
                top = _number(path, line, obj, key, text, required=False)
                if top:
                    span = (max(1, int(top * ratio)), int(top))
                    in_range, out_range = (span, out_range) if setter == "in" else (in_range, span)
    try:
        tp = None if tp is None else int(tp)
    except (TypeError, ValueError):
        raise ScenarioError.one(Loc(path, _field_line(text, "tp", line)), "tp", f"not an integer: {tp!r}") from None
    ms = {k: _number(path, line, obj, k, text, required=False) for k in ("median_ttft_ms", "median_tpot_ms")}
    return ServingRun(
        path=path, line=line, client=client, model=model, device=device, tp=tp,
        rate=math.inf if rate is None else rate, max_concurrency=None if conc is None else int(conc),
        prompts=int(prompts), mean_input=total_in / completed, mean_output=total_out / completed,
        input_lens=_lens(path, line, obj, "input_lens", text),
        output_lens=_lens(path, line, obj, "output_lens", text),
        input_range=in_range, output_range=out_range,
        ttft_p50=None if ms["median_ttft_ms"] is None else ms["median_ttft_ms"] / 1000.0,
        tpot_p50=None if ms["median_tpot_ms"] is None else ms["median_tpot_ms"] / 1000.0,
        output_throughput=_number(path, line, obj, "output_throughput", text, required=False))


def _steps(path: str) -> list[StepRow]:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        time_col = "step_time_ms" if "step_time_ms" in fields else "step_time_s" if "step_time_s" in fields else None
        missing = [c for c in ("batch", "prompt_tokens", "context") if c not in fields] + ([] if time_col else
                                                                                           ["step_time_ms"])
        if missing:
            raise ScenarioError.one(Loc(path, 1), "columns", f"missing {', '.join(missing)}; a step-time CSV has "
                                                             f"batch, prompt_tokens, context, step_time_ms")
        rows = []
        for i, raw in enumerate(reader, 2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}

            def num(key, integer=True, row=row, i=i):
                try:
                    x = float(row[key])
                except ValueError:
                    raise ScenarioError.one(Loc(path, i), key, f"not a number: {row[key]!r}") from None
                if math.isnan(x) or x < 0 or (integer and x != int(x)):
                    what = "integer" if integer else "number"
                    raise ScenarioError.one(Loc(path, i), key, f"must be a non-negative {what}, got {row[key]!r}")
                return int(x) if integer else x
            batch, prompt, context = num("batch"), num("prompt_tokens"), num("context")
            t = num(time_col, integer=False) / (1000.0 if time_col == "step_time_ms" else 1.0)
            if t <= 0 or batch + prompt == 0:
                raise ScenarioError.one(Loc(path, i), time_col if t <= 0 else "batch",
                                        "a step runs at least one token and takes some time")
            if batch and context < 1:
                raise ScenarioError.one(Loc(path, i), "context", "decoding sequences attend to at least 1 token")
            tp = row.get("tp") or None
            rows.append(StepRow(path, i, batch, prompt, context, t, row.get("model") or None,
                                row.get("device") or None, None if tp is None else int(float(tp))))
    if not rows:
        raise ScenarioError.one(Loc(path, 1), "file", "no rows")
    return rows


_SUFFIXES = {"instruct", "chat", "hf", "it", "base", "fp8", "dynamic", "awq", "gptq", "int8", "int4", "w8a8",
             "w4a16", "fp16", "bf16"}


def model_name(name: str) -> str:
    """A model id as a catalog key would spell it: 'meta-llama/Meta-Llama-3.1-8B-Instruct' ->
    'llama-3.1-8b'."""
    base = name.rstrip("/").split("/")[-1].lower().replace("_", "-")
    if base.startswith("meta-"):
        base = base[len("meta-"):]
    parts = base.split("-")
    while len(parts) > 1 and parts[-1] in _SUFFIXES:
        parts.pop()
    return "-".join(parts)


# ---- a simulated run in the clients' formats ----------------------------------------------------

def _ms_stats(prefix: str, values) -> dict:
    v = np.asarray(values, float)
    v = v[~np.isnan(v)] * 1000.0
    if not len(v):
        return {}
    return {f"mean_{prefix}_ms": float(v.mean()), f"median_{prefix}_ms": float(np.median(v)),
            f"std_{prefix}_ms": float(v.std()), f"p99_{prefix}_ms": float(np.percentile(v, 99))}


def _client_figures(result) -> tuple[dict, np.ndarray]:
    """What a benchmark client measures of a run: every completed request, from the first
    send to the last response."""
    from ..core.metrics import COMPLETED
    t = result.table
    done = t.state == COMPLETED
    cols = t.columns()
    duration = float(t.finished[done].max() - t.arrival.min()) if done.any() else 0.0
    n_in, n_out = int(t.prompt[done].sum()), int(t.output[done].sum())
    out = {"duration": duration, "completed": int(done.sum()), "total_input_tokens": n_in,
           "total_output_tokens": n_out, "request_throughput": done.sum() / duration if duration else 0.0,
           "output_throughput": n_out / duration if duration else 0.0,
           "total_token_throughput": (n_in + n_out) / duration if duration else 0.0}
    for name, key in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "tpot")):
        out.update(_ms_stats(name, cols[key][done]))
    return out, done


def vllm_result(result, model_id: str, num_prompts: int, rate: float, max_concurrency: int | None,
                metadata: dict | None = None, detailed: bool = False) -> dict:
    """A simulated run as `vllm bench serve --save-result` writes one (vllm/benchmarks/serve.py)."""
    figures, done = _client_figures(result)
    e2e = _ms_stats("e2el", result.table.columns()["e2e"][done])
    out = {"date": "simulated", "endpoint_type": "openai", "backend": "openai", "label": None,
           "model_id": model_id, "tokenizer_id": model_id, "num_prompts": num_prompts, **(metadata or {}),
           "request_rate": "inf" if math.isinf(rate) else rate, "burstiness": 1.0, "max_concurrency": max_concurrency,
           **figures, "failed": 0, "request_goodput": None, **e2e}
    if detailed:
        out["input_lens"] = [int(x) for x in result.table.prompt[done]]
        out["output_lens"] = [int(x) for x in result.table.output[done]]
    return out


def sglang_result(result, model_path: str, tp: int, rate: float, max_concurrency: int | None,
                  input_len: int, output_len: int, range_ratio: float) -> dict:
    """A simulated run as `python -m sglang.bench_serving --output-file` appends one
    (sglang/bench_serving.py, random dataset)."""
    figures, done = _client_figures(result)
    e2e = _ms_stats("e2e_latency", result.table.columns()["e2e"][done])
    figures["input_throughput"] = figures["total_input_tokens"] / figures["duration"] if figures["duration"] else 0.0
    return {"backend": "sglang", "dataset_name": "random", "request_rate": rate, "max_concurrency": max_concurrency,
            "sharegpt_output_len": None, "random_input_len": input_len, "random_output_len": output_len,
            "random_range_ratio": range_ratio, "server_info": {"model_path": model_path, "tp_size": tp},
            **figures, **e2e, "concurrency": None}
