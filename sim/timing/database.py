"""Measured kernel latencies: the tables of the `aiconfigurator-core` package.

NVIDIA's aiconfigurator-core (Apache-2.0) ships latencies measured on real devices under
each serving framework and version, as parquet files laid out as

    aiconfigurator_core/systems/data/<system>/<family>/<framework>/<version>/<table>.parquet

(system: a100_sxm, h100_sxm, h200_sxm, b200_sxm, l40s, ...; family: gemm, attention, comm,
moe, quantize; framework: vllm, sglang, trtllm, or nccl under comm). Latencies are in
milliseconds. This module only finds and reads those files; what they mean for an
iteration is `sim.timing.measured`'s business.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib.metadata
import importlib.resources
import os
from functools import cache, lru_cache

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from packaging.version import InvalidVersion, Version

PACKAGE = "aiconfigurator-core"
FRAMEWORKS = ("vllm", "sglang", "trtllm")


def package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def data_root() -> str | None:
    """The package's data folder, or None where the package is not installed."""
    try:
        root = importlib.resources.files("aiconfigurator_core") / "systems" / "data"
    except ModuleNotFoundError:
        return None
    path = str(root)
    return path if os.path.isdir(path) else None


def _key(version: str):
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


@cache
def versions(system: str, family: str, framework: str) -> tuple[str, ...]:
    """Versions with measurements of one family, oldest first."""
    root = data_root()
    if root is None:
        return ()
    path = os.path.join(root, system, family, framework)
    if not os.path.isdir(path):
        return ()
    return tuple(sorted((v for v in os.listdir(path) if os.path.isdir(os.path.join(path, v))), key=_key))


def closest_version(available: tuple[str, ...], wanted: str | None) -> str | None:
    """The newest version not newer than `wanted` (the kernels that version ran), else the
    oldest one there is; with no wish, the newest."""
    if not available:
        return None
    if wanted is None:
        return available[-1]
    older = [v for v in available if _key(v) <= _key(wanted)]
    return older[-1] if older else available[0]


@cache
def read(system: str, family: str, framework: str, version: str, table: str) -> pd.DataFrame | None:
    """One measured table, or None where that file is not in the package. Tables are kept
    until `release`, which a scenario calls once its pools' timing tables are built."""
    root = data_root()
    if root is None:
        return None
    path = os.path.join(root, system, family, framework, version, table + ".parquet")
    if not os.path.exists(path):
        return None
    # Arrow's own allocator keeps what it freed; reading through the C allocator lets the
    # simulation reuse that memory once the tables are released.
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        return pq.read_table(path, use_threads=False).to_pandas()
    finally:
        pa.set_memory_pool(previous)


def release() -> None:
    """Forget the tables read so far (the grids built from them stay cached) and hand the
    freed memory back to the system where the C library allows (glibc's malloc_trim)."""
    read.cache_clear()
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_libc = _load_libc()


def newest_with(system: str, family: str, framework: str, table: str,
                wanted: str | None) -> tuple[str, pd.DataFrame] | None:
    """The closest version (as `closest_version`) that has `table`, and the table."""
    root = data_root()
    avail = tuple(v for v in versions(system, family, framework)
                  if os.path.exists(os.path.join(root, system, family, framework, v, table + ".parquet")))
    version = closest_version(avail, wanted)
    if version is None:
        return None
    return version, read(system, family, framework, version, table)
