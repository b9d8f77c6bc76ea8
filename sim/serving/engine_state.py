"""The compiled scheduler's data, named: a replica's engine state and what one run records.

`scheduler.engine_run` works on int64 arrays rather than objects, so that it compiles and
runs fast; the constants here name their rows and entries, and each bundle crosses into
compiled code as a plain tuple in the order written below. (Numba takes a tuple of arrays as
cheaply as the arrays one by one; a NamedTuple or jitclass argument costs about 8 µs more per
call, measured on this project's bench machine: seconds over a million-request run.)

EngineState, a replica's engine at an iteration boundary: (seqs, counters, stack)
  seqs[ROW, i]   running sequence i < counters[RUNNING], in admission order:
                 REQ request id; TGT tokens to prefill (prompt + tokens generated before a
                 preemption); KV tokens in the KV cache; BLK KV blocks held; GEN output
                 tokens generated so far; LAST when its last token came (ns; 0: none yet);
                 GAP the longest gap between two of its tokens so far (ns)
  counters[..]   RUNNING sequences; FREE KV blocks; DEMAND blocks the waiting requests need;
                 LATE blocks freed during the iteration in progress (usable from the next
                 one); EVICT blocks a prefix cache holds that no sequence uses, taken back when
                 the free pool runs short (0 while prefix caching is off); PREEMPTED
                 sequences on the stack; RATIO the share of the decoding sequences' remaining
                 output held back from admissions with RESERVE = ESTIMATED, in parts per
                 billion (0: the initial share; `output_estimate.py`)
  stack[ROW, j]  preempted sequences waiting to run again, j < counters[PREEMPTED], the top
                 last: S_REQ, S_GEN, S_LAST, S_GAP, as REQ, GEN, LAST, GAP of seqs

Queue, the replica's waiting queue (`waitqueue.py`): (request, joined, head, tail)

Requests, the request table's columns the rules read (`requests(table)`), entries PROMPT,
  OUTPUT, GENERATED, KV_READY, PRIORITY, CACHED, KEEP_BLOCKS, FIRST_TOKEN

Rules, a tuple of ints fixed per replica, entries BLOCK_SIZE .. WATERMARK: see `rules()`.

Record, what one run writes: (ends, batch, events, outcome)
  ends[s]          when iteration s ended
  batch[ROW, s]    the batch as iteration s runs (column `steps`: the end state): B_RUNNING,
                   B_WAITING, B_USED KV blocks, B_DEMAND of the waiting, B_TOKENS computed,
                   B_NEXT the iteration at whose end running + waiting next changes (-1: not
                   in this run)
  events[e]        (kind, iteration, request, value), kind one of EV_*
  outcome[..]      STEPS run; STOPPED why (HORIZON, IDLE, EVENT, ROOM); LOGGED events;
                   CONSUMED queue entries; and CK_LOGGED, CK_CONSUMED at the checkpoint
"""
from __future__ import annotations

import numpy as np
from numba import njit

# rows of seqs
REQ, TGT, KV, BLK, GEN, LAST, GAP = range(7)
SEQ_ROWS = 7
# rows of stack
S_REQ, S_GEN, S_LAST, S_GAP = range(4)
STACK_ROWS = 4
# entries of counters
RUNNING, FREE, DEMAND, LATE, EVICT, PREEMPTED, RATIO = range(7)
COUNTERS = 7
# rows of batch
B_RUNNING, B_WAITING, B_USED, B_DEMAND, B_TOKENS, B_NEXT = range(6)
BATCH_ROWS = 6
# event kinds: (kind, iteration, request, value)
EV_ADMIT, EV_FIRST, EV_DONE, EV_PREEMPT, EV_HANDOFF, EV_TOKENS, EV_GAP = range(7)
# entries of outcome
STEPS, STOPPED, LOGGED, CONSUMED, CK_LOGGED, CK_CONSUMED = range(6)
OUTCOME_SIZE = 6
# why a run stopped
HORIZON, IDLE, EVENT, ROOM = range(4)
# entries of requests (see `requests()`)
PROMPT, OUTPUT, GENERATED, KV_READY, PRIORITY, CACHED, KEEP_BLOCKS, FIRST_TOKEN = range(8)
# entries of rules (see `rules()`)
(BLOCK_SIZE, MAX_SEQS, MAX_TOKENS, CHUNK, CHUNKED, KV_GROWS, PER_SEQ, TOTAL_BLOCKS, STOP_DONE, PREFILL_ONLY, CLASSES,
 PREEMPT_LOWER, STOP_EVICT, MIXED, RESERVE, WATERMARK) = range(16)
