"""Where the recorders' columns live: in memory, or, for long runs, in scratch files whose
finished rows leave memory, so a run's memory does not grow with simulated time.

A spilled column is an ordinary numpy array over a shared memory map of an unlinked
temporary file (deleted by the OS even if the process is killed). Code that reads and
writes it, the compiled scheduler included, sees no difference. Once rows are final (their
requests finished, or a busy-log stretch written), `release` tells the OS it may drop
their pages: the data stays in the file and is read back if touched again, so releasing is
never wrong, only slower if misjudged. Readers that go over every row (the summary, the
results writer) take columns `in_chunks` and release behind them.

Runs with more than `DCSIM_SPILL_ROWS` requests (default 1,000,000) spill; set it to 0 to
spill every run, or to a huge number never to.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import tempfile

import numpy as np

SPILL_ROWS_ENV = "DCSIM_SPILL_ROWS"
SPILL_ROWS_DEFAULT = 1_000_000
CHUNK_ROWS = 1 << 18         # rows a reader takes at a time (2 MiB of a float column)
WRITE_ROWS = 1 << 16         # rows per row group of a long run's requests.parquet
_PAGE = mmap.PAGESIZE


def spill_rows() -> int:
    """Runs with more requests than this keep their columns in scratch files."""
    raw = os.environ.get(SPILL_ROWS_ENV)
    try:
        return int(float(raw)) if raw is not None else SPILL_ROWS_DEFAULT
    except ValueError:
        return SPILL_ROWS_DEFAULT


def steady_heap() -> None:
    """Keep glibc from growing its heap for ever on a long run: by default it raises the size
    from which it maps big blocks to the largest block freed so far, after which the run's
    many short-lived arrays fragment the heap and memory creeps up with simulated time.

    The size is fixed at 4 MiB, and up to 64 MiB free at the heap's top stays mapped. Smaller
    figures slow the compiled kernels that allocate on every call: 60-s slices of bench-fleet
    took 92.8 s with a 128 KiB threshold, 92.4 s with a 128 KiB trim, 61.7 s with these
    figures and 63.0 s with glibc's dynamic ones."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 4 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):   # not glibc: nothing to do
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt's parameter numbers (malloc.h)


class ColumnStore:
    """Makes a recorder's columns, in memory (`spill=False`) or in scratch files."""

    def __init__(self, spill: bool):
        self.spill = spill
        if spill:
            steady_heap()    # late, but better than not (the `dcsim` command sets it at its start)
        self._maps: dict[int, _Map] = {}   # id of a column's memory map -> what the store knows of it

    def column(self, n: int, dtype, fill=0) -> np.ndarray:
        """A column of n rows set to `fill`."""
        if not self.spill:
            return np.full(n, fill, dtype)
        # unlinked: gone with the process; it stays open as the backing of the column's memory map
        fh = tempfile.TemporaryFile(prefix="dcsim-column-")  # noqa: SIM115 -- held by the store (_Map) past this call
        arr = self._map(fh, n, np.dtype(dtype), 0)
        if fill != 0:
            for a in range(0, n, CHUNK_ROWS):    # write the fill a chunk at a time, letting each go
                arr[a:a + CHUNK_ROWS] = fill
                self.drop(arr, a, a + CHUNK_ROWS)
        return arr

    def grow(self, arr: np.ndarray, n: int) -> np.ndarray:
        """The column lengthened to n rows, the new ones zero (spilled: the same file,
        longer, and nothing copied)."""
        m = self._maps.pop(id(_map_of(arr)), None)
        if m is None:
            return np.concatenate([arr, np.zeros(n - len(arr), arr.dtype)])
        return self._map(m.file, n, arr.dtype, m.released)

    def _map(self, fh, n: int, dtype: np.dtype, released: int) -> np.ndarray:
        size = max(n * dtype.itemsize, 1)
        fh.truncate(size)                  # new bytes read as zeros and take no memory
        mm = mmap.mmap(fh.fileno(), size)
        arr = np.frombuffer(mm, dtype, count=n)
        self._maps[id(mm)] = _Map(mm, fh, arr.__array_interface__["data"][0], released)
        return arr

    def _bytes(self, arr: np.ndarray, a: int, b: int | None):
        """The map holding rows [a, b) of `arr` (a column made here, or a view of one), and
        their byte range in it; None for memory not made here."""
        m = self._maps.get(id(_map_of(arr)))
        if m is None:
            return None
        offset = arr.__array_interface__["data"][0] - m.address
        end = offset + (len(arr) if b is None else min(b, len(arr))) * arr.itemsize
        return m, offset + a * arr.itemsize, min(end, len(m.map))

    def release(self, arr: np.ndarray, rows: int) -> None:
        """Rows [0, rows) of a column made here are final: their pages may leave memory.
        Later calls release only what was not released before."""
        found = self._bytes(arr, 0, rows)
        if found is not None:
            m, _, end = found
            end = end // _PAGE * _PAGE
            if end > m.released:
                m.map.madvise(mmap.MADV_DONTNEED, m.released, end - m.released)
                m.released = end

    def drop(self, arr: np.ndarray, a: int = 0, b: int | None = None) -> None:
        """Rows [a, b) of a column made here (or of a view of one) may leave memory now (a
        reader is done with them); they are read again from the file if touched."""
        found = self._bytes(arr, a, b)
        if found is not None:
            m, start, end = found
            start = start // _PAGE * _PAGE
            if end > start:
                m.map.madvise(mmap.MADV_DONTNEED, start, end - start)


class _Map:
    """A spilled column's memory map, its file, the address of its first byte, and how many
    of its leading bytes were released for good."""

    def __init__(self, mm: mmap.mmap, fh, address: int, released: int):
        self.map, self.file, self.address, self.released = mm, fh, address, released


def _map_of(arr: np.ndarray):
    """The object an array's memory comes from (a memory map for spilled columns)."""
    while isinstance(arr, np.ndarray) and arr.base is not None:
        arr = arr.base
    return arr.obj if isinstance(arr, memoryview) else arr


def in_chunks(columns: dict[str, np.ndarray], store: ColumnStore | None = None, rows: int | None = None):
    """Yield (start, {name: rows [start, start + rows)}) over equally long columns (CHUNK_ROWS
    at a time by default); with a spilling store, each chunk's pages leave memory once the
    next is asked for."""
    n = len(next(iter(columns.values()))) if columns else 0
    rows = rows or CHUNK_ROWS
    for a in range(0, n, rows):
        yield a, {k: v[a:a + rows] for k, v in columns.items()}
        if store is not None:
            for v in columns.values():
                store.drop(v, a, a + rows)
