"""Make the example benchmark files in this folder: simulated runs with known factors.

The "real" cluster of the examples is the scenario h100-llama8b.yaml with truth.yaml applied
(device time x 1.25, 2.5 ms host time per iteration). Each file is that cluster's simulated
run written as the benchmark client writes its own results (sim.tools.bench_files):

- vllm-bench-*.json: `vllm bench serve --save-result --save-detailed --metadata device=nvidia-h100-sxm tp=1`
  at 4, 8 and 12 requests/s and all at once with 32 outstanding, 300 prompts each, prompt
  and output lengths uniform in [256, 1024] and [64, 256];
- sglang-bench.jsonl: `python -m sglang.bench_serving --dataset-name random
  --random-input-len 1024 --random-output-len 256 --random-range-ratio 0.5` at 6 requests/s
  and all at once with 16 outstanding, 200 prompts each;
- step-times.csv: iterations of 1-256 decoding sequences at 256-4096 tokens of context, some
  with a prefill of 512-2048 tokens, timed by the same cluster.

Run from the repository root: python scenarios/calibration/make_examples.py
"""
from __future__ import annotations

import csv
import json
import math
import os

from sim.scenario import scenario_from_source
from sim.simulation import simulate
from sim.spec import source
from sim.timing import calibration
from sim.tools import bench_files
from sim.tools.bench_files import ServingRun, StepRow
from sim.tools.calibrate import Fit, _scaled, _step_time, benchmarked

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO = os.path.join(HERE, "h100-llama8b.yaml")
TRUTH = calibration.load(os.path.join(HERE, "truth.yaml"), None)
FIT = Fit(TRUTH.time_scale, TRUTH.iteration_overhead)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def run_as_client(rate, concurrency, prompts, input_range, output_range):
    src = source.load(SCENARIO)
    run = ServingRun(SCENARIO, 1, "", None, None, None, rate, concurrency, prompts, 0.0, 0.0, None, None,
                     input_range, output_range, None, None, None)
    scenario = benchmarked(src, 0, SCENARIO, run)
    dep = scenario.pools[0].deployment
    dep.params = _scaled(dep.params, FIT)
    return simulate(scenario)


def main() -> None:
    for rate, conc, name in ((4.0, None, "rate4"), (8.0, None, "rate8"), (math.inf, 32, "inf-c32"),
                             (12.0, None, "rate12")):
        result = run_as_client(rate, conc, 300, (256, 1024), (64, 256))
        doc = bench_files.vllm_result(result, MODEL, 300, rate, conc, {"device": "nvidia-h100-sxm", "tp": "1"},
                                      detailed=True)
        with open(os.path.join(HERE, f"vllm-bench-{name}.json"), "w") as f:
            json.dump(doc, f, indent=2)
    with open(os.path.join(HERE, "sglang-bench.jsonl"), "w") as f:
        for rate, conc in ((6.0, None), (math.inf, 16)):
            result = run_as_client(rate, conc, 200, (512, 1024), (128, 256))
            f.write(json.dumps(bench_files.sglang_result(result, MODEL, 1, rate, conc, 1024, 256, 0.5)) + "\n")
    scenario = scenario_from_source(source.load(SCENARIO), (), SCENARIO)
    p = _scaled(scenario.pools[0].deployment.params, FIT)
    with open(os.path.join(HERE, "step-times.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["batch", "prompt_tokens", "context", "step_time_ms"])
        for batch, prompt, context in ((1, 0, 512), (8, 0, 1024), (32, 0, 1024), (64, 0, 2048), (128, 0, 1024),
                                       (256, 0, 512), (16, 512, 2048), (64, 1024, 1024), (1, 2048, 256),
                                       (32, 2048, 4096), (128, 512, 2048), (4, 0, 4096)):
            row = StepRow("", 0, batch, prompt, context, 0.0)
            w.writerow([batch, prompt, context, f"{_step_time(p, row) * 1e3:.4f}"])


if __name__ == "__main__":
    main()
