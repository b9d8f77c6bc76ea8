"""The catalog's fingerprint: one SHA-256 over the files that set its figures.

Every output records it (sim.results.provenance), so two results can be told apart when
they came from different device, model or engine figures, or different accuracy data for
their intervals, even at the same dcsim version. Only data files count: a code change
is the version's business, and hashing .py files would make the fingerprint change with
every refactoring that leaves figures as they were.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
# the held-out errors that size every run's intervals (sim.catalog.accuracy)
ACCURACY = "accuracy.json"


def data_files(folder: str = HERE) -> list[str]:
    """The file names that set figures, sorted so that the order never depends on the file
    system: every YAML file of the catalog (devices, models, engines, partitions, and any
    added later) and the accuracy data."""
    names = {os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.yaml"))}
    return sorted(names | {ACCURACY})


def sha256_of(folder: str = HERE) -> str:
    """SHA-256 over each data file's name, byte length and bytes, in `data_files` order.
    The name and length frame each file, so bytes moved from one file to the next change
    the digest too."""
    h = hashlib.sha256()
    for name in data_files(folder):
        with open(os.path.join(folder, name), "rb") as fh:
            data = fh.read()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def catalog_sha256() -> str:
    """The shipped catalog's digest, computed once per process, as the devices, models and
    engines are read once (sim.catalog): a sweep's worker runs many points and writes it
    into each."""
    return sha256_of(HERE)
