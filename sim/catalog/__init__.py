"""The shipped catalog of devices and models, read once and cached.

`devices.yaml` and `models.yaml` beside this file hold datasheet and model-card numbers,
each with its public source; `partitions.yaml` the hardware partitions (MIG profiles) of
the devices that have them. Scenarios name entries by key or define their own inline.
`sim.catalog.digest` fingerprints these files (and accuracy.json) for every output's record
of what produced it (sim.results.provenance).
"""
from __future__ import annotations

import functools
import os

from ..spec import source

HERE = os.path.dirname(__file__)
DEVICES_FILE = os.path.join(HERE, "devices.yaml")
MODELS_FILE = os.path.join(HERE, "models.yaml")
PARTITIONS_FILE = os.path.join(HERE, "partitions.yaml")


@functools.cache
def _devices_source() -> source.Source:
    return source.load(DEVICES_FILE)


@functools.cache
def _models_source() -> source.Source:
    return source.load(MODELS_FILE)


@functools.cache
def _partitions_source() -> source.Source:
    return source.load(PARTITIONS_FILE)


def device_entries() -> dict[str, dict]:
    return _devices_source().data["devices"]


def model_entries() -> dict[str, dict]:
    return _models_source().data["models"]


def partition_entries() -> dict[str, dict]:
    """Device key -> its partition scheme: slices, SMs, and `profiles` by name."""
    return _partitions_source().data["partitions"]


def device_loc(key: str, field: str | None = None):
    path = ("devices", key) + ((field,) if field else ())
    return _devices_source().loc_of(path)


def model_loc(key: str, field: str | None = None):
    path = ("models", key) + ((field,) if field else ())
    return _models_source().loc_of(path)


def partition_loc(key: str, *path):
    return _partitions_source().loc_of(("partitions", key) + path)
