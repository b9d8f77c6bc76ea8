"""Sessions: call graphs drawn under a seed, their timing at run time, tool services as
queues, and per-session latency and cost."""
from __future__ import annotations

import copy
import glob
import math
import os

import numpy as np
import pytest
import yaml

from sim.core.metrics import COMPLETED
from sim.demand.sessions import CALL, TOOL, Session, session_graph
from sim.results.report import requests_frame
from sim.results.summary import summarize
from sim.scenario import load_scenario
from sim.simulation import simulate
from sim.spec.errors import ScenarioError
from sim.tools import oracles
from tests.conftest import BASE, ROOT

AGENT = {
    "context": {"dist": "lognormal", "mean": 600, "cv": 0.5},
    "rounds": {"dist": "uniform", "min": 2, "max": 6},
    "output_tokens": {"dist": "lognormal", "mean": 150, "cv": 0.5},
    "tools": [{"name": "search", "calls": {"dist": "uniform", "min": 1, "max": 3},
               "delay": {"dist": "lognormal", "mean": "400ms", "cv": 1}, "result_tokens": 300}],
    "sub_agents": {"probability": 0.5, "count": {"dist": "uniform", "min": 1, "max": 3}, "depth": 2},
    "answer_tokens": 200,
    "budget": {"calls": 40},
}


def scenario(write_scenario, session: dict, rate="0.5/s", services=None, **changes):
    base = copy.deepcopy(BASE)
    base["workload"] = [{"name": "s", "rate": rate, "session": session}]
    if services:
        base["services"] = services
    return write_scenario(changes, base=base)


def graph_signature(g):
    return (g.kind, g.session, g.deps, g.prompt, g.output, g.duration, g.prefix, sorted(g.final))


def test_a_session_graph_is_reproducible_and_bounded():
    spec = Session.model_validate(AGENT)
    a = session_graph(spec, 300, np.random.default_rng(5))
    b = session_graph(spec, 300, np.random.default_rng(5))
    assert graph_signature(a) == graph_signature(b)
    assert graph_signature(a) != graph_signature(session_graph(spec, 300, np.random.default_rng(6)))
    calls = np.bincount([s for s, k in zip(a.session, a.kind, strict=True) if k == CALL], minlength=300)
    assert calls.max() <= 40 + 3           # the budget, then the answers of the agents still running
    assert len(a.final) == 300             # one answering call per session
    # a graph: every dependency comes before its node, and each session has one root
    assert all(d < i for i, ds in enumerate(a.deps) for d in ds)
    assert np.bincount([a.session[i] for i, ds in enumerate(a.deps) if not ds], minlength=300).tolist() == [1] * 300
    # sub-agents do happen, to depth 2 at most: more calls than rounds allow alone
    assert calls.max() > 6 + 1


def test_a_loop_reads_its_growing_context_and_waits_for_its_tools(write_scenario):
    """Hand case: context 500, 3 rounds of 200 output tokens, two 1 s searches of 300 tokens
    each per round: prompts 500, 1300, 2100, and each call is sent 1 s after the last ends."""
    session = {"context": 500, "rounds": 3, "output_tokens": 200,
               "tools": [{"name": "search", "calls": 2, "delay": "1s", "result_tokens": 300}]}
    res = simulate(load_scenario(scenario(write_scenario, session, rate="0.2/s")))
    t = res.table
    assert np.all(t.state == COMPLETED)
    for sid in np.unique(t.session):
        mine = np.flatnonzero(t.session == sid)
        assert t.prompt[mine].tolist() == [500, 1300, 2100]
        assert t.final[mine].tolist() == [False, False, True]
        assert np.allclose(t.arrival[mine[1:]], t.finished[mine[:-1]] + 1.0, atol=1e-9)


