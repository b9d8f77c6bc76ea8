"""Real runs' files against sim.results.columns, the declaration the outputs reference is
generated from: a key or column a run writes and the declaration lacks (or the reverse)
fails here, so docs/reference/outputs.md cannot drift from what dcsim writes."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from sim.results import columns
from sim.results.columns import children
from sim.results.report import write_results
from sim.results.summary import summarize
from sim.results.trace import build_trace
from sim.scenario import load_scenario
from sim.simulation import simulate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# short runs that between them fill every optional section: sessions, a service and an
# embedding model (rag), failures and head nodes, autoscaling, media requests, prefix caching,
# model swapping, KV transfers over the fabric
RUNS = {
    "quickstart": ["duration=10s", "warmup=2s"],
    "rag": ["duration=10s", "warmup=0s"],
    "failure-rack": ["duration=20s", "warmup=0s"],
    "autoscale-diurnal": ["duration=20s", "warmup=0s"],
    "multimodal": ["duration=10s", "warmup=0s"],
    "prefix-cache": ["duration=10s", "warmup=0s"],
    "model-swap": ["duration=20s", "warmup=0s"],
    "disagg-llama70b": ["duration=5s", "warmup=0s"],
}

# the pyarrow types each declared type stands for
TYPES = {"int64": ("int64",), "int32": ("int32",), "float64": ("double",), "bool": ("bool",),
         "string": ("string", "large_string"), "category": ("dictionary",)}


def mismatches(value, keys, parent: str = "") -> list[str]:
    """Where `value` (the JSON at `parent`) and the declared keys below `parent` disagree: a
    key written but not declared, or declared as always there and missing."""
    declared = children(keys, parent)
    if not declared or value is None:
        return []
    prefix = parent + "." if parent else ""
    if isinstance(value, list):
        return [p for item in value for p in mismatches(item, keys, parent)]
    if not isinstance(value, dict):
        return [f"{parent}: declared with keys, written as {type(value).__name__}"]
    names = {k.name[len(prefix):]: k for k in declared}
    out = [f"{prefix}{n}: written, not declared" for n in value if n not in names]
    out += [f"{prefix}{n}: declared as always there, missing"
            for n, k in names.items() if not k.when and n not in value]
    for n in value:
        if n in names:
            below = prefix + n + ("[]" if isinstance(value[n], list) else "")
            out += mismatches(value[n], keys, below)
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Each run's results folder, written as `dcsim run --trace` writes it."""
    out = {}
    for name, overrides in RUNS.items():
        scenario = load_scenario(os.path.join(ROOT, "scenarios", f"{name}.yaml"), overrides)
        result = simulate(scenario, trace=True)
        folder = str(tmp_path_factory.mktemp(name))

        def trace(path, result=result):
            with open(os.path.join(path, "trace.json"), "w") as fh:
                json.dump(build_trace(result), fh)
        write_results(result, summarize(result), folder, also=trace)
        out[name] = folder
    return out


def read_json(folder: str, name: str):
    with open(os.path.join(folder, name)) as fh:
        return json.load(fh)


def test_every_declared_file_is_one_a_run_writes(folders):
    written = set().union(*(os.listdir(f) for f in folders.values()))
    declared = {f.name for f in columns.FILES}
    assert written == declared


@pytest.mark.parametrize("name", sorted(columns.JSON_FILES))
def test_json_keys_are_the_declared_ones(folders, name):
    keys = columns.JSON_FILES[name]
    problems = {run: mismatches(read_json(folder, name), keys) for run, folder in folders.items()}
    assert not any(problems.values()), {run: p for run, p in problems.items() if p}


def test_every_optional_summary_section_was_checked(folders):
    """Each declared section that has keys of its own was written by some run, so the runs
    above really check it (a section no run writes would be checked by nothing)."""
    summaries = [read_json(f, "summary.json") for f in folders.values()]

    def written(path: str) -> bool:
        for s in summaries:
            node = [s]
            for step in path.replace("[]", "").split("."):
                node = [x for n in node for x in (n if isinstance(n, list) else [n])
                        if isinstance(x, dict) and x.get(step) not in (None, [], {})]
                node = [x[step] for x in node]
            if node:
                return True
        return False

    parents = {k.name.rsplit(".", 1)[0] for k in columns.SUMMARY if "." in k.name}
    unexercised = sorted(p for p in parents if not written(p) and p != "modalities.video")
    assert not unexercised     # no shipped scenario asks for video cheaply; its keys follow the image kind's code


@pytest.mark.parametrize("name", sorted(columns.TABLES))
def test_parquet_columns_are_the_declared_ones(folders, name):
    declared = {c.name: c for c in columns.TABLES[name]}
    seen = set()
    for run, folder in folders.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            continue
        schema = pq.read_schema(path)
        rows = pq.read_metadata(path).num_rows
        seen.update(schema.names)
        assert set(schema.names) <= set(declared), (run, set(schema.names) - set(declared))
        missing = [c for c, d in declared.items() if not d.when and c not in schema.names]
        assert not missing, (run, missing)
        for field in schema if rows else ():      # an empty table's columns have no type to check
            kind = str(field.type).split("<")[0]
            assert kind in TYPES[declared[field.name].type], (run, field.name, str(field.type))
    assert seen == set(declared), set(declared) - seen
