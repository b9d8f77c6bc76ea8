"""Numba's on-disk cache, kept true to the sources.

Numba keys a cached function on its own file's timestamp only, so the scheduler's compiled
loop (serving/scheduler.py), which inlines the admission rules (serving/admission.py), the
kernels (timing/kernels.py) and constants from other files (serving/engine_state.py), would
keep running yesterday's code after one of those changes. Before anything compiles, this
drops every cached compilation under `sim/` when the source of any module that uses numba
has changed since the cache was written (their hash is kept next to the cache).
"""
from __future__ import annotations

import contextlib
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
STAMP = os.path.join(HERE, "__pycache__", "compiled-sources.sha256")


def compiled_sources() -> list[str]:
    """Every module under `sim/` that uses numba, as a path relative to it, sorted."""
    found = []
    for folder, _, files in os.walk(HERE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    if b"numba" in f.read():
                        found.append(os.path.relpath(path, HERE))
    return sorted(found)


def sources_hash() -> str:
    h = hashlib.sha256()
    for name in compiled_sources():
        h.update(name.encode())
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def refresh() -> None:
    """Drop stale compilations (a read-only install keeps its cache as it is)."""
    digest = sources_hash()
    try:
        with open(STAMP) as f:
            if f.read().strip() == digest:
                return
    except OSError:
        pass
    try:
        for folder, _, files in os.walk(HERE):
            for name in files:
                if name.endswith((".nbi", ".nbc")):
                    with contextlib.suppress(FileNotFoundError):   # another process cleared it first
                        os.remove(os.path.join(folder, name))
        os.makedirs(os.path.dirname(STAMP), exist_ok=True)
        with open(STAMP, "w") as f:
            f.write(digest)
    except OSError:
        pass