def test_sessions_finish_and_their_cost_is_the_sum_of_their_calls(write_scenario, tmp_path):
    path = scenario(write_scenario, AGENT, rate="0.3/s", duration="40s")
    res = simulate(load_scenario(path))
    s = summarize(res)
    stream = s["sessions"]["streams"][0]
    assert stream["started"] > 5 and stream["completed"] == stream["started"] and stream["failed"] == 0
    frame = requests_frame(res, s)
    t = res.table
    plan = res.sessions.plan
    ok = [sid for sid in range(len(plan.start)) if 2 <= plan.start[sid] < 40]
    per = frame[frame.session.isin(ok)].groupby("session")
    assert stream["usd_per_session"] == pytest.approx(per.usd.sum().mean(), rel=1e-12)
    assert stream["calls_per_session"] == pytest.approx(per.size().mean())
    assert stream["tokens_per_session"] == pytest.approx((per.prompt_tokens.sum() + per.output_tokens.sum()).mean())
    # a session's latency runs from its start to its answer
    answers = frame[frame.final & frame.session.isin(ok)].set_index("session").finished
    assert stream["latency_s"]["mean"] == pytest.approx(float(np.mean(answers.values - plan.start[answers.index])))
    # under the same seed, the same run
    again = simulate(load_scenario(path))
    assert np.array_equal(again.table.finished, t.finished, equal_nan=True)


def test_a_rejected_call_ends_its_session(write_scenario):
    """Calls whose context outgrows the model's window are rejected; their sessions fail,
    and what would have followed is never sent."""
    session = {"context": 100000, "rounds": 4, "output_tokens": 2000,
               "tools": [{"name": "read", "delay": "100ms", "result_tokens": 40000}]}
    res = simulate(load_scenario(scenario(write_scenario, session, rate="0.2/s")))
    s = summarize(res)["sessions"]["streams"][0]
    assert s["failed"] == s["started"] > 0 and s["completed"] == 0
    t = res.table
    for sid in np.unique(t.session):
        assert (t.session == sid).sum() == 2    # the first call, then the one that overflows


def test_a_tool_service_is_an_mmc_queue(write_scenario):
    """Sessions that start with a lookup at a 3-server service with exponential service
    times: the lookups' mean wait matches Erlang C."""
    lam, mean, servers = 40.0, 0.05, 3
    session = {"context": 50, "steps": [{"tool": {"service": "vdb", "result_tokens": 100}},
                                        {"call": {"output_tokens": 1}}]}
    services = [{"name": "vdb", "servers": servers, "service_time": {"dist": "exponential", "mean": "50ms"}}]
    waits = []
    for seed in range(4):
        res = simulate(load_scenario(scenario(write_scenario, session, rate=f"{lam}/s", services=services,
                                              duration="400s", seed=seed, **{"fleet.0.count": 4})))
        waits.append(np.mean(res.sessions.services["vdb"].waits))
    theory = oracles.erlang_c(servers, lam * mean) / (servers / mean - lam)
    se = np.std(waits, ddof=1) / math.sqrt(len(waits))
    assert abs(np.mean(waits) - theory) < 3 * se + 0.05 * theory, (np.mean(waits), theory)


def test_rag_pipeline_calls_two_models(write_scenario):
    """Retrieval-augmented generation: embed the question, search, then generate over the
    question and the retrieved passages, on another model."""
    base = copy.deepcopy(BASE)
    base["fleet"].append({"pool": "embed", "device": "nvidia-a100-80gb", "count": 1,
                          "serve": {"model": "bge-large-en-v1.5", "precision": "bf16", "tp": 1}})
    base["workload"] = [{"name": "rag", "model": "llama-3.1-8b", "rate": "2/s", "session": {
        "context": 60,
        "steps": [{"call": {"model": "bge-large-en-v1.5", "context": "read", "output_tokens": 1}},
                  {"tool": {"service": "vdb", "result_tokens": 3000}},
                  {"call": {"output_tokens": 300}}]}}]
    base["services"] = [{"name": "vdb", "servers": 4, "service_time": "20ms"}]
    res = simulate(load_scenario(write_scenario({}, base=base)))
    t = res.table
    frame = requests_frame(res)
    first, second = frame[~frame.final], frame[frame.final]
    assert set(first.pool) == {"embed"} and set(second.pool) == {"p"}
    assert (first.prompt_tokens == 60).all() and (second.prompt_tokens == 3060).all()
    assert np.all(t.state == COMPLETED)
    # retrieval is its own line: each step's latency, and the answer's first token split into
    # the steps before the answering call and the answering call's own wait and prefill
    (stream,) = summarize(res)["sessions"]["streams"]
    embed, search, answer, first_token = stream["steps"]
    assert [embed["what"], search["what"], answer["what"]] == \
        ["call bge-large-en-v1.5", "tool vdb", "call llama-3.1-8b"]
    assert search["latency_s"]["p50"] == pytest.approx(0.020, abs=1e-9)   # 4 servers at 2/s: no queue
    before = first_token["of_which_before_answer_s"]
    assert before["mean"] == pytest.approx(embed["latency_s"]["mean"] + search["latency_s"]["mean"], rel=1e-6)
    assert first_token["latency_s"]["p50"] > before["p50"]


