"""The compiled scheduler against the plainly written rules (tests/reference_replica.py):
identical request records, whatever the engine limits, KV pressure and routing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.simulation
from sim.scenario import load_scenario
from sim.simulation import simulate
from tests.reference_replica import SteppingReplica
from tests.test_disagg import disagg
from tests.test_simulation import assert_invariants, assert_same_records


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
)
def test_compiled_rules_equal_the_reference(monkeypatch, write_scenario, seqs, chunk, mem, policy, dispatch,
                                            rate, seed, mixed):
    path = write_scenario({
        "duration": "10s", "warmup": "1s",
        "fleet.0.serve.engine": {"max_batch_seqs": seqs, "chunked_prefill": chunk, "memory_utilization": mem,
                                 "mixed_batches": mixed},
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
