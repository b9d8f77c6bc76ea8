"""A replica's waiting queue as two numpy columns, so compiled code reads it without copying.

Entries live in `req[head:tail]` with `time[head:tail]`, the instant each joined. Arrivals
go to the back; preempted sequences go back to the front, where slack is kept for them.
"""
from __future__ import annotations

import numpy as np

ALWAYS = -np.inf   # the join time of a sequence put back at the front: admissible at once


class WaitQueue:
    def __init__(self, capacity: int = 64):
        self.req = np.zeros(capacity, np.int64)
        self.time = np.zeros(capacity)
        self.head = self.tail = capacity // 2

    def __len__(self) -> int:
        return self.tail - self.head

    def __iter__(self):
        return iter(self.req[self.head:self.tail].tolist())

    def __getitem__(self, k: int) -> int:
        return int(self.req[self.head + k])

    def push(self, r: int, when: float) -> None:
        if self.tail == len(self.req):
            self._regrow(0)
        self.req[self.tail] = r
        self.time[self.tail] = when
        self.tail += 1

    def pop(self, k: int = 1) -> None:
        """Drop the first k entries."""
        self.head += k
        if self.head == self.tail:
            self.head = self.tail = len(self.req) // 2

    def push_front(self, reqs: np.ndarray) -> None:
        """Put requests back at the front, reqs[-1] first (a stack's top is the queue's head)."""
        k = len(reqs)
        if k == 0:
            return
        if self.head < k:
            self._regrow(k)
        self.head -= k
        self.req[self.head:self.head + k] = reqs[::-1]
        self.time[self.head:self.head + k] = ALWAYS

    def _regrow(self, front: int) -> None:
        """Move the entries to a buffer with at least `front` free slots before them and as
        many after."""
        n = len(self)
        cap = max(2 * len(self.req), 4 * (n + front) + 16)
        start = (cap - n) // 2
        req, time = np.zeros(cap, np.int64), np.zeros(cap)
        req[start:start + n] = self.req[self.head:self.tail]
        time[start:start + n] = self.time[self.head:self.tail]
        self.req, self.time, self.head, self.tail = req, time, start, start + n
