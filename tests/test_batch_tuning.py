"""TensorRT-LLM's dynamic batch size tuning: its table by hand, and a run that obeys it."""
from __future__ import annotations

import pytest

from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.serving.batch_tuning import capacity, runtime_batch_size, tuned_batch
from sim.simulation import simulate
from tests.test_simulation import assert_invariants, most_running


@pytest.mark.parametrize("capacity, batch", [
    (1, 128), (143, 128), (144, 256), (280, 256), (335, 256), (336, 512), (662, 512), (671, 512),
    (672, 768), (831, 768), (832, 1024), (1279, 1024), (1280, 1536), (1663, 1536),
    # past the table: a multiple of 512 when within 128 above it, else the capacity
    (1664, 1664), (2048, 2048), (2175, 2048), (2176, 2176), (3937, 3937),
])
def test_the_batch_size_table(capacity, batch):
    assert runtime_batch_size(capacity) == batch


def test_the_engine_limit_still_binds():
    assert capacity(total_blocks=6724, blocks_per_request=24) == 280
    assert tuned_batch(max_seqs=384, capacity=280) == 256
    assert tuned_batch(max_seqs=200, capacity=280) == 200


def test_a_tensorrt_engine_runs_the_tables_batch(write_scenario):
    """Hand arithmetic: 1,000 in / 500 out take ceil(1,500 / 64) = 24 blocks of 64 tokens, so
    the replica's 6,724 blocks hold 280 such requests (reserved whole, also 280); the table
    makes that 256. Without tuning the same engine runs all 280."""
    changes = {"fleet.0.count": 1, "duration": "60s", "warmup": "0s",
               "fleet.0.serve.engine": {"framework": "trtllm", "version": "0.20.0", "max_batch_seqs": 1024,
                                        "memory_utilization": 0.9, "block_size": 64},
               "workload": [{"name": "w", "requests": 600, "concurrency": 600, "prompt_tokens": 1000,
                             "output_tokens": 500}]}
    tuned = simulate(load_scenario(write_scenario(changes)))
    assert tuned.replicas[0].total_blocks == 6724
    assert most_running(tuned) == 256
    assert_invariants(tuned)
    assert any("batch of 256 sequences, not 1024" in a and "holds 280 requests" in a
               for a in summarize(tuned)["assumptions"])
    untuned = simulate(load_scenario(write_scenario(changes), ["fleet.0.serve.engine.batch_size_tuning=false"]))
    assert most_running(untuned) == 280
    assert not any("batch size tuning" in a for a in summarize(untuned)["assumptions"])
