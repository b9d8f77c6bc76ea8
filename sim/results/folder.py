"""Results folders that never lie: written whole beside their place, then put in place.

A run writes into a temporary folder next to its target, adds `manifest.json` last (the
dcsim version, the catalog's and the resolved scenario's hashes, every file's size), and only
then swaps it in for the target; an interrupted or failed run leaves the target as it was
and removes its temporary folder. Readers (`dcsim report`, `sim.results.analysis`, sweeps)
accept a folder only when its manifest is there and every file has the size it lists. Files
of an earlier run never survive into a new run's folder: the whole folder is replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager

MANIFEST = "manifest.json"
# what marks a folder as one dcsim wrote (and so may replace): a run's, a sweep's, a
# comparison's or a plan's
MARKERS = (MANIFEST, "summary.json", "sweep.json", "compare.json", "plan.json")


class ResultsError(ValueError):
    """A results folder that is missing, incomplete or not dcsim's."""


def replaceable(path: str) -> bool:
    """Whether a run may put its results at `path`: nothing there, an empty folder, or a
    folder dcsim wrote."""
    if not os.path.lexists(path):
        return True
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    entries = os.listdir(path)
    return not entries or any(m in entries for m in MARKERS)


@contextmanager
def staged(out: str):
    """Yield a temporary folder beside `out` to write the results into; when the block ends
    normally, write the manifest and swap the folder in for `out`. If the block raises (or
    is interrupted) the temporary folder is removed and `out` is left as it was."""
    out = os.path.abspath(out)
    parent, name = os.path.split(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.writing-", dir=parent)
    try:
        yield tmp
        write_manifest(tmp)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(tmp: str, out: str) -> None:
    """Put `tmp` at `out`; an earlier folder there is moved aside first and then removed."""
    parent, name = os.path.split(out)
    old = None
    if os.path.lexists(out):
        old = tempfile.mkdtemp(prefix=f".{name}.replaced-", dir=parent)
        os.rmdir(old)
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_manifest(folder: str) -> dict:
    from .. import __version__
    from ..catalog.digest import catalog_sha256
    files = {}
    for root, _, names in os.walk(folder):
        for n in names:
            full = os.path.join(root, n)
            files[os.path.relpath(full, folder)] = os.path.getsize(full)
    files.pop(MANIFEST, None)
    scenario = os.path.join(folder, "scenario.yaml")
    digest = None
    if os.path.isfile(scenario):
        with open(scenario, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    # the catalog beside the version: the same scenario on another catalog is another model
    manifest = {"complete": True, "dcsim_version": __version__, "catalog_sha256": catalog_sha256(),
                "scenario_sha256": digest, "files": dict(sorted(files.items()))}
    with open(os.path.join(folder, MANIFEST), "w") as fh:
        json.dump(manifest, fh, indent=2)
    return manifest


def verify(folder: str) -> dict:
    """The manifest of a complete results folder; ResultsError otherwise."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise ResultsError(f"{folder}: incomplete: no {MANIFEST} (a run writes it last; this folder's run did not "
                           f"finish, or an older dcsim wrote it): run it again")
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{folder}: cannot read {MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        raise ResultsError(f"{folder}: {MANIFEST} does not mark the folder complete")
    for name, size in (manifest.get("files") or {}).items():
        full = os.path.join(folder, name)
        if not os.path.isfile(full) or os.path.getsize(full) != size:
            raise ResultsError(f"{folder}: {name} is not the file its run wrote (missing or changed size)")
    return manifest
