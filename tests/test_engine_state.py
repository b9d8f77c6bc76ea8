"""The compiled scheduler's named data: each name points at the part it says."""
import numpy as np

from sim.core.metrics import RequestTable
from sim.serving import engine_state as es


def test_rules_land_at_their_names():
    rules = es.rules(block_size=16, max_seqs=256, max_tokens=8192, chunk=512, chunked=True, kv_grows=True,
                     per_seq_blocks=3, total_blocks=1000, stop_at_completions=False, prefill_only=True,
                     priority_classes=False, preempt_lower=True, stop_at_evictions=False, mixed_batches=True,
                     reservation="to_completion")
    assert rules[es.BLOCK_SIZE] == 16 and rules[es.MAX_SEQS] == 256 and rules[es.MAX_TOKENS] == 8192
    assert rules[es.CHUNK] == 512 and rules[es.CHUNKED] == 1 and rules[es.KV_GROWS] == 1
    assert rules[es.PER_SEQ] == 3 and rules[es.TOTAL_BLOCKS] == 1000 and rules[es.STOP_DONE] == 0
    assert rules[es.PREFILL_ONLY] == 1 and rules[es.CLASSES] == 0 and rules[es.PREEMPT_LOWER] == 1
    assert rules[es.STOP_EVICT] == 0 and rules[es.MIXED] == 1 and rules[es.RESERVE] == es.TO_COMPLETION
    assert all(type(v) is int for v in rules)      # one compiled signature for every replica
    # a KV block per 16 tokens, plus the sequence's fixed blocks
    assert es.blocks_for(17, rules) == 2 + 3 and es.blocks_for(16, rules) == 1 + 3


def test_request_columns_land_at_their_names():
    z = np.zeros(4, np.int64)
    table = RequestTable(np.zeros(4), z, z + 10, z + 5)
    cols = es.requests(table)
    assert cols[es.PROMPT] is table.prompt and cols[es.OUTPUT] is table.output
    assert cols[es.GENERATED] is table.generated and cols[es.KV_READY] is table.kv_ready
    assert cols[es.PRIORITY] is table.priority and cols[es.CACHED] is table.cached
    assert cols[es.KEEP_BLOCKS] is table.keep_blocks and cols[es.FIRST_TOKEN] is table.first_token


def test_committing_a_state_takes_its_arrays_and_copies_its_counters():
    committed, planned = es.EngineState(4, 100), es.EngineState(4, 100)
    assert committed.counters[es.FREE] == 100 and committed.running().size == 0
    planned.seqs[es.REQ, :2] = [7, 9]
    planned.stack[es.S_REQ, 0] = 3
    planned.counters[[es.RUNNING, es.PREEMPTED, es.FREE]] = [2, 1, 90]
    old_seqs = committed.seqs
    committed.take(planned)
    assert committed.running().tolist() == [7, 9] and committed.preempted().tolist() == [3]
    assert committed.counters[es.FREE] == 90
    assert planned.seqs is old_seqs                  # the plan's buffer for next time
    assert committed.counters is not planned.counters
    committed.clear(100)
    assert committed.running().size == 0 and committed.preempted().size == 0
    assert committed.counters[es.FREE] == 100 and not committed.seqs.any()


def test_log_event_appends_a_row():
    events = np.zeros((3, 4), np.int64)
    assert es.log_event(events, 1, es.EV_DONE, 5, 42, 7) == 2
    assert events[1].tolist() == [es.EV_DONE, 5, 42, 7]
