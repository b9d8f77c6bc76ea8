"""Property-based fuzzing of the shipped scenarios: mutate them as a careless hand would
(delete keys, change types, scale numbers to 0 / negative / tiny / huge / NaN, swap units,
misspell names, inject nulls, lists and maps) and hold the tool to its promises:

- `dcsim validate` answers every mutant with a verdict, never a traceback;
- a mutant it accepts runs (shortened) without raising;
- every request of that run is accounted for, and its times are finite and non-negative.

`make test` runs a short profile; `make fuzz` runs DCSIM_FUZZ_EXAMPLES (10,000) examples, then
a deterministic sweep (DCSIM_FUZZ_SWEEP=1) that applies each number mutation alone to every
number of every scenario.
"""
from __future__ import annotations

import copy
import glob
import math
import os
import resource

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.core.metrics import COMPLETED
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec import source
from sim.spec.errors import ScenarioError
from tests.conftest import ROOT

EXAMPLES = int(os.environ.get("DCSIM_FUZZ_EXAMPLES", "40"))
# shipped scenarios small enough to run in a fuzz example once shortened
SCENARIOS = sorted(p for p in glob.glob(os.path.join(ROOT, "scenarios", "*.yaml"))
                   if os.path.basename(p) not in ("chat-service-2023.yaml", "search-scale.yaml",
                                                  "fabric-512-chat.yaml"))
BASES = {os.path.basename(p): source.load(p).data for p in SCENARIOS}
SMALL_RUN = {"devices": 64, "requests": 3000}     # mutants bigger than this are validated, not run


def _parent(data, path):
    for key in path[:-1]:
        data = data[key]
    return data


def _swap_unit(text: str) -> str:
    for a, b in (("s", "GB"), ("ms", "/s"), ("/s", "s"), ("GB", "ms"), ("h", "W"), ("W", "s")):
        if text.endswith(a):
            return text[: -len(a)] + b
    return text + "furlongs"


def _misspell(word: str, k: int) -> str:
    if len(word) < 2:
        return word + "x"
    k %= len(word)
    return word[:k] + word[k + 1:]


NUMBERS = [0, -1, -1e9, 1e-12, 1e12, float("nan"), float("inf"), 2 ** 63, 0.5, True]
INJECT = [None, [], {}, [1, "a"], {"x": 1}, "", "nonsense", 7]


def _pick(draw, options: list):
    """A copy of one of `options`, by index (values such as NaN defeat hypothesis's own
    sampling; a copy, so that no mutation of one example reaches the options of the next)."""
    return copy.deepcopy(options[draw(st.integers(0, len(options) - 1))])


HOWS = ["delete", "type", "number", "unit", "misspell", "inject", "duplicate"]


@st.composite
def mutants(draw):
    name = _pick(draw, sorted(BASES))
    data = copy.deepcopy(BASES[name])
    for _ in range(draw(st.integers(1, 3))):
        spots = [(p, v) for p, v in source.walk(data) if p]
        if not spots:
            break
        path, value = _pick(draw, spots)
        parent, key = _parent(data, path), path[-1]
        how = _pick(draw, HOWS)
        if how == "delete":
            del parent[key]
        elif how == "type":
            parent[key] = _pick(draw, [str(value), [value], {"value": value}, None])
        elif how == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = _pick(draw, NUMBERS)
            parent[key] = factor if isinstance(factor, bool) or factor in (0, -1) else value * factor
        elif how == "unit" and isinstance(value, str):
            parent[key] = _swap_unit(value)
        elif how == "misspell" and isinstance(parent, dict) and isinstance(key, str):
            parent[_misspell(key, draw(st.integers(0, 50)))] = parent.pop(key)
        elif how == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(value))
        else:
            parent[key] = _pick(draw, INJECT)
    return name, data


def _write(tmp, data) -> str | None:
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:      # a structure YAML cannot hold is not an input a user can write
        return None
    path = os.path.join(tmp, "mutant.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def _small(sc) -> bool:
    spec = sc.spec
    devices = sum(p.count for p in spec.fleet)
    requests = sum((s.rate or 0.0) * min(spec.duration, 5.0) for s in spec.workload)
    closed = sum((s.requests or 0) for s in spec.workload)
    return devices <= SMALL_RUN["devices"] and requests + closed <= SMALL_RUN["requests"]


def _answer(path: str, name: str) -> str:
    """Validate the mutant at `path`; run it shortened if accepted and small; check the run's
    promises. Returns what happened; raises on a broken promise."""
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return "refused with a message"
    try:
        short = load_scenario(path, ["duration=5s", "warmup=1s", "drain=30s"])
    except ScenarioError:       # e.g. a warm-up the shortened window no longer fits: a verdict too
        return "accepted, refused once shortened"
    if not _small(short):
        return "accepted, too large to run in a fuzz example"
    res = simulate(short)
    t = res.table
    assert t.n == len(t.state) and np.isin(t.state, [0, 1, 2, 3, 4]).all()
    done = t.state == COMPLETED
    for col in (t.arrival, t.finished):
        v = col[done]
        assert np.isfinite(v).all() and (v >= 0).all(), name
    assert (t.finished[done] >= t.arrival[done] - 1e-9).all(), name
    assert math.isfinite(res.end_time)
    return "accepted and run"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(mutants())
def test_mutated_scenarios_are_answered_and_accepted_ones_run(tmp_path, mutant):
    name, data = mutant
    path = _write(str(tmp_path), data)
    if path is not None:
        event(_answer(path, name))


# ---- the deterministic sweep: every number of every scenario, scaled alone ------------------

SWEEP = os.environ.get("DCSIM_FUZZ_SWEEP") == "1"
# an address-space cap per sweep worker: a mutant that allocates without bound raises
# MemoryError, recorded as a failure, instead of filling the machine (a killed process
# records nothing)
SWEEP_MEMORY = int(float(os.environ.get("DCSIM_FUZZ_MEMORY_GIB", "6")) * 2 ** 30)


@pytest.fixture
def memory_cap():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (min(SWEEP_MEMORY, hard) if hard > 0 else SWEEP_MEMORY, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.skipif(not SWEEP, reason="make fuzz runs it (DCSIM_FUZZ_SWEEP=1)")
@pytest.mark.parametrize("name", sorted(BASES))
def test_every_number_scaled_alone_is_answered_and_accepted_ones_run(name, tmp_path, memory_cap):
    """Each of the random search's number mutations, applied one at a time to every number of
    the scenario (its topology and includes inline): what a random search reaches only by luck."""
    base = BASES[name]
    spots = [(p, v) for p, v in source.walk(base) if p and isinstance(v, (int, float)) and not isinstance(v, bool)]
    failures = []
    for path, value in spots:
        for factor in NUMBERS:
            data = copy.deepcopy(base)
            _parent(data, path)[path[-1]] = factor if isinstance(factor, bool) or factor in (0, -1) else value * factor
            mutant = _write(str(tmp_path), data)
            if mutant is None:
                continue
            try:
                _answer(mutant, name)
            except Exception as exc:    # MemoryError and broken promises (AssertionError) included
                failures.append(f"{'.'.join(map(str, path))} = {_parent(data, path)[path[-1]]!r}: "
                                f"{type(exc).__name__}: {str(exc)[:300]}")
    assert not failures, f"{len(failures)} of {len(spots) * len(NUMBERS)} mutants of {name}:\n" + "\n".join(failures)
