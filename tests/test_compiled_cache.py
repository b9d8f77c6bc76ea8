"""Numba's on-disk cache is dropped when any compiled source changes, not only the file a
cached function lives in (a function inlines helpers and constants from other modules)."""
import os
import shutil

from sim import compiled_cache


def test_every_module_with_compiled_code_is_watched():
    here = compiled_cache.HERE
    with_njit = set()
    for folder, _, files in os.walk(here):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py"):
                continue
            with open(path) as fh:
                if "@njit" in fh.read():
                    with_njit.add(os.path.relpath(path, here))
    watched = set(compiled_cache.compiled_sources())
    assert with_njit and with_njit <= watched
    # the scheduler inlines these: a change to any of them must reach its cached compilation
    for name in ("serving/scheduler.py", "serving/admission.py", "serving/engine_state.py",
                 "timing/kernels.py", "timing/table_lookup.py"):
        assert name.replace("/", os.sep) in watched


def test_a_change_to_an_inlined_helper_drops_the_cache(tmp_path, monkeypatch):
    tree = tmp_path / "sim"
    shutil.copytree(compiled_cache.HERE, tree, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(compiled_cache, "HERE", str(tree))
    monkeypatch.setattr(compiled_cache, "STAMP", str(tree / "__pycache__" / "compiled-sources.sha256"))
    compiled_cache.refresh()
    cached = tree / "serving" / "__pycache__" / "scheduler.engine_run-1.py311.nbi"
    cached.parent.mkdir(exist_ok=True)
    cached.write_text("stale")
    compiled_cache.refresh()                 # nothing changed: the cache stays
    assert cached.exists()
    helper = tree / "serving" / "admission.py"
    helper.write_text(helper.read_text() + "\n# changed\n")
    compiled_cache.refresh()                 # a helper the scheduler inlines changed
    assert not cached.exists()