NS = 1e9       # token times and gaps are kept in integer nanoseconds
# what rules[RESERVE] says a joining request holds (`engine.kv_reservation`)
ON_DEMAND, TO_COMPLETION, ESTIMATED = range(3)
RESERVATIONS = {"on_demand": ON_DEMAND, "to_completion": TO_COMPLETION, "estimated": ESTIMATED}


def rules(*, block_size: int, max_seqs: int, max_tokens: int, chunk: int, chunked: bool, kv_grows: bool,
          per_seq_blocks: int, total_blocks: int, stop_at_completions: bool, prefill_only: bool,
          priority_classes: bool, preempt_lower: bool, stop_at_evictions: bool, mixed_batches: bool,
          reservation: str, watermark: int = 0) -> tuple:
    """A replica's scheduling rules, entries BLOCK_SIZE .. WATERMARK in this order:
    block_size tokens per KV block; max_seqs running at once; max_tokens per iteration;
    chunk the most prefill tokens per iteration; chunked whether a prompt may be split;
    kv_grows whether the KV cache grows with the sequence (else per_seq_blocks only, e.g.
    a state-space model's state); total_blocks in the KV cache; stop_at_completions end a
    run after an iteration that completes a request; prefill_only hand a sequence off after
    its first token; priority_classes keep sequences in class order; preempt_lower let a
    waiting head preempt lower classes; stop_at_evictions end a run after an iteration that
    took blocks back from the prefix cache; mixed_batches prefill and decode in one iteration;
    reservation what a joining request holds: on_demand its prompt's blocks (decoding sequences
    take more as they grow); to_completion the blocks of its whole output too, so that no
    running sequence ever needs a block it cannot get; estimated its prompt's, when they and
    its whole output fit beside a share of the decoding sequences' remaining output
    (`output_estimate.py`); watermark the KV blocks a joining request must leave free."""
    return (int(block_size), int(max_seqs), int(max_tokens), int(chunk), int(chunked), int(kv_grows),
            int(per_seq_blocks), int(total_blocks), int(stop_at_completions), int(prefill_only),
            int(priority_classes), int(preempt_lower), int(stop_at_evictions), int(mixed_batches),
            RESERVATIONS[reservation], int(watermark))


class EngineState:
    """seqs, counters and stack (see above) with room for `capacity` running sequences."""

    __slots__ = ("seqs", "counters", "stack")

    def __init__(self, capacity: int, total_blocks: int):
        self.seqs = np.zeros((SEQ_ROWS, capacity), np.int64)
        self.counters = np.zeros(COUNTERS, np.int64)
        self.stack = np.zeros((STACK_ROWS, 2 * capacity + 16), np.int64)
        self.clear(total_blocks)

    def arrays(self) -> tuple:
        return self.seqs, self.counters, self.stack

    def take(self, other: EngineState) -> None:
        """Become `other`'s state; `other` keeps this one's old arrays as scratch."""
        self.seqs, other.seqs = other.seqs, self.seqs
        self.stack, other.stack = other.stack, self.stack
        self.counters[:] = other.counters

    def clear(self, total_blocks: int) -> None:
        """Nothing running or preempted, every block free."""
        self.seqs[:] = 0
        self.stack[:] = 0
        self.counters[:] = 0
        self.counters[FREE] = total_blocks

    def running(self) -> np.ndarray:
        """Request ids of the running sequences."""
        return self.seqs[REQ, :self.counters[RUNNING]]

    def preempted(self) -> np.ndarray:
        """Request ids of the preempted sequences, bottom of the stack first."""
        return self.stack[S_REQ, :self.counters[PREEMPTED]]


def requests(table) -> tuple:
    """The request table's columns the scheduler reads, in the order it unpacks them."""
    return (table.prompt, table.output, table.generated, table.kv_ready, table.priority, table.cached,
            table.keep_blocks, table.first_token)


# ---- the two operations every phase of the compiled scheduler uses ------------------------
@njit(cache=True, inline="always")
def blocks_for(tokens, rules):
    """KV blocks a sequence of `tokens` holds."""
    bs = rules[BLOCK_SIZE]
    return ((tokens + bs - 1) // bs if rules[KV_GROWS] else 0) + rules[PER_SEQ]


@njit(cache=True, inline="always")
def log_event(events, lp, kind, j, r, v):
    """Append event (kind, iteration, request, value) at events[lp]; the next free row."""
    events[lp, 0], events[lp, 1], events[lp, 2], events[lp, 3] = kind, j, r, v
    return lp + 1
