"""Columnar recorders: one preallocated numpy column per field, no per-event objects.

`RequestTable` has one row per request, created with all arrivals up front and filled in as
the request moves through the system. `BusyLog` has one row per stretch of work a replica
did (one iteration, or many decode iterations computed at once).
"""
from __future__ import annotations

import numpy as np

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
    def __init__(self, arrival: np.ndarray, stream: np.ndarray, prompt: np.ndarray, output: np.ndarray):
        n = len(arrival)
        self.n = n
        self.arrival = np.asarray(arrival, float)
        self.stream = np.asarray(stream, np.int32)
        self.prompt = np.asarray(prompt, np.int64)
        self.output = np.asarray(output, np.int64)
        self.replica = np.full(n, -1, np.int32)
        self.admitted = np.full(n, np.nan)      # first time it entered a batch
        self.first_token = np.full(n, np.nan)
        self.finished = np.full(n, np.nan)
        self.state = np.zeros(n, np.int8)
        self.reason = np.zeros(n, np.int8)
        self.preemptions = np.zeros(n, np.int32)
        self.generated = np.zeros(n, np.int64)  # output tokens produced so far
        self.kv_ready = np.zeros(n, np.bool_)    # disaggregated: its KV cache has arrived to decode
        self.kv_transfer_bytes = np.zeros(n)     # disaggregated serving: KV cache moved
        self.kv_transfer_time = np.full(n, np.nan)
        self.priority = np.zeros(n, np.int64)    # class: higher goes first where classes are honoured
        self.cached = np.zeros(n, np.int64)      # prompt tokens its replica's prefix cache held (prefill skipped)
        self.session = np.full(n, -1, np.int64)  # session it is a call of (-1: none)
        self.final = np.zeros(n, np.bool_)       # the call that answers its session
        self.step = np.full(n, -1, np.int64)     # a pipeline session's step it is the call of (-1: none)
        self.keep_blocks = np.zeros(n, np.int64) # KV blocks the prefix cache keeps when it completes
        # requests beyond chat text (sim.media): what prompt and output mean depends on modality
        self.modality = np.zeros(n, np.int8)     # sim.media.KIND_CODE of the model it asks for
        self.clip = np.full(n, -1, np.int64)     # speech to text: row of its clip's first window
        self.media_seconds = np.full(n, np.nan)  # audio (or video) seconds it carries
        self.samples = np.zeros(n, np.int64)     # images (video: clips) per request; 0 for token models
        self.pixels = np.zeros(n)                # output pixels x frames x images the VAE decodes

        self.retries = np.zeros(n, np.int32)     # times it was sent again after its replica failed
        self.start_wait = np.zeros(n)            # seconds it waited at the router for a replica to start
        self.longest_stall = np.full(n, np.nan)  # longest gap between two of its output tokens (s)
        self.window_start = 0.0                  # when measurement starts (the warm-up's end)

        self.on_done = None  # called as on_done(i, time) when request i completes or ends unserved

    def complete(self, i: int, when: float) -> None:
        self.state[i] = COMPLETED
        self.finished[i] = when
        if self.on_done is not None:
            self.on_done(i, when)

    def reject(self, i: int, reason: str, now: float) -> None:
        self.end(i, REJECTED, reason, now)

    def end(self, i: int, state: int, reason: str, now: float) -> None:
        """Request i ends unserved (rejected, shed or failed) for `reason`."""
        self.state[i] = state
        self.reason[i] = REASON_CODES[reason]
        self.finished[i] = now
        if self.on_done is not None:
            self.on_done(i, now)

    def keep(self, mask: np.ndarray) -> None:
        """Drop rows (requests a closed-loop client never got to issue)."""
        for name, value in list(vars(self).items()):
            if isinstance(value, np.ndarray) and len(value) == self.n:
                setattr(self, name, value[mask])
        self.n = int(mask.sum())

    def columns(self) -> dict[str, np.ndarray]:
        """Per-request columns with derived latencies (NaN where they do not apply)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            decode_tokens = self.output - 1
            tpot = np.where(decode_tokens > 0, (self.finished - self.first_token) / np.maximum(decode_tokens, 1), np.nan)
        done = self.state == COMPLETED
        return {
            "id": np.arange(self.n),
            "stream": self.stream,
            "arrival": self.arrival,
            "prompt_tokens": self.prompt,
            "output_tokens": self.output,
            "replica": self.replica,
            "queue_wait": self.admitted - self.arrival,
            "ttft": np.where(~np.isnan(self.first_token), self.first_token - self.arrival, np.nan),
            "tpot": np.where(done, tpot, np.nan),
            "e2e": np.where(done, self.finished - self.arrival, np.nan),
            "finished": self.finished,
            "state": self.state,
            "reason": self.reason,
            "preemptions": self.preemptions,
            "retries": self.retries,
            "start_wait": self.start_wait,
            "cached_tokens": self.cached,
            "session": self.session,
            "final": self.final,
            "kv_transfer_bytes": self.kv_transfer_bytes,
            "kv_transfer_s": self.kv_transfer_time,
            "longest_stall": np.where(done & (self.output > 1), self.longest_stall, np.nan),
        }


class BusyLog:
    """Stretches of replica work: (replica, start, end, iterations, tokens, kv blocks used,
    clock as a fraction of full speed: below 1 while a power cap holds, host seconds per
    iteration during which the devices wait)."""

    def __init__(self, capacity: int = 1024):
        self._n = 0
        self._cols = {
            "replica": np.zeros(capacity, np.int32),
            "start": np.zeros(capacity),
            "end": np.zeros(capacity),
            "iterations": np.zeros(capacity, np.int64),
            "tokens": np.zeros(capacity, np.int64),
            "kv_blocks": np.zeros(capacity, np.int64),
            "clock": np.ones(capacity),
            "host_wait": np.zeros(capacity),
        }

    def add(self, replica: int, start: float, end: float, iterations: int, tokens: int, kv_blocks: int,
            clock: float = 1.0, host_wait: float = 0.0) -> None:
        if self._n == len(self._cols["start"]):
            for k, v in self._cols.items():
                self._cols[k] = np.concatenate([v, np.zeros_like(v)])
        i = self._n
        c = self._cols
        c["replica"][i], c["start"][i], c["end"][i] = replica, start, end
        c["iterations"][i], c["tokens"][i], c["kv_blocks"][i] = iterations, tokens, kv_blocks
        c["clock"][i], c["host_wait"][i] = clock, host_wait
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def columns(self) -> dict[str, np.ndarray]:
        return {k: v[: self._n] for k, v in self._cols.items()}