def test_session_errors_name_the_field(write_scenario):
    with pytest.raises(ScenarioError, match="service 'vdb', which services: does not define"):
        load_scenario(scenario(write_scenario, {"context": 5, "rounds": 2, "output_tokens": 5,
                                                "tools": [{"service": "vdb"}]}))
    with pytest.raises(ScenarioError, match="a loop session needs rounds"):
        load_scenario(scenario(write_scenario, {"context": 5, "output_tokens": 5}))
    with pytest.raises(ScenarioError, match="either delay: .* or service:"):
        load_scenario(scenario(write_scenario, {"context": 5, "rounds": 2, "output_tokens": 5, "tools": [{}]}))
    bad = copy.deepcopy(BASE)
    bad["workload"][0]["session"] = {"context": 5, "rounds": 1, "output_tokens": 5}
    with pytest.raises(ScenarioError, match="session stream draws its calls from session:; remove prompt_tokens"):
        load_scenario(write_scenario({}, base=bad))


def test_tools_are_tool_nodes():
    g = session_graph(Session.model_validate({"context": 5, "rounds": 2, "output_tokens": 5,
                                              "tools": [{"delay": "2s", "calls": 3}]}), 1, np.random.default_rng(0))
    assert g.kind == [CALL, TOOL, TOOL, TOOL, CALL]
    assert g.deps[4] == [1, 2, 3] and all(g.duration[i] == 2.0 for i in (1, 2, 3))


WORKLOADS = sorted(glob.glob(os.path.join(ROOT, "workloads", "*.yaml")))


@pytest.mark.parametrize("path", WORKLOADS, ids=os.path.basename)
def test_every_library_workload_loads(path, write_scenario):
    """Each file in workloads/ is a stream (or a list of streams) a scenario can use."""
    base = copy.deepcopy(BASE)
    base["fleet"].append({"pool": "embed", "device": "nvidia-a100-80gb", "count": 1,
                          "serve": {"model": "bge-large-en-v1.5", "precision": "bf16", "tp": 1}})
    base["services"] = [{"name": "vector-db", "servers": 8, "service_time": "10ms"}]
    with open(path) as f:
        data = yaml.safe_load(f)
    streams = data if isinstance(data, list) else [{"include": path}]
    for s in streams:
        if "include" in s:
            s["include"] = os.path.join(os.path.dirname(path), s["include"])
    # files for other request kinds (sim.demand.media) go to a pool serving a model of that kind
    model = {"embeddings.yaml": "bge-large-en-v1.5", "image-generation.yaml": "flux.1-dev",
             "video-generation.yaml": "wan2.1-t2v-14b", "speech-to-text.yaml": "whisper-large-v3",
             "text-to-speech.yaml": "orpheus-3b"}.get(os.path.basename(path), "llama-3.1-8b")
    if model not in ("bge-large-en-v1.5", "llama-3.1-8b"):
        engine = {"max_batch_tokens": 151200, "max_batch_seqs": 1} if model.startswith("wan") else {}
        base["fleet"].append({"pool": "media", "device": "nvidia-h100-sxm", "count": 8 if engine else 1,
                              "serve": {"model": model, "tp": 8 if engine else 1, "engine": engine}})
    base["workload"] = [{**s, "model": model} for s in streams]
    sc = load_scenario(write_scenario({}, base=base))
    assert len(sc.spec.workload) == len(streams)


def test_agent_levels_grow_by_about_ten_times():
    """Tokens per goal of agents-l1 .. l5 (graphs only, 300 goals each): each level about an
    order of magnitude above the one before (between 5x and 20x)."""
    tokens = []
    for level in range(1, 6):
        with open(os.path.join(ROOT, "workloads", f"agents-l{level}.yaml")) as f:
            spec = Session.model_validate(yaml.safe_load(f)["session"])
        g = session_graph(spec, 300, np.random.default_rng(level))
        tokens.append(sum(g.prompt[i] + g.output[i] for i in g.prompt) / 300)
    ratios = np.array(tokens[1:]) / np.array(tokens[:-1])
    assert np.all((ratios > 5) & (ratios < 20)), (tokens, ratios)
