"""Columnar recorders: one preallocated numpy column per field, no per-event objects.

`RequestTable` has one row per request, created with all arrivals up front and filled in as
the request moves through the system. `BusyLog` has one row per stretch of work a replica
did (one iteration, or many decode iterations computed at once). A long run keeps both in
scratch files, whose finished rows leave memory (sim.core.column_store).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import column_store
from .column_store import ColumnStore, spill_rows
from .events import Topic

# Final states. Every request ends in exactly one of them: completed; rejected (a limit or a
# check said no: it could never be served as asked, or its tenant was over its rate); shed
# (admission turned it away while the fleet was overloaded); failed (admitted, then lost to
# a failure with no retry left); or still in flight when the run stopped.
IN_FLIGHT, COMPLETED, REJECTED, FAILED, SHED = 0, 1, 2, 3, 4
STATE_NAMES = {IN_FLIGHT: "in_flight", COMPLETED: "completed", REJECTED: "rejected", FAILED: "failed",
               SHED: "shed"}

# Reasons for rejection or failure.
NO_REASON = 0
REASONS = {
    NO_REASON: "",
    1: "queue_full",
    2: "exceeds_context",
    3: "exceeds_kv_cache",
    4: "prompt_exceeds_batch_tokens",
    5: "no_pool_serves_model",
    6: "rate_limited",         # rejected: its tenant's token bucket was short
    7: "overload",             # shed: its class's waiting threshold was reached
    8: "replica_failed",       # failed: its replica went down and retries are off
    9: "retries_exhausted",    # failed: its replica went down and it had used its retries
}
REASON_CODES = {name: code for code, name in REASONS.items() if name}


def unserved(state: np.ndarray) -> np.ndarray:
    """Requests turned away: rejected, shed or failed."""
    return (state == REJECTED) | (state == FAILED) | (state == SHED)


class RequestTable:
    def __init__(self, arrival: np.ndarray, stream: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                 spill: bool | None = None):
        n = len(arrival)
        self.n = n
        # long runs keep their columns in scratch files and let finished rows leave memory
        self.store = ColumnStore(n > spill_rows() if spill is None else spill)
        col = self.store.column
        self.arrival = self._input(arrival, float)
        self.stream = self._input(stream, np.int32)
        self.prompt = self._input(prompt, np.int64)
        self.output = self._input(output, np.int64)
        self.replica = col(n, np.int32, -1)
        self.admitted = col(n, float, np.nan)   # first time it entered a batch
        self.first_token = col(n, float, np.nan)
        self.finished = col(n, float, np.nan)
        self.state = col(n, np.int8)
        self.reason = col(n, np.int8)
        self.preemptions = col(n, np.int32)
        self.generated = col(n, np.int64)       # output tokens produced so far
        self.kv_ready = col(n, np.bool_)        # disaggregated: its KV cache has arrived to decode
        self.kv_transfer_bytes = col(n, float)  # disaggregated serving: KV cache moved
        self.kv_transfer_time = col(n, float, np.nan)
        self.priority = col(n, np.int64)        # class: higher goes first where classes are honoured
        self.cached = col(n, np.int64)          # prompt tokens its replica's prefix cache held (prefill skipped)
        self.session = col(n, np.int64, -1)     # session it is a call of (-1: none)
        self.final = col(n, np.bool_)           # the call that answers its session
        self.step = col(n, np.int64, -1)        # a pipeline session's step it is the call of (-1: none)
        self.keep_blocks = col(n, np.int64)     # KV blocks the prefix cache keeps when it completes
        # requests beyond chat text (sim.demand.media): what prompt and output mean depends on modality
        self.modality = col(n, np.int8)         # sim.demand.media.KIND_CODE of the model it asks for
        self.clip = col(n, np.int64, -1)        # speech to text: row of its clip's first window
        self.media_seconds = col(n, float, np.nan)  # audio (or video) seconds it carries
        self.samples = col(n, np.int64)         # images (video: clips) per request; 0 for token models
        self.pixels = col(n, float)             # output pixels x frames x images the VAE decodes

        self.retries = col(n, np.int32)         # times it was sent again after its replica failed
        self.start_wait = col(n, float)         # seconds it waited at the router for a replica to start
        self.longest_stall = col(n, float, np.nan)  # longest gap between two of its output tokens (s)
        self.window_start = 0.0                 # when measurement starts (the warm-up's end)
        self.settled = 0                        # rows below this have all ended (see `settle`)

        self.ended = Topic("ended")   # (i, time) when request i completes or ends unserved

    def complete(self, i: int, when: float) -> None:
        self.state[i] = COMPLETED
        self.finished[i] = when
        for fn in self.ended.subscribers:
            fn(i, when)

    def reject(self, i: int, reason: str, now: float) -> None:
        self.end(i, REJECTED, reason, now)

    def end(self, i: int, state: int, reason: str, now: float) -> None:
        """Request i ends unserved (rejected, shed or failed) for `reason`."""
        self.state[i] = state
        self.reason[i] = REASON_CODES[reason]
        self.finished[i] = now
        for fn in self.ended.subscribers:
            fn(i, now)

    def _input(self, values: np.ndarray, dtype) -> np.ndarray:
        """A column given at the start: the array itself in memory, copied when spilling."""
        if not self.store.spill:
            return np.asarray(values, dtype)
        out = self.store.column(self.n, dtype)
        step = column_store.CHUNK_ROWS
        for a in range(0, self.n, step):
            out[a:a + step] = values[a:a + step]
            self.store.drop(out, a, a + step)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-request column, by name."""
        return {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray) and len(v) == self.n}

    def settle(self, arrived: int) -> None:
        """Of the first `arrived` rows, those below the first still in flight have ended:
        with a spilling store, their pages may leave memory (requests end roughly in
        arrival order, so that prefix follows the run)."""
        if not self.store.spill or arrived <= self.settled:
            return
        open_ = np.flatnonzero(self.state[self.settled:arrived] == IN_FLIGHT)
        self.settled = self.settled + int(open_[0]) if len(open_) else arrived
        for column in self.arrays().values():
            self.store.release(column, self.settled)

    def let_go(self) -> None:
        """With a spilling store, every page may leave memory (a reader is done with them)."""
        for column in self.arrays().values():
            self.store.drop(column)

    def keep(self, mask: np.ndarray) -> None:
        """Drop rows (requests a closed-loop client never got to issue)."""
        if mask.all():
            return
        for name, value in self.arrays().items():
            setattr(self, name, value[mask])
        self.n = int(mask.sum())

    def columns(self, rows=None) -> Columns:
        """Per-request columns with derived latencies (NaN where they do not apply), of the
        rows `rows` selects (a mask or slice; all by default)."""
        return Columns(self, rows)


