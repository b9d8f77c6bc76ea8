"""Shared helpers: build small scenarios in a temporary folder."""
from __future__ import annotations

import copy
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TRACES = os.path.join(os.path.dirname(ROOT), "shared", "traces", "azure-llm-2023")

BASE = {
    "name": "t",
    "seed": 1,
    "duration": "30s",
    "warmup": "2s",
    "fleet": [{
        "pool": "p",
        "device": "nvidia-h100-sxm",
        "count": 2,
        "serve": {"model": "llama-3.1-8b", "precision": "bf16", "tp": 1,
                  "engine": {"max_batch_seqs": 32, "chunked_prefill": 512}},
    }],
    "router": {"policy": "least-outstanding"},
    "workload": [{
        "name": "w", "rate": "10/s",
        "prompt_tokens": {"dist": "lognormal", "mean": 600, "cv": 1.0, "max": 4000},
        "output_tokens": {"dist": "lognormal", "mean": 120, "cv": 1.0, "max": 1000},
    }],
}


def deep_update(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d[k]
    last = keys[-1]
    if isinstance(d, list):
        d[int(last)] = value
    else:
        d[last] = value


@pytest.fixture
def write_scenario(tmp_path):
    """write_scenario({'router.policy': 'random', ...}) -> path of a scenario file."""
    counter = {"n": 0}

    def make(changes: dict | None = None, base: dict | None = None) -> str:
        data = copy.deepcopy(base or BASE)
        for path, value in (changes or {}).items():
            deep_update(data, path, value)
        counter["n"] += 1
        path = tmp_path / f"scenario{counter['n']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return make
