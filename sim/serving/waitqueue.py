"""A replica's waiting queue as two numpy columns, so compiled code reads it without copying.

Entries live in `req[head:tail]` with `time[head:tail]`, the instant each joined. Arrivals
go to the back, or, when classes are in use, behind the last entry of their class or higher.
"""
from __future__ import annotations

import numpy as np


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

    def insert(self, r: int, when: float, priority: np.ndarray, lo: int) -> None:
        """Queue r behind every entry of its class or higher, but not before position `lo`."""
        skip = min(max(lo - self.head, 0), len(self))
        if self.tail == len(self.req):
            self._regrow(0)
        lo = self.head + skip
        behind = np.flatnonzero(priority[self.req[lo:self.tail]] < priority[r])
        at = lo + int(behind[0]) if len(behind) else self.tail
        self.req[at + 1:self.tail + 1] = self.req[at:self.tail].copy()
        self.time[at + 1:self.tail + 1] = self.time[at:self.tail].copy()
        self.req[at] = r
        self.time[at] = when
        self.tail += 1

    def pop(self, k: int = 1) -> None:
        """Drop the first k entries."""
        self.head += k
        if self.head == self.tail:
            self.head = self.tail = len(self.req) // 2

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