class Columns(Mapping):
    """A request table's columns by name, each made when asked for: a long run's summary
    then holds only the few it is working on."""

    NAMES = ("id", "stream", "arrival", "prompt_tokens", "output_tokens", "replica", "queue_wait", "ttft",
             "tpot", "e2e", "finished", "state", "reason", "preemptions", "retries", "start_wait",
             "cached_tokens", "session", "final", "kv_transfer_bytes", "kv_transfer_s", "longest_stall")
    STORED = {"stream": "stream", "arrival": "arrival", "prompt_tokens": "prompt", "output_tokens": "output",
              "replica": "replica", "finished": "finished", "state": "state", "reason": "reason",
              "preemptions": "preemptions", "retries": "retries", "start_wait": "start_wait",
              "cached_tokens": "cached", "session": "session", "final": "final",
              "kv_transfer_bytes": "kv_transfer_bytes", "kv_transfer_s": "kv_transfer_time"}

    def __init__(self, table: RequestTable, rows=None):
        self.table = table
        self.rows = slice(None) if rows is None else rows

    def __iter__(self):
        return iter(self.NAMES)

    def __contains__(self, name) -> bool:
        return name in self.NAMES

    def __len__(self) -> int:
        return len(self.NAMES)

    def __getitem__(self, name: str) -> np.ndarray:
        t, r = self.table, self.rows
        if name in self.STORED:
            return getattr(t, self.STORED[name])[r]
        if name == "id":
            return np.arange(t.n)[r]
        # each made with as few whole-length temporaries as it can: a long run has millions of rows
        with np.errstate(invalid="ignore", divide="ignore"):
            if name == "queue_wait":
                return t.admitted[r] - t.arrival[r]
            if name == "ttft":
                return t.first_token[r] - t.arrival[r]        # NaN until its first token
            ended = t.state[r] == COMPLETED
            if name == "tpot":
                decode_tokens = t.output[r] - 1
                out = t.finished[r] - t.first_token[r]
                out /= np.maximum(decode_tokens, 1)
                ended &= decode_tokens > 0
            elif name == "e2e":
                out = t.finished[r] - t.arrival[r]
            elif name == "longest_stall":
                out = np.array(t.longest_stall[r])
                ended &= t.output[r] > 1
            else:
                raise KeyError(name)
            out[~ended] = np.nan
            return out


class Series:
    """Rows appended during a run, in growable named columns (FIELDS: name -> dtype); spilled,
    the rows written go to scratch files as the run goes (sim.core.column_store)."""

    FIELDS: dict[str, type] = {}

    def __init__(self, capacity: int = 1024, spill: bool = False):
        self._n = 0
        self.store = ColumnStore(spill)
        self._cols = {k: self.store.column(capacity, dtype) for k, dtype in self.FIELDS.items()}

    def _next_row(self) -> int:
        """The row to write next (made room for)."""
        i = self._n
        if i == len(next(iter(self._cols.values()))):
            for k in self.FIELDS:
                self._cols[k] = self.store.grow(self._cols[k], 2 * i)
        self._n += 1
        if self.store.spill and self._n % column_store.CHUNK_ROWS == 0:   # written rows never change: let them go
            for v in self._cols.values():
                self.store.release(v, self._n)
        return i

    def __len__(self) -> int:
        return self._n

    def columns(self) -> dict[str, np.ndarray]:
        return {k: v[: self._n] for k, v in self._cols.items()}

    def let_go(self) -> None:
        """With a spilling store, every page may leave memory (a reader is done with them)."""
        for v in self._cols.values():
            self.store.drop(v)


class BusyLog(Series):
    """Stretches of replica work: (replica, start, end, iterations, tokens, kv blocks used,
    clock as a fraction of full speed: below 1 while a power cap holds, host seconds per
    iteration during which the devices wait)."""

    FIELDS = {"replica": np.int32, "start": float, "end": float, "iterations": np.int64, "tokens": np.int64,
              "kv_blocks": np.int64, "clock": float, "host_wait": float}

    def add(self, replica: int, start: float, end: float, iterations: int, tokens: int, kv_blocks: int,
            clock: float = 1.0, host_wait: float = 0.0) -> None:
        i = self._next_row()
        c = self._cols
        c["replica"][i], c["start"][i], c["end"][i] = replica, start, end
        c["iterations"][i], c["tokens"][i], c["kv_blocks"][i] = iterations, tokens, kv_blocks
        c["clock"][i], c["host_wait"][i] = clock, host_wait
