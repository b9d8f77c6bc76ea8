"""`dcsim run --trace`: the Chrome/Perfetto trace is well formed, conserves what the run
recorded (busy time per replica, bytes over the fabric, every request's phases), shows cold
starts, failures and swaps, and stays within its window and caps."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import yaml

from sim.cli import main
from sim.core.metrics import COMPLETED, FAILED, IN_FLIGHT, REJECTED, SHED
from sim.results.trace import build_trace, parse_window
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from tests.conftest import BASE, ROOT
from tests.test_model_swap import only, swapping

RAIL = os.path.join(ROOT, "topologies", "rail-4x8-h100.yaml")
T_FAIL, REPAIR = 5.0, 3.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """8 replicas on the rail fabric: weights from storage, prompts and replies over the
    fabric, a device failing at 5 s and repaired 3 s later (a cold start)."""
    data = copy.deepcopy(BASE)
    data["fleet"][0].update(count=8)
    data["fleet"][0]["serve"].update(weights="storage", provision="2s")
    data.update(duration="15s", topology=RAIL, ingress={"node": "storage0"},
                failures={"events": [{"at": f"{T_FAIL}s", "fail": "device", "target": "s0.gpu1",
                                      "repair_after": f"{REPAIR}s"}]})
    path = tmp_path_factory.mktemp("trace") / "scenario.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    res = simulate(load_scenario(str(path)), trace=True)
    return res, build_trace(res)


def ns(us: float) -> int:
    """A trace time back to whole nanoseconds, as Perfetto reads it."""
    return int(round(us * 1000))


def events(doc, ph=None, cat=None, name=None):
    return [e for e in doc["traceEvents"] if (ph is None or e["ph"] == ph) and (cat is None or e.get("cat") == cat)
            and (name is None or e["name"] == name)]


def thread_names(doc) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in events(doc, "M", name="thread_name")}


def test_the_trace_is_valid_trace_event_json(run):
    res, doc = run
    doc = json.loads(json.dumps(doc, allow_nan=False))          # plain JSON, no NaN
    assert set(doc) == {"traceEvents", "displayTimeUnit", "metadata"} and doc["displayTimeUnit"] == "ms"
    for e in doc["traceEvents"]:
        assert {"ph", "pid", "tid", "name"} <= set(e), e
        if e["ph"] != "M":
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0, e
        if e["ph"] == "X":
            assert e["dur"] >= 0, e
        if e["ph"] in "be":
            assert e["cat"] and e["id2"]["local"], e
    # async slices open and close in pairs, properly nested per id
    stacks: dict = {}
    for e in sorted((e for e in doc["traceEvents"] if e["ph"] in "be"), key=lambda e: e["ts"]):
        key = (e["pid"], e["cat"], e["id2"]["local"])
        if e["ph"] == "b":
            stacks.setdefault(key, []).append(e["name"])
        else:
            assert stacks[key].pop() == e["name"]
    assert not any(stacks.values())
    # complete slices on a thread nest or follow one another, never overlap partly
    by_thread: dict = {}
    for e in events(doc, "X"):
        by_thread.setdefault(e["tid"], []).append((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])))
    for spans in by_thread.values():
        open_ends: list = []
        for a, b in sorted(spans, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1] <= a:
                open_ends.pop()
            assert not open_ends or b <= open_ends[-1]
            open_ends.append(b)
    meta = doc["metadata"]
    assert meta["events"] == len(doc["traceEvents"]) and meta["note"] == ""
    names = {e["args"]["name"] for e in events(doc, "M", name="process_name")}
    assert {"requests: w", "fleet operations", "network: from storage0"} <= names


def test_batch_slices_do_not_overlap_and_add_up_to_busy_time(run):
    res, doc = run
    names = thread_names(doc)
    log = res.log.columns()
    for info in res.replicas:
        tid = next(t for t, n in names.items() if n.startswith(f"replica {info.index} on "))
        mine = sorted((e for e in events(doc, "X", "batch") if e["tid"] == tid), key=lambda e: e["ts"])
        assert len(mine) == (log["replica"] == info.index).sum() > 0
        for a, b in zip(mine, mine[1:], strict=False):
            assert ns(a["ts"]) + ns(a["dur"]) <= ns(b["ts"])
        busy = log["end"][log["replica"] == info.index] - log["start"][log["replica"] == info.index]
        assert sum(e["dur"] for e in mine) == pytest.approx(busy.sum() * 1e6, abs=1e-3 * len(mine))
        assert sum(e["dur"] for e in mine) == pytest.approx(info.busy_time * 1e6, abs=1e-3 * len(mine))
        assert sum(e["args"]["iterations"] for e in mine) == log["iterations"][log["replica"] == info.index].sum()


def test_every_request_appears_with_its_phase_times(run):
    res, doc = run
    t = res.table
    outer = {int(e["id2"]["local"]): e for e in events(doc, "b", "request", "request")}
    lived = np.isin(t.state, [COMPLETED, IN_FLIGHT, FAILED])      # the others were turned away at once
    assert set(outer) == set(np.flatnonzero(lived).tolist()) and (t.state == COMPLETED).sum() > 100
    turned_away = {e["args"]["id"] for e in events(doc, "i", "request")}
    assert turned_away == set(np.flatnonzero(np.isin(t.state, [REJECTED, SHED, FAILED])).tolist())
    # by hand: a request that waited; its phases in microseconds
    r = int(np.flatnonzero((t.state == COMPLETED) & (t.admitted > t.arrival + 1e-3))[0])
    mine = [e for e in events(doc, cat="request") if e.get("id2", {}).get("local") == str(r)]
    times = {(e["ph"], e["name"]): e["ts"] for e in mine}
    assert times[("b", "request")] == times[("b", "waiting")] == pytest.approx(t.arrival[r] * 1e6, abs=1e-3)
    assert times[("e", "waiting")] == times[("b", "prefill")] == pytest.approx(t.admitted[r] * 1e6, abs=1e-3)
    assert times[("e", "prefill")] == times[("b", "decode")] == pytest.approx(t.first_token[r] * 1e6, abs=1e-3)
    assert times[("e", "decode")] == times[("e", "request")] == pytest.approx(t.finished[r] * 1e6, abs=1e-3)
    args = outer[r]["args"]
    assert (args["prompt_tokens"], args["output_tokens"], args["replica"], args["state"]) == (
        t.prompt[r], t.output[r], t.replica[r], "completed")


def test_flow_bytes_add_up_to_what_the_fabric_delivered(run):
    res, doc = run
    flows = events(doc, "b", "flow")
    delivered = [e for e in flows if "state" not in e["args"]]
    assert len(delivered) == res.fabric.flows_done
    assert sum(e["args"]["bytes"] for e in delivered) == pytest.approx(res.fabric.bytes_delivered, rel=1e-12)
    assert {e["name"] for e in flows} == {"weights", "request", "reply"}
    weights = [e for e in flows if e["name"] == "weights"]
    # 8 replicas at the start and the repaired one again
    assert len(weights) == 9 and all(e["args"]["src"] == "storage0" for e in weights)


def test_a_failure_and_the_cold_start_after_it_appear(run):
    res, doc = run
    fails = events(doc, "i", "failure")
    assert [(e["name"], e["ts"], e["s"]) for e in fails] == [
        ("device s0.gpu1 fails", T_FAIL * 1e6, "g"), ("device s0.gpu1 repaired", (T_FAIL + REPAIR) * 1e6, "g")]
    assert fails[0]["args"]["replicas_down"] == 1
    assert fails[0]["args"]["requests_lost"] == len(res.failures.log[0]["lost"])
    tid = next(t for t, n in thread_names(doc).items() if n == "replica 1 state")
    states = [(e["name"], e["ts"]) for e in events(doc, "X", "state") if e["tid"] == tid]
    assert [s for s, _ in states] == ["live", "failed", "starting", "live"]
    start = res.lifecycle.starts[0]
    assert start.reason == "repair"
    assert states[2][1] == pytest.approx(start.requested * 1e6, abs=1e-3)
    phases = {e["name"]: e for e in events(doc, "X", "cold start") if e["tid"] == tid}
    assert phases["provisioning"]["dur"] == pytest.approx(2e6, abs=1e-3)
    w = phases["loading weights"]
    assert w["ts"] + w["dur"] == pytest.approx(start.live * 1e6, abs=1e-3)
    # the first weights load of every replica nests in its first live slice
    assert len([e for e in events(doc, "X", "cold start", "loading weights")]) == 9


def test_a_window_keeps_only_what_lies_inside_it(run):
    res, _ = run
    doc = build_trace(res, window=(4.0, 6.0))
    lo, hi = 4e6, 6e6
    for e in doc["traceEvents"]:
        if e["ph"] == "M":
            continue
        assert lo - 1e-6 <= e["ts"] <= hi + 1e-6, e
        if e["ph"] == "X":
            assert e["ts"] + e["dur"] <= hi + 1e-6, e
    t = res.table
    end = np.where(np.isnan(t.finished), res.end_time, t.finished)
    overlapping = ((t.arrival < 6.0) & (end > 4.0) & (t.state == COMPLETED)).sum()
    assert len(events(doc, "b", "request", "request")) == overlapping
    assert doc["metadata"]["window_s"] == [4.0, 6.0]
    assert [e["name"] for e in events(doc, "i", "failure")] == ["device s0.gpu1 fails"]


def test_request_and_event_caps(run):
    res, _ = run
    doc = build_trace(res, max_requests=10)
    ids = {e["id2"]["local"] for e in events(doc, cat="request") if "id2" in e}
    ids |= {str(e["args"]["id"]) for e in events(doc, "i", "request")}
    assert len(ids) == 10
    assert doc["metadata"]["requests"]["kept"] == 10
    assert "--trace-requests 10" in doc["metadata"]["note"]
    assert not events(build_trace(res, max_requests=0), cat="request")
    small = build_trace(res, max_events=500)
    meta = small["metadata"]
    assert len(small["traceEvents"]) <= 500
    assert meta["requests"]["every"] > 1 and meta["batch_stretches"]["every"] > 1 and "over 500 events" in meta["note"]


def test_model_swaps_and_replica_counts_appear(write_scenario):
    res = simulate(swapping(write_scenario, a={"rate": "4/s"}, b={"arrival": only(100.0, 150.0, 150.0)},
                            duration="150s"), trace=True)
    doc = build_trace(res)
    swaps = events(doc, "i", "swap")
    assert swaps and swaps[0]["name"] == "swap a -> b"
    assert swaps[0]["ts"] == pytest.approx(res.autoscalers[0].swap.swaps[0].claimed * 1e6, abs=1e-3)
    counters = events(doc, "C", name="replicas")
    assert {e["pid"] for e in counters} == {e["pid"] for e in events(doc, "M", name="process_name")
                                            if e["args"]["name"].startswith("pool ")}


def test_the_cli_writes_trace_json(write_scenario, tmp_path, capsys):
    path = write_scenario({"duration": "5s"})
    out = tmp_path / "out"
    assert main(["run", path, "--trace", "--out", str(out)]) == 0
    doc = json.loads((out / "trace.json").read_text())
    assert doc["traceEvents"] and (out / "summary.json").exists()
    assert "trace.json" in capsys.readouterr().out
    assert main(["run", path, "--trace-requests", "3", "--json", "--out", str(tmp_path / "o2")]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)                              # stdout stays the summary's JSON
    assert "trace:" in captured.err
    assert json.loads((tmp_path / "o2" / "trace.json").read_text())["metadata"]["requests"]["kept"] == 3


@pytest.mark.parametrize("flag, value, message", [
    ("--trace-window", "10s-40s", "expected START:END"),
    ("--trace-window", "10x:40s", "unknown time unit 'x'"),
    ("--trace-window", "40s:10s", "must come after the start"),
    ("--trace-requests", "-1", "0 or more"),
])
def test_bad_trace_options_are_clear_errors(write_scenario, tmp_path, capsys, flag, value, message):
    path = write_scenario({"duration": "5s"})
    assert main(["run", path, flag, value, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag}: ") and message in err
    assert not (tmp_path / "o").exists()                    # checked before the run


def test_window_parsing():
    assert parse_window("10s:40s") == (10.0, 40.0)
    assert parse_window("1min:2min") == (60.0, 120.0)
    assert parse_window(":30s") == (0.0, 30.0) and parse_window("10s:") == (10.0, None)
    with pytest.raises(ScenarioError):
        parse_window("10s")
