"""Sessions: a user goal served by a graph of model calls and tool calls.

A session stream (`session:` in a workload stream) starts sessions at its `rate` and
`arrival` process; each session is a graph drawn up front from the stream's own random
generator, so it is the same under a seed whatever the fleet does. At run time
(`sim.serving.session_runner`) a call is sent when everything it depends on has finished.

Two shapes:

Loop (agents and conversations): rounds of "call the model, then act". A call reads the
whole context so far (system prompt, goal, earlier outputs, tool results) and adds its
output to it. After a call, its tools run in parallel (a delay, or a call to a scenario
`services:` entry with its own servers and queue) and add their results; with
`sub_agents`, a round may also hand work to sub-agents (sessions of the same shape, one
level deeper, started fresh) whose answers come back into the context. The loop ends after
`rounds`, or when the session's `budget` of calls or tokens is spent (no new sub-agent
starts then; each agent still running gives its answer); `answer_tokens` adds a final
answering call. A conversation is a loop whose tool is the user: `delay` is the think
time and `result_tokens` the next message.

    session:
      system_prompt: {tokens: 600, variants: 4}   # shared by many sessions (prefix caching)
      context: {dist: lognormal, mean: 400, cv: 1}
      rounds: {dist: uniform, min: 3, max: 8}
      output_tokens: {dist: lognormal, mean: 250, cv: 0.6}
      tools: [{name: search, calls: 2, delay: {dist: lognormal, mean: 0.8s, cv: 1}, result_tokens: 600}]
      sub_agents: {probability: 0.3, count: 3, depth: 1}
      answer_tokens: 400
      budget: {calls: 200}

Pipeline (retrieval-augmented generation and other fixed chains): steps in order, each a
call or a tool. A call's `context` is `carry` (reads the context and adds its prompt and
output to it), `read` (reads the context, adds nothing: an embedding of the query) or
`fresh` (reads only its own prompt_tokens).

    session:
      context: 60                                  # the user's question
      steps:
        - call: {model: bge-large-en-v1.5, context: read, output_tokens: 1}
        - tool: {service: vector-db, result_tokens: 3000}
        - call: {output_tokens: 300}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..spec.base import Spec, Tokens
from .distributions import Delay, FixedLength, Length, draw

# ---- durations (tool latency, think time, service time) ---------------------------------


# ---- schema ------------------------------------------------------------------------------


class Service(Spec):
    """A CPU-side service that tool calls queue for (a vector database, a code sandbox):
    `servers` calls at a time, each taking `service_time`."""

    name: str = Field(description="the name tools call it by")
    servers: int = Field(ge=1, description="calls served at a time; others queue")
    service_time: Delay = Field(description="how long one call takes")


class Tool(Spec):
    name: str = Field(default="tool", description="the tool's name, in the session's records")
    calls: Length = Field(default=FixedLength(value=1), description="invocations per round, run in parallel")
    delay: Delay | None = Field(default=None, description="how long one invocation takes")
    service: str | None = Field(default=None, description="or: the scenario service it queues for")
    result_tokens: Length = Field(default=FixedLength(value=1), description="tokens one invocation adds to the context")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.delay is None) == (self.service is None):
            raise ValueError("a tool takes either delay: (its own latency) or service: (a scenario service "
                             "with its own servers)")
        return self


class SubAgents(Spec):
    probability: float = Field(ge=0, le=1, description="chance that a round hands work to sub-agents")
    count: Length = Field(description="sub-agents started in parallel")
    depth: int = Field(default=1, ge=1, description="levels of sub-agents below the session's own agent")


class Budget(Spec):
    calls: int | None = Field(default=None, ge=1, description="model calls per session at most")
    tokens: int | None = Field(default=None, ge=1, description="tokens (prompt + output) per session at most")


class SystemPrompt(Spec):
    tokens: Tokens = Field(description="tokens of each system prompt, added before the prompt")
    variants: int = Field(default=1, ge=1, le=1_000_000, description="distinct system prompts the sessions share")


class CallStep(Spec):
    model: str | None = Field(default=None, description="model of the call (default: the session's)")
    context: Literal["carry", "read", "fresh"] = Field(
        default="carry", description="carry: reads the context and adds its prompt and output to it; read: reads "
                                     "it and adds nothing; fresh: reads only its own prompt_tokens")
    prompt_tokens: Length | None = Field(default=None, description="tokens it adds to what it reads")
    output_tokens: Length = Field(description="tokens the call writes")

    @model_validator(mode="after")
    def _fresh_reads_something(self):
        if self.context == "fresh" and self.prompt_tokens is None:
            raise ValueError("a fresh call reads only its own prompt_tokens: give prompt_tokens")
        return self


class Step(Spec):
    call: CallStep | None = Field(default=None, description="a model call")
    tool: Tool | None = Field(default=None, description="or a tool")

    @model_validator(mode="after")
    def _one(self):
        if (self.call is None) == (self.tool is None):
            raise ValueError("a step is either call: {...} or tool: {...}")
        return self


class Session(Spec):
    """A loop (rounds, output_tokens, tools, sub_agents, answer_tokens) or a pipeline (steps)."""

    model: str | None = Field(default=None, description="model of the calls (default: the stream's)")
    system_prompt: SystemPrompt | None = Field(default=None, description="shared system prompts every call "
                                                                        "starts with")
    context: Length = Field(description="tokens of the goal the session starts from (after any system prompt)")
    rounds: Length | None = Field(default=None, description="loop: rounds of call-then-act")
    output_tokens: Length | None = Field(default=None, description="loop: tokens each call writes")
    tools: list[Tool] = Field(default_factory=list, description="loop: tools run in parallel after each call")
    sub_agents: SubAgents | None = Field(default=None, description="loop: work a round may hand to sub-agents")
    answer_tokens: Length | None = Field(default=None, description="loop: tokens of a final answering call; "
                                                                   "none: no such call")
    budget: Budget = Field(default=Budget(), description="loop: calls or tokens after which the session stops")
    steps: list[Step] | None = Field(default=None, description="pipeline: calls and tools in order (instead of "
                                                               "a loop)")

    @model_validator(mode="after")
    def _one_shape(self):
        loop = {k for k in ("rounds", "output_tokens", "sub_agents", "answer_tokens") if getattr(self, k) is not None}
        if self.tools:
            loop.add("tools")
        if self.steps is not None:
            if loop:
                raise ValueError(f"a pipeline (steps:) takes no {', '.join(sorted(loop))}: those describe a loop")
            if not self.steps:
                raise ValueError("steps: needs at least one step")
            return self
        missing = [k for k in ("rounds", "output_tokens") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a loop session needs {' and '.join(missing)} (or steps: for a pipeline)")
        return self

    def services(self) -> set[str]:
        tools = list(self.tools) + [s.tool for s in self.steps or [] if s.tool is not None]
        return {t.service for t in tools if t.service is not None}

    def names_every_model(self) -> bool:
        """Whether every call names its model (else calls use the stream's)."""
        if self.model is not None:
            return True
        return self.steps is not None and all(s.call.model is not None for s in self.steps if s.call is not None)

    def models(self) -> set[str]:
        return {s.call.model for s in self.steps or [] if s.call is not None and s.call.model is not None}


# ---- the graph ---------------------------------------------------------------------------

CALL, TOOL = 0, 1


@dataclass
class Graph:
    """Sessions' nodes (model calls and tool invocations) and their dependencies, built
    with node ids local to the graph; `calls` lists each call node's request fields."""

    kind: list[int] = field(default_factory=list)          # CALL or TOOL
    session: list[int] = field(default_factory=list)
    deps: list[list[int]] = field(default_factory=list)    # nodes it waits for
    # call nodes (by node id)
    prompt: dict[int, int] = field(default_factory=dict)
    output: dict[int, int] = field(default_factory=dict)
    model: dict[int, str | None] = field(default_factory=dict)
    prefix: dict[int, tuple[int, int]] = field(default_factory=dict)   # (call whose context it extends, tokens)
    system: dict[int, tuple[int, int]] = field(default_factory=dict)   # (system prompt variant, tokens)
    final: set[int] = field(default_factory=set)                       # each session's answering call
    # tool nodes
    service: dict[int, str | None] = field(default_factory=dict)
    duration: dict[int, float] = field(default_factory=dict)
    step: dict[int, int] = field(default_factory=dict)   # pipelines: the step a node belongs to

    def add(self, kind: int, session: int, deps: list[int]) -> int:
        self.kind.append(kind)
        self.session.append(session)
        self.deps.append(list(deps))
        return len(self.kind) - 1


class _Draw:
    """One value at a time from a length or delay distribution, from the stream's generator
    (drawn in blocks: a session draws many values)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.cache: dict[int, tuple[np.ndarray, int]] = {}

    def _next(self, dist, fn) -> float:
        key = id(dist)
        block, i = self.cache.get(key, (None, 0))
        if block is None or i == len(block):
            block, i = fn(dist, 256, self.rng), 0
        self.cache[key] = (block, i + 1)
        return block[i]

    def tokens(self, dist) -> int:
        return int(self._next(dist, draw))

    def seconds(self, dist) -> float:
        return float(self._next(dist, draw))

    def chance(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p


class _Spent:
    """A session's calls and tokens so far, against its budget."""

    def __init__(self, budget: Budget):
        self.budget, self.calls, self.tokens = budget, 0, 0

    def add(self, prompt: int, output: int) -> None:
        self.calls += 1
        self.tokens += prompt + output

    @property
    def exhausted(self) -> bool:
        b = self.budget
        return (b.calls is not None and self.calls >= b.calls) or (b.tokens is not None and self.tokens >= b.tokens)


def build_session(graph: Graph, sid: int, spec: Session, draw: _Draw) -> None:
    """Add session `sid`'s nodes to the graph."""
    system = None
    if spec.system_prompt is not None:
        system = (int(draw.rng.integers(spec.system_prompt.variants)), spec.system_prompt.tokens)
    if spec.steps is not None:
        _pipeline(graph, sid, spec, draw, system)
    else:
        final = _loop(graph, sid, spec, draw, system, parent=None, depth=0, spent=_Spent(spec.budget))
        graph.final.add(final)


def _call(graph: Graph, sid: int, deps, prompt: int, output: int, model, system, prefix) -> int:
    node = graph.add(CALL, sid, deps)
    graph.prompt[node], graph.output[node], graph.model[node] = prompt, output, model
    if system is not None:
        graph.system[node] = system
    if prefix is not None:
        graph.prefix[node] = prefix
    return node


def _tool(graph: Graph, sid: int, deps, tool: Tool, draw: _Draw) -> int:
    node = graph.add(TOOL, sid, deps)
    graph.service[node] = tool.service
    graph.duration[node] = 0.0 if tool.delay is None else draw.seconds(tool.delay)
    return node


def _loop(graph, sid, spec: Session, draw: _Draw, system, parent, depth: int, spent: _Spent) -> int:
    """One agent's loop; returns its answering call."""
    ctx = (system[1] if system else 0) + draw.tokens(spec.context)
    deps = [] if parent is None else [parent]
    prefix = None
    rounds = max(1, draw.tokens(spec.rounds))
    last = None
    for k in range(rounds):
        if last is not None and spent.exhausted:
            break
        out = draw.tokens(spec.output_tokens)
        last = _call(graph, sid, deps, ctx, out, spec.model, system, prefix)
        spent.add(ctx, out)
        prefix = (last, ctx + out)
        ctx += out
        deps = [last]
        if (k == rounds - 1 and spec.answer_tokens is None) or spent.exhausted:
            break
        acts = []        # what the next call waits for: tools and sub-agents, in parallel
        for tool in spec.tools:
            for _ in range(max(1, draw.tokens(tool.calls))):
                acts.append(_tool(graph, sid, [last], tool, draw))
                ctx += draw.tokens(tool.result_tokens)
        sub = spec.sub_agents
        if sub is not None and depth < sub.depth and draw.chance(sub.probability):
            for _ in range(max(1, draw.tokens(sub.count))):
                if spent.exhausted:     # no new agents; those running give their answers
                    break
                answer = _loop(graph, sid, spec, draw, system, last, depth + 1, spent)
                acts.append(answer)
                ctx += graph.output[answer]
        deps = acts or [last]
    if spec.answer_tokens is not None:
        out = draw.tokens(spec.answer_tokens)
        last = _call(graph, sid, deps, ctx, out, spec.model, system, prefix)
        spent.add(ctx, out)
    return last


def _pipeline(graph, sid, spec: Session, draw: _Draw, system) -> None:
    ctx = (system[1] if system else 0) + draw.tokens(spec.context)
    deps: list[int] = []
    prefix_of: dict[str | None, tuple[int, int]] = {}   # per model: the call whose context the next extends
    last = None
    for k, step in enumerate(spec.steps):
        if step.tool is not None:   # its invocations run in parallel
            calls = max(1, draw.tokens(step.tool.calls))
            deps = [_tool(graph, sid, deps, step.tool, draw) for _ in range(calls)]
            graph.step.update((node, k) for node in deps)
            ctx += sum(draw.tokens(step.tool.result_tokens) for _ in range(calls))
            continue
        c = step.call
        model = c.model or spec.model
        extra = draw.tokens(c.prompt_tokens) if c.prompt_tokens is not None else 0
        out = draw.tokens(c.output_tokens)
        prompt = extra if c.context == "fresh" else max(1, ctx + extra)
        sys_here = system if c.context != "fresh" else None
        last = _call(graph, sid, deps, prompt, out, model, sys_here,
                     prefix_of.get(model) if c.context != "fresh" else None)
        graph.step[last] = k
        if c.context == "carry":
            ctx += extra + out
            prefix_of[model] = (last, prompt + out)
        elif c.context == "read":
            prefix_of[model] = (last, prompt)
        deps = [last]
    if last is None:
        raise ValueError("a pipeline needs at least one call")
    graph.final.add(last)


def session_graph(spec: Session, n: int, rng: np.random.Generator) -> Graph:
    """n sessions of one stream."""
    graph = Graph()
    draw = _Draw(rng)
    for sid in range(n):
        build_session(graph, sid, spec, draw)
    return graph
