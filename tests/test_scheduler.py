"""The compiled scheduler against the plainly written rules (tests/reference_replica.py):
identical request records, whatever the engine limits, KV pressure and routing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.simulation
from sim.core.metrics import COMPLETED
from sim.scenario import load_scenario
from sim.simulation import simulate
from tests.reference_replica import SteppingReplica
from tests.test_disagg import disagg
from tests.test_simulation import assert_invariants, assert_same_records, most_running


def run_both(monkeypatch, path, overrides=(), seed=None):
    compiled = simulate(load_scenario(path, list(overrides)), seed=seed)
    made = []

    class Reference(SteppingReplica):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(sim.simulation, "Replica", Reference)
        reference = simulate(load_scenario(path, list(overrides)), seed=seed)
    assert len(made) == len(reference.replicas)
    return compiled, reference


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seqs=st.integers(1, 64),
    chunk=st.one_of(st.none(), st.integers(32, 1024)),
    mem=st.floats(0.225, 0.9),
    policy=st.sampled_from(["round-robin", "least-outstanding", "least-kv", "power-of-two"]),
    dispatch=st.sampled_from(["immediate", "central"]),
    rate=st.floats(4, 60),
    seed=st.integers(0, 2**16),
    mixed=st.booleans(),
    reservation=st.sampled_from(["on_demand", "to_completion", "estimated"]),
    watermark=st.sampled_from([0.0, 0.01, 0.2]),
)
def test_compiled_rules_equal_the_reference(monkeypatch, write_scenario, seqs, chunk, mem, policy, dispatch,
                                            rate, seed, mixed, reservation, watermark):
    path = write_scenario({
        "duration": "10s", "warmup": "1s",
        "fleet.0.serve.engine": {"max_batch_seqs": seqs, "chunked_prefill": chunk, "memory_utilization": mem,
                                 "mixed_batches": mixed, "kv_reservation": reservation, "kv_watermark": watermark},
        "router": {"policy": policy, "dispatch": dispatch},
        "workload.0.rate": rate,
    })
    compiled, reference = run_both(monkeypatch, path, seed=seed)
    assert_same_records(compiled, reference)
    assert_invariants(compiled)
    assert [r.preemptions for r in compiled.replicas] == [r.preemptions for r in reference.replicas]
    assert [r.busy_time for r in compiled.replicas] == pytest.approx([r.busy_time for r in reference.replicas])


def test_heavy_preemption_equals_the_reference(monkeypatch, write_scenario):
    path = write_scenario({"fleet.0.serve.engine.memory_utilization": 0.23, "workload.0.rate": "40/s",
                           "fleet.0.serve.engine.max_batch_seqs": 128, "duration": "15s"})
    compiled, reference = run_both(monkeypatch, path)
    assert compiled.table.preemptions.sum() > 50
    assert_same_records(compiled, reference)


def test_unmixed_engine_runs_prefill_and_decode_apart_and_equals_the_reference(monkeypatch, write_scenario):
    """SGLang's default (and vLLM V0's): an iteration is all prefill when a prefill can run,
    otherwise all decode. Planning agrees with stepping the plainly written rule."""
    path = write_scenario({"fleet.0.serve.engine": {"max_batch_seqs": 32, "chunked_prefill": 256,
                                                    "mixed_batches": False},
                           "workload.0.rate": "20/s", "duration": "15s"})
    compiled, reference = run_both(monkeypatch, path)
    assert_same_records(compiled, reference)
    assert_invariants(compiled)
    mixed = simulate(load_scenario(path, ["fleet.0.serve.engine.mixed_batches=true"]))
    # decodes wait while prompts prefill: time per output token grows, time to first token falls
    tpot = lambda r: np.nanmean((r.table.finished - r.table.first_token) / np.maximum(r.table.output - 1, 1))
    ttft = lambda r: np.nanmean(r.table.first_token - r.table.arrival)
    assert tpot(compiled) > tpot(mixed) and ttft(compiled) < ttft(mixed)


def test_disaggregation_equals_the_reference(monkeypatch, write_scenario):
    path = write_scenario(base=disagg(memory_utilization=0.3))
    compiled, reference = run_both(monkeypatch, path)
    assert np.isfinite(compiled.table.kv_transfer_time).sum() > 0
    assert_same_records(compiled, reference)


def test_load_board_equals_asking_every_replica(monkeypatch, write_scenario):
    """The router's board (refreshed only where a plan says a load changed) picks the same
    replicas as asking each replica for its outstanding requests at every arrival."""
    from sim.serving.router import Router

    def direct(self, idx):
        reps = [self.replica[i] for i in self._as_array(idx).tolist()]
        return np.array([rep.outstanding() for rep in reps])

    path = write_scenario({"fleet.0.count": 6, "workload.0.rate": "40/s", "duration": "15s",
                           "fleet.0.serve.engine.max_batch_seqs": 16})
    board = simulate(load_scenario(path))
    monkeypatch.setattr(Router, "_loads", direct)
    asked = simulate(load_scenario(path))
    assert_same_records(board, asked)
    assert len(np.unique(board.table.replica)) == 6


def test_reserving_the_whole_output_never_preempts_and_equals_the_reference(monkeypatch, write_scenario):
    """TensorRT-LLM's GUARANTEED_NO_EVICT: under the KV pressure that preempts over 50 times
    above, a request joins only with its whole output's blocks, so nothing is preempted."""
    path = write_scenario({"fleet.0.serve.engine.memory_utilization": 0.23, "workload.0.rate": "40/s",
                           "fleet.0.serve.engine.max_batch_seqs": 128, "duration": "15s",
                           "fleet.0.serve.engine.kv_reservation": "to_completion"})
    compiled, reference = run_both(monkeypatch, path)
    assert compiled.table.preemptions.sum() == 0
    assert_same_records(compiled, reference)
    assert_invariants(compiled)


def test_reserved_requests_run_as_many_as_the_cache_holds_whole(write_scenario):
    """Hand arithmetic: a request of 1,500 prompt and 500 output tokens holds 1,999 tokens of
    KV when its last token is computed: 125 blocks of 16. Each reserves them when it joins,
    so a saturated replica runs floor(total / 125) at once, never more; allocating on demand,
    the same replica runs more at first and preempts."""
    changes = {"fleet.0.count": 1, "fleet.0.serve.engine.memory_utilization": 0.23,
               "fleet.0.serve.engine.max_batch_seqs": 256, "fleet.0.serve.engine.block_size": 16,
               "duration": "60s", "warmup": "0s",
               "workload.0": {"name": "w", "requests": 200, "concurrency": 200, "prompt_tokens": 1500,
                              "output_tokens": 500}}
    reserved = simulate(load_scenario(write_scenario({**changes, "fleet.0.serve.engine.kv_reservation":
                                                      "to_completion"})))
    on_demand = simulate(load_scenario(write_scenario(changes)))
    rep = reserved.replicas[0]
    fit = rep.total_blocks // 125
    assert 2 <= fit < 200

    assert most_running(reserved) == fit and reserved.table.preemptions.sum() == 0
    assert on_demand.table.preemptions.sum() > 0 and most_running(on_demand) > fit
    assert (reserved.table.state == COMPLETED).all() and (on_demand.table.state == COMPLETED).all()
