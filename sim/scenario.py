"""Scenario files: schema, catalog resolution and checks, with errors at file:line:field.

`load_scenario(path, overrides)` is the one entry point: it reads the YAML (with includes),
applies `--set` overrides, validates the schema, resolves catalog names and inline
definitions, and checks that each pool's model fits its devices. It returns a `Scenario`
whose pools carry a resolved `Deployment`; nothing reads YAML after it returns.
"""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from . import catalog, timing
from .catalog import economics, engines
from .catalog.hardware import DeviceSpec, Precision
from .catalog.models import ModelSpec, a_kind
from .catalog.partition import Partition
from .demand import trace_file
from .demand.media import media_field
from .demand.sessions import Service
from .demand.streams import Stream
from .fabric.topology import TopologySpec, validate_topology
from .ops.admission import AdmissionSpec
from .ops.autoscaler import AutoscaleSpec
from .ops.failures import FailureSpec
from .serving import sharing
from .spec import limits, source
from .spec.base import Bytes, Name, Seconds, Spec, Watts
from .spec.errors import Loc, Problem, ScenarioError, did_you_mean, format_path
from .spec.slo import Slo
from .spec.validate import validate
from .timing import calibration
from .timing.deployment import Deployment, DeploymentError, EngineLimits, deploy

# ---- serving ---------------------------------------------------------------------------


class Engine(Spec):
    framework: Literal["vllm", "sglang", "trtllm", "native"] | None = Field(
        default=None, description="the serving engine whose defaults and measured kernels the pool takes")
    version: str | None = Field(default=None, description="the engine's version (its preset and kernel measurements)")
    timing: Literal["auto", "measured", "analytical"] = Field(
        default="auto", description="where iteration times come from: measured kernels where the device and "
                                    "model have them (auto), required (measured), or the roofline (analytical)")
    batching: Literal["continuous", "static"] = "continuous"
    # Fields below that a pool leaves out come from its engine's preset (catalog/engines.yaml)
    max_batch_seqs: int = Field(default=256, ge=1)
    max_batch_tokens: int = Field(default=8192, ge=1)
    chunked_prefill: int | None = Field(default=None, ge=1,
                                        description="prefill tokens per iteration; off: whole prompts")
    block_size: int = Field(default=16, ge=1)
    memory_utilization: float = Field(default=0.9, gt=0, le=1)
    activation_reserve: Bytes | None = Field(default=None, ge=0)
    mixed_batches: bool = Field(default=True, description="an iteration runs prefill chunks and decode steps "
                                                          "together; false: all prefill or all decode, prefill first")
    memory_of: Literal["total", "free_after_weights"] = Field(
        default="total", description="what memory_utilization is a fraction of: all memory (weights, activations "
                                     "and KV cache), or the memory left after weights (the KV cache)")
    iteration_overhead: Seconds | None = Field(default=None, ge=0, description="host time per iteration: schedule, "
                                                                           "prepare inputs, process outputs")
    host_per_seq: Seconds = Field(default=0.0, ge=0, description="host time per iteration per sequence in the batch")
    overlap: bool = Field(default=False, description="the host prepares the next iteration while the device runs "
                                                     "this one")
    graph_max_tokens: int | None = Field(default=None, ge=0, description="largest iteration replayed as a captured "
                                                                       "graph; larger ones launch kernels one by one")
    graph_decode_only: bool = Field(default=False, description="graphs only for iterations without prefill")
    launch: Seconds = Field(default=0.0, ge=0, description="host time to launch one kernel outside a graph")
    host_threads: int = Field(default=1, ge=1, description="head-node CPU cores one replica's engine keeps busy")
    allreduce: Literal["ring", "tree"] = Field(
        default="ring", description="all-reduce algorithm of the analytical model; measured timing uses the "
                                    "engine's own all-reduce as measured")
    tokenize_per_token: Seconds = Field(default=0.0, ge=0,
                                        description="host CPU time to tokenize one prompt token; 0: not modelled")
    detokenize_per_token: Seconds = Field(default=0.0, ge=0,
                                          description="host CPU time to detokenize one output token as it streams; "
                                                      "0: not modelled")
    fast_path: bool = True
    preempt_lower: bool = Field(default=False, description="a waiting request of a higher class preempts "
                                                           "running ones of lower classes to get a slot or KV space")
    prefix_cache: bool = Field(default=False, description="keep finished requests' KV blocks (least recently "
                                                          "used evicted first) for later calls that share the prefix")


class Serve(Spec):
    model: Any
    precision: Precision = "bf16"
    kv_precision: Precision | None = None
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1, description="pipeline stages, each of tp devices")
    ep: int = Field(default=1, ge=1, description="expert-parallel ranks: data-parallel attention, experts spread")
    role: Literal["both", "prefill", "decode"] = Field(
        default="both", description="disaggregated serving: pools that only prefill or only decode")
    weights: Literal["preloaded", "host", "storage"] = Field(
        default="preloaded", description="where replicas load their weights from when they start")
    provision: Seconds = Field(default=0.0, ge=0, description="a start after the run began: time to allocate the "
                                                              "node and start the engine, before loading weights")
    engine: Engine = Engine()

    @model_validator(mode="after")
    def _continuous_for_roles(self):
        if self.role != "both" and self.engine.batching != "continuous":
            raise ValueError(f"role: {self.role} needs continuous batching")
        if self.engine.prefix_cache and (self.role != "both" or self.engine.batching != "continuous"):
            raise ValueError("engine.prefix_cache needs continuous batching on a pool with role: both "
                             "(prefill/decode pools do not cache prefixes in this version)")
        return self


class Pool(Spec):
    pool: str
    device: Any
    count: int = Field(ge=1, description="accelerators in the pool")
    serve: Serve
    autoscale: AutoscaleSpec | None = Field(default=None, description="run between min and max of its replicas")
    partition: Partition | None = Field(default=None, description="MIG profile each replica runs on; count: slices")
    share_devices_with: str | None = Field(default=None, description="run on this pool's devices, time-sharing them")
    swap_devices_with: str | None = Field(default=None, description="run on this pool's devices, the models "
                                                                     "taking turns (swapping) on them")
    memory_fraction: float | None = Field(default=None, gt=0, le=1, description="share of shared devices' memory")

    @model_validator(mode="after")
    def _whole_replicas(self):
        per = self.serve.tp * self.serve.pp * self.serve.ep
        if self.count % per == 0:
            return self
        if per == self.serve.tp:
            raise ValueError(f"count ({self.count}) must be a multiple of serve.tp ({self.serve.tp}): "
                             f"each replica uses tp devices")
        raise ValueError(f"count ({self.count}) must be a multiple of tp x pp x ep "
                         f"({self.serve.tp} x {self.serve.pp} x {self.serve.ep}): the devices of one replica")

    @property
    def replicas(self) -> int:
        return self.count // (self.serve.tp * self.serve.pp * self.serve.ep)

    @property
    def engines_per_replica(self) -> int:
        """Pipeline replicas run pp engines; expert-parallel ones one engine per rank."""
        return self.serve.pp * self.serve.ep


class Router(Spec):
    """Requests go to the pools that serve their model (a request for a model no pool serves
    is rejected); among those replicas the policy picks one. `weighted` draws a pool by
    `weights` and takes its least-loaded replica; `lowest-latency` picks the replica with the
    lowest expected latency for this request; `lowest-cost` fills the cheapest pool (dollars
    per token at full load) before spilling over to dearer ones."""

    policy: Literal["round-robin", "random", "least-outstanding", "least-kv", "power-of-two", "weighted",
                    "lowest-latency", "lowest-cost", "cache-aware"] = "least-outstanding"
    weights: dict[str, float] | None = Field(default=None, description="weighted: pool name -> share of requests")
    queue_limit: int | None = Field(default=None, ge=0, description="max requests waiting at a replica")
    dispatch: Literal["immediate", "central"] = "immediate"
    # cache-aware (after the SGLang model gateway's policy and its defaults): while the load is
    # balanced, the replica whose prefix cache holds most of the prompt, if that is at least
    # cache_threshold of it; else, and whenever the busiest replica has more than
    # balance_abs_threshold and balance_rel_threshold times the idlest's outstanding, the least loaded
    cache_threshold: float = Field(default=0.3, ge=0, le=1)
    balance_abs_threshold: int = Field(default=64, ge=0)
    balance_rel_threshold: float = Field(default=1.5, ge=1)

    @model_validator(mode="after")
    def _weights(self):
        if self.policy == "weighted" and not self.weights:
            raise ValueError("policy weighted needs weights: {pool name: share, ...}")
        if self.policy != "weighted" and self.weights is not None:
            raise ValueError(f"weights apply to policy weighted, not {self.policy}")
        if self.weights is not None and (min(self.weights.values()) < 0 or sum(self.weights.values()) <= 0):
            raise ValueError("weights must be non-negative with a positive sum")
        return self


class Ingress(Spec):
    """Requests enter the fabric at `node` (a front end or gateway of the topology): each
    prompt's payload flows to the chosen replica's host before the replica sees it, and each
    reply flows back when it completes."""

    node: str
    bytes_per_token: float = Field(default=4.0, gt=0, description="payload per prompt or output token")




class Economics(Spec):
    """One pricing basis for every pool: `own` (list prices of devices and servers, paid off over
    `amortize_years` at an annual `cost_of_capital`, plus electricity) or `rent` (by the hour,
    which already pays for power); `auto`: own when every device has a list price, else rent
    when every one has an hourly price."""

    usd_per_kwh: float = Field(default=0.08, ge=0)
    pue: float = Field(default=1.3, ge=1)
    amortize_years: float = Field(default=4.0, gt=0)
    cost_of_capital: float = Field(default=0.0, ge=0, le=1, description="annual rate, e.g. 0.08; 0: straight line")
    pricing: Literal["auto", "own", "rent"] = "auto"
    utilization: float | None = Field(default=None, gt=0, le=1,
                                      description="share of the fleet's capacity (its saturated throughput, "
                                                  "measured by a second run) at which to quote the break-even price")
    market_usd_per_m_tokens: float | None = Field(default=None, gt=0,
                                                  description="a price to measure the margin against")

    @field_validator("pricing", mode="before")
    @classmethod
    def _old_names(cls, v):
        return {"capex": "own", "rental": "rent"}.get(v, v) if isinstance(v, str) else v   # earlier names


class PowerBudget(Spec):
    """A power limit. Above it the devices are power-capped: a controller lowers their clock
    every `interval` until the draw fits (see sim.ops.power_cap). A datacenter budget is
    facility power (IT x PUE); a rack budget is IT power per rack of `rack_devices`
    accelerators, taken in placement order."""

    budget: Watts = Field(gt=0)
    scope: Literal["datacenter", "rack"] = "datacenter"
    rack_devices: int | None = Field(default=None, ge=1)
    interval: Seconds = Field(default=1.0, gt=0, description="how often the cap is revised")
    min_clock: float = Field(default=0.3, gt=0, le=1, description="the lowest clock a cap may set")

    @model_validator(mode="after")
    def _racks(self):
        if self.scope == "rack" and self.rack_devices is None:
            raise ValueError("a rack budget needs rack_devices: accelerators per rack")
        if self.scope == "datacenter" and self.rack_devices is not None:
            raise ValueError("rack_devices applies to scope: rack")
        return self


class ScenarioSpec(Spec):
    name: Name
    seed: int = Field(default=0, ge=0)
    duration: Seconds = Field(gt=0, description="window in which requests arrive")
    warmup: Seconds = Field(default=0.0, ge=0)
    drain: Seconds | None = Field(default=None, ge=0,
                                  description="time after duration to finish in-flight work; none: until done")
    topology: TopologySpec | None = None
    fleet: list[Pool] = Field(min_length=1)
    router: Router = Router()
    admission: AdmissionSpec | None = Field(default=None, description="per-tenant rate limits, load shedding by class")
    ingress: Ingress | None = None
    workload: list[Stream] = Field(min_length=1)
    services: list[Service] = Field(default_factory=list, description="CPU-side services sessions' tools call")
    slo: Slo = Slo()
    economics: Economics = Economics()
    power: PowerBudget | None = None
    failures: FailureSpec | None = Field(default=None, description="devices, servers, racks, links and switches "
                                                                   "that fail and are repaired")
    calibration: str | None = Field(default=None, description="overlay written by `dcsim calibrate` (path "
                                                              "relative to this file): factors fitted to your cluster")

    @model_validator(mode="after")
    def _warmup_inside(self):
        if self.warmup >= self.duration:
            raise ValueError(f"warmup ({self.warmup:g}s) must be shorter than duration ({self.duration:g}s)")
        return self


# ---- resolution ------------------------------------------------------------------------


class ResolvedPool:
    """A pool with its device and model resolved and its deployment checked."""

    def __init__(self, spec: Pool, device_key: str, model_key: str, deployment: Deployment):
        self.spec = spec
        self.name = spec.pool
        self.device_key = device_key
        self.model_key = model_key
        self.deployment = deployment

    @property
    def replicas(self) -> int:
        return self.spec.replicas


class Scenario:
    """A validated scenario: the schema object, resolved pools, and where it came from."""

    def __init__(self, spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source, path: str):
        self.spec = spec
        self.pools = pools
        self.source = src
        self.path = path
        self.pricing = economics.Basis(None, [])   # set by scenario_from_source (pricing_basis)

    @property
    def name(self) -> str:
        return self.spec.name

    def resolved_dict(self) -> dict:
        """The fully resolved scenario (includes merged, overrides applied), for the results folder."""
        return self.source.data

    def models_served(self) -> set[str]:
        return {p.model_key for p in self.pools}


def load_scenario(path: str, overrides: list[str] | tuple[str, ...] = (), variant: str | None = None) -> Scenario:
    """A scenario file, with variant `variant` applied (None: the base scenario)."""
    src = source.load(path)
    src.select_variant(variant)
    return scenario_from_source(src, overrides, path)


def variant_names(path: str) -> list[str]:
    """The variants a scenario file defines (`variants:`), in file order."""
    return source.load(path).variants()


def scenario_from_source(src: source.Source, overrides=(), path: str = "") -> Scenario:
    """A scenario from YAML already read (a whole file, or a `Source.subtree` of one)."""
    if not isinstance(src.data, dict):
        raise ScenarioError.one(Loc(src.root, 1), "", "a scenario file must be a mapping of fields (name:, fleet:, ...)")
    for assignment in overrides:
        src.override(assignment)
    sharing.inherit(src)
    spec = validate(ScenarioSpec, src.data, src)
    problems: list[Problem] = []
    pools = []
    for i, pool in enumerate(spec.fleet):
        try:
            pools.append(_resolve_pool(pool, i, src, spec.topology))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    names = [p.pool for p in spec.fleet]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append(Problem(src.loc_of(("fleet", i, "pool")), f"fleet[{i}].pool", f"duplicate pool name '{name}'"))
    if problems:
        raise ScenarioError(problems)
    if spec.calibration is not None:
        overlay = calibration.load(spec.calibration, src.loc_of(("calibration",)))
        notes = calibration.apply(overlay, os.path.basename(spec.calibration), pools)
        for p in pools:
            p.deployment.assumptions.extend(notes)
    # the pools as they run: engine fields their presets filled in, the KV precision chosen
    spec = spec.model_copy(update={"fleet": [p.spec for p in pools]})
    served = {p.model_key for p in pools}
    for i, stream in enumerate(spec.workload):
        if stream.model is None and len(served) > 1 and not (stream.session and stream.session.names_every_model()):
            problems.append(Problem(src.loc_of(("workload", i)), f"workload[{i}]",
                                    f"name the model this stream asks for; the fleet serves {', '.join(sorted(served))}"))
        elif stream.model is not None and stream.model not in served:
            problems.append(Problem(src.loc_of(("workload", i, "model")), f"workload[{i}].model",
                                    f"no pool serves '{stream.model}'" + did_you_mean(stream.model, served, "models")))
        if stream.trace is not None:
            if not os.path.exists(stream.trace.path):
                problems.append(Problem(src.loc_of(("workload", i, "trace", "path")), f"workload[{i}].trace.path",
                                        f"trace file not found: {stream.trace.path}"))
            else:
                try:
                    trace_file.read_trace(stream.trace.path, source.display(stream.trace.path))
                except ScenarioError as exc:
                    problems.extend(exc.problems)
    problems.extend(_check_roles(spec, pools, src))
    problems.extend(_check_tenants(spec, src))
    problems.extend(_check_admission(spec, src))
    problems.extend(_check_autoscale(spec, src))
    problems.extend(_check_sessions(spec, served, src))
    problems.extend(_check_modalities(spec, pools, src))
    problems.extend(sharing.check(spec, pools, src))
    for name in spec.router.weights or {}:
        if name not in names:
            problems.append(Problem(src.loc_of(("router", "weights", name)), f"router.weights.{name}",
                                    f"no pool '{name}'" + did_you_mean(name, names, "pools")))
    problems.extend(_check_sizes(spec, src))
    # the checks below build the topology's graph: an invalid topology is reported first
    topology_problems = _check_topology(spec, src) if spec.topology is not None else []
    if topology_problems:
        raise ScenarioError(problems + topology_problems)
    if spec.ingress is not None:
        if spec.topology is None:
            problems.append(Problem(src.loc_of(("ingress",)), "ingress", "ingress needs topology: to carry requests"))
        elif spec.ingress.node not in spec.topology.graph():
            nodes = [n for n, d in spec.topology.graph().nodes(data=True) if d.get("kind") in ("switch", "storage", "cpu")]
            problems.append(Problem(src.loc_of(("ingress", "node")), "ingress.node",
                                    f"no node '{spec.ingress.node}' in the topology" + did_you_mean(spec.ingress.node, nodes, "nodes")))
    for i, pool in enumerate(spec.fleet):
        where = src.loc_of(("fleet", i, "serve", "weights"))
        if pool.serve.weights != "preloaded" and spec.topology is None:
            problems.append(Problem(where, f"fleet[{i}].serve.weights", f"loading weights from {pool.serve.weights} "
                                    f"moves them over the fabric: add topology:"))
        elif pool.serve.weights == "storage" and not any(
                d.get("kind") == "storage" for _, d in spec.topology.graph().nodes(data=True)):
            problems.append(Problem(where, f"fleet[{i}].serve.weights", "the topology has no storage node; "
                                    "add storage to its builder or a node of kind storage"))
    if problems:
        raise ScenarioError(problems)
    problems.extend(_check_failures(spec, pools, src))
    if problems:
        raise ScenarioError(problems)
    scenario = Scenario(spec, pools, src, path)
    scenario.pricing = pricing_basis(scenario, spec.economics.pricing, src)
    return scenario


def pricing_basis(scenario: Scenario, wanted: str, src: source.Source | None = None) -> economics.Basis:
    """The scenario's one pricing basis; a basis asked for by name that a device lacks a price
    for is an error at economics.pricing (auto without one leaves the cost uncomputed, saying why)."""
    devices = {}
    for p in scenario.pools:
        devices.setdefault(p.device_key, p.deployment.device)
    chosen = economics.basis(devices, wanted)
    if chosen.name is None and wanted != "auto":
        loc = src.loc_of(("economics", "pricing")) if src is not None else None
        raise ScenarioError.one(loc, "economics.pricing", chosen.problem())
    return chosen


MEDIA_FIELD = {"speech_to_text": "audio_seconds", "text_to_speech": "audio_seconds", "image": "image",
               "video": "video"}
MEDIA_HINT = {"audio_seconds": "audio_seconds: (seconds of audio per request, e.g. 30s or {dist: lognormal, "
                                "mean: 8s, cv: 1})",
              "image": "image: {width: 1024, height: 1024}", "video": "video: {width: 1280, height: 720, frames: 81}"}


def _check_modalities(spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source) -> list[Problem]:
    """Each stream describes its requests the way its model's modality needs (sim.demand.media), and
    pools serving a diffusion model run an engine that can."""
    problems = []
    models = {p.model_key: p.deployment.model for p in pools}
    served = sorted(models)
    for i, pool in enumerate(pools):
        serve = pool.spec.serve
        model = pool.deployment.model
        engine = serve.engine
        if model.diffusion is not None:
            classes = {s.priority for s in spec.workload if (s.model or served[0]) == pool.model_key}
            checks = (("engine.chunked_prefill", engine.chunked_prefill is not None,
                       "a diffusion transformer denoises whole latents each step; remove chunked_prefill"),
                      ("role", serve.role != "both", "prefill/decode roles apply to token models"),
                      ("engine.prefix_cache", getattr(engine, "prefix_cache", False),
                       "a diffusion transformer keeps no KV cache to share"),
                      ("engine.preempt_lower", len(classes) > 1 or engine.preempt_lower,
                       f"the diffusion engine serves {pool.model_key}'s requests in arrival order and cannot "
                       f"honour priority classes; give its streams one priority"))
        elif model.bidirectional:   # an encoder: embeddings, Whisper's encoder pass
            why = f"{pool.model_key} is an encoder ({model.modality}): it reads its whole input in one pass " \
                  f"over every pair of positions, which "
            checks = (("engine.chunked_prefill", engine.chunked_prefill is not None, why + "chunks would split"),
                      ("engine.prefix_cache", getattr(engine, "prefix_cache", False),
                       why + "makes a prefix's states depend on what follows: no cache can share them"))
        else:
            continue
        for field, bad, why in checks:
            if bad:
                path = ("fleet", i, "serve") + tuple(field.split("."))
                problems.append(Problem(src.loc_of(path), format_path(path), why))
    for i, stream in enumerate(spec.workload):
        field = media_field(stream)
        if stream.session is not None:
            for name in sorted((stream.session.models() | {stream.session.model}) - {None}):
                kind = models[name].modality if name in models else "text"
                if kind not in ("text", "embedding"):
                    problems.append(Problem(src.loc_of(("workload", i, "session")), f"workload[{i}].session",
                                            f"sessions call text and embedding models; {name} is {a_kind(kind)} model"))
            continue
        key = stream.model or (next(iter(models)) if len(models) == 1 else None)
        if key not in models:
            continue   # reported above
        model = models[key]
        kind = model.modality
        expect = MEDIA_FIELD.get(kind)
        path = ("workload", i) + ((field,) if field else ())
        where, name = src.loc_of(path), format_path(path)
        if field is not None and field != expect:
            takers = sorted(k for k, m in models.items() if MEDIA_FIELD.get(m.modality) == field)
            fits = f"{field}: applies to " + (", ".join(takers) if takers else
                                              "speech models" if field == "audio_seconds" else f"{field} models")
            takes = f"{expect}:" if expect else "prompt_tokens and output_tokens"
            problems.append(Problem(where, name, f"{key} is {a_kind(kind)} model, which takes {takes}; {fits}"))
            continue
        if field is None:
            if expect is not None and kind != "text_to_speech":
                problems.append(Problem(where, name, f"{key} is {a_kind(kind)} model: give {MEDIA_HINT[expect]}; "
                                                     f"its requests' token counts are derived from it"))
            continue
        if kind == "speech_to_text":
            if stream.prompt_tokens is not None:
                problems.append(Problem(src.loc_of(("workload", i, "prompt_tokens")), f"workload[{i}].prompt_tokens",
                                        f"{key} reads {model.speech.encoder_positions} encoder positions + "
                                        f"{model.speech.prompt_tokens} task tokens per window; remove prompt_tokens"))
            if stream.closed_loop:
                problems.append(Problem(src.loc_of(("workload", i, "concurrency")), f"workload[{i}].concurrency",
                                        "a clip's windows arrive together, which a closed loop of single requests "
                                        "cannot send; use rate: (open loop)"))
        if kind in ("image", "video"):
            problems.extend(_check_diffusion_stream(i, stream, key, model, pools, src))
    return problems


def _check_diffusion_stream(i: int, stream: Stream, key: str, model: ModelSpec, pools: list[ResolvedPool],
                            src: source.Source) -> list[Problem]:
    """A request must fit one batch of every pool that serves its model."""
    problems = []
    d = model.diffusion
    req = stream.image if model.modality == "image" else stream.video
    field = "image" if model.modality == "image" else "video"
    if field == "video" and (req.frames - 1) % d.frames_per_latent:
        problems.append(Problem(src.loc_of(("workload", i, "video", "frames")), f"workload[{i}].video.frames",
                                f"{key} compresses {d.frames_per_latent} frames into a latent frame after the first: "
                                f"frames must be {d.frames_per_latent}n + 1 (e.g. {req.frames - (req.frames - 1) % d.frames_per_latent})"))
    samples = req.images if field == "image" else 1
    tokens = d.latent_tokens(req.width, req.height, getattr(req, "frames", 1)) * samples * d.cfg_passes
    for j, pool in enumerate(pools):
        if pool.model_key != key:
            continue
        engine = pool.spec.serve.engine
        if samples > engine.max_batch_seqs:
            problems.append(Problem(src.loc_of(("workload", i, "image", "images")), f"workload[{i}].image.images",
                                    f"{samples} images per request exceed pool {pool.name}'s max_batch_seqs "
                                    f"({engine.max_batch_seqs}): a request's images are denoised in one batch"))
        if tokens > engine.max_batch_tokens:
            problems.append(Problem(src.loc_of(("workload", i, field)), f"workload[{i}].{field}",
                                    f"a request puts {tokens:,} tokens through each denoising step ({samples} x "
                                    f"{tokens // samples // d.cfg_passes:,} latent tokens x {d.cfg_passes} passes), "
                                    f"more than pool {pool.name}'s engine.max_batch_tokens ({engine.max_batch_tokens:,}); "
                                    f"raise it (it sizes the activation reserve)"))
    return problems


def _check_sessions(spec: ScenarioSpec, served: set[str], src: source.Source) -> list[Problem]:
    """Sessions' tools call services the scenario defines, and their steps name models the
    fleet serves."""
    problems = []
    names = [s.name for s in spec.services]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append(Problem(src.loc_of(("services", i, "name")), f"services[{i}].name",
                                    f"duplicate service name '{name}'"))
    for i, stream in enumerate(spec.workload):
        if stream.session is None:
            continue
        where = src.loc_of(("workload", i, "session"))
        for service in sorted(stream.session.services() - set(names)):
            problems.append(Problem(where, f"workload[{i}].session", f"a tool calls service '{service}', which "
                                    f"services: does not define" + did_you_mean(service, names, "services")))
        for model in sorted((stream.session.models() | {stream.session.model}) - {None} - served):
            problems.append(Problem(where, f"workload[{i}].session", f"no pool serves '{model}'"
                                    + did_you_mean(model, served, "models")))
    return problems


def _check_tenants(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
    """A tenant's streams agree on its SLO; classes need an engine that honours them."""
    problems = []
    slo_of: dict[str, tuple[int, object]] = {}
    for i, stream in enumerate(spec.workload):
        tenant = stream.tenant or stream.name
        if stream.slo is None:
            continue
        if tenant in slo_of and slo_of[tenant][1] != stream.slo:
            problems.append(Problem(src.loc_of(("workload", i, "slo")), f"workload[{i}].slo",
                                    f"tenant '{tenant}' already has other SLO targets (workload[{slo_of[tenant][0]}]); "
                                    f"give a tenant's streams the same slo or set it on one of them"))
        slo_of.setdefault(tenant, (i, stream.slo))
    classes = {s.priority for s in spec.workload}
    if spec.router.policy == "cache-aware" and not any(p.serve.engine.prefix_cache for p in spec.fleet):
        problems.append(Problem(src.loc_of(("router", "policy")), "router.policy",
                                "cache-aware routes by what replicas' prefix caches hold; set "
                                "serve.engine.prefix_cache: true on the pools"))
    for i, pool in enumerate(spec.fleet):
        engine = pool.serve.engine
        if engine.batching == "static" and (len(classes) > 1 or engine.preempt_lower):
            problems.append(Problem(src.loc_of(("fleet", i, "serve", "engine", "batching")),
                                    f"fleet[{i}].serve.engine.batching",
                                    "static batching serves requests in arrival order and cannot honour priority "
                                    "classes; use batching: continuous"))
    return problems


def _check_failures(spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source) -> list[Problem]:
    """Failure targets name components the fleet has; failed replicas' requests can go elsewhere."""
    if spec.failures is None:
        return []
    from .ops.failures import Components
    from .serving.placement import place
    scenario = Scenario(spec, pools, src, "")
    problems = [Problem(src.loc_of(path), format_path(path), message)
                for path, message in Components(scenario, place(scenario)).problems(spec.failures)]
    for i, pool in enumerate(spec.fleet):
        if pool.serve.role != "both":
            path = ("fleet", i, "serve", "role")
            problems.append(Problem(src.loc_of(path), format_path(path), "failures: with disaggregated prefill/decode "
                                    "pools are not modelled in this version (a KV transfer to a failed replica)"))
    return problems


def _check_autoscale(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
    """An autoscaled pool scales whole replicas of a pool that serves requests whole."""
    problems = []
    for i, pool in enumerate(spec.fleet):
        a = pool.autoscale
        if a is None:
            continue
        for field, value in (("max", a.max), ("min", a.min), ("initial", a.initial)):
            if value is not None and value > pool.replicas:
                path = ("fleet", i, "autoscale", field)
                problems.append(Problem(src.loc_of(path), format_path(path), f"{field} ({value}) exceeds the "
                                        f"{pool.replicas} replicas the pool's {pool.count} devices hold; raise count"))
        if pool.serve.role != "both":
            path = ("fleet", i, "autoscale")
            problems.append(Problem(src.loc_of(path), format_path(path), "autoscaling disaggregated prefill/decode "
                                    "pools is not modelled in this version"))
    return problems


def _check_admission(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
    """Rate limits name tenants the workload has; shedding thresholds name its classes."""
    if spec.admission is None:
        return []
    problems = []
    tenants = sorted({s.tenant or s.name for s in spec.workload})
    seen = set()
    for i, limit in enumerate(spec.admission.rate_limits):
        path = ("admission", "rate_limits", i, "tenant")
        if limit.tenant not in tenants:
            problems.append(Problem(src.loc_of(path), format_path(path), f"no tenant '{limit.tenant}' in the workload"
                                    + did_you_mean(limit.tenant, tenants, "tenants (a stream's tenant:, else its name)")))
        elif limit.tenant in seen:
            problems.append(Problem(src.loc_of(path), format_path(path), f"tenant '{limit.tenant}' already has a "
                                    f"rate limit; give each tenant one entry"))
        seen.add(limit.tenant)
    if spec.admission.shed is not None:
        classes = sorted({s.priority for s in spec.workload})
        for c in spec.admission.shed.waiting_per_replica:
            if c not in classes:
                path = ("admission", "shed", "waiting_per_replica", c)
                problems.append(Problem(src.loc_of(path), format_path(path), f"no stream has priority {c}; the "
                                        f"workload's classes are {', '.join(map(str, classes))}"))
    return problems


def _check_roles(spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source) -> list[Problem]:
    """Disaggregated serving needs both a prefill and a decode pool per model, and a
    topology over which the KV cache moves."""
    problems = []
    roles: dict[str, set] = {}
    for p in pools:
        roles.setdefault(p.model_key, set()).add(p.spec.serve.role)
    for model, found in roles.items():
        split = found & {"prefill", "decode"}
        if not split:
            continue
        i = next(i for i, p in enumerate(pools) if p.model_key == model and p.spec.serve.role != "both")
        where, field = src.loc_of(("fleet", i, "serve", "role")), f"fleet[{i}].serve.role"
        if "both" in found:
            problems.append(Problem(where, field, f"{model} mixes disaggregated pools with role: both pools; "
                                                  f"give every pool of the model a role of prefill or decode"))
        elif split != {"prefill", "decode"}:
            missing = ({"prefill", "decode"} - split).pop()
            problems.append(Problem(where, field, f"{model} has a {split.pop()} pool but no {missing} pool; "
                                                  f"disaggregated serving needs both"))
        elif spec.topology is None:
            problems.append(Problem(where, field, "disaggregated serving moves the KV cache over the fabric: "
                                                  "add topology: (e.g. ../topologies/hgx-h100-node.yaml)"))
    return problems


def _catalog_entry(ref, entries: dict, what: str, loc_path: tuple, src: source.Source) -> tuple[str, dict]:
    """Resolve a catalog name, or an inline mapping with an optional `base:` name to override."""
    field = format_path(loc_path)
    if isinstance(ref, str):
        if ref not in entries:
            raise ScenarioError.one(src.loc_of(loc_path), field, f"unknown {what} '{ref}'" + did_you_mean(ref, entries, f"{what}s"))
        return ref, dict(entries[ref])
    if isinstance(ref, dict):
        ref = dict(ref)
        base = ref.pop("base", None)
        if base is None:
            return ref.get("name", f"custom-{what}"), ref
        if base not in entries:
            raise ScenarioError.one(src.loc_of(loc_path + ("base",)), field + ".base",
                                    f"unknown {what} '{base}'" + did_you_mean(str(base), entries, f"{what}s"))
        merged = dict(entries[base])
        merged.update(ref)
        return f"{base}*", merged
    raise ScenarioError.one(src.loc_of(loc_path), field,
                            f"expected a catalog {what} name or a mapping of {what} fields, got {ref!r}")


def _check_sizes(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
    """Runs no capacity question needs (sim.spec.limits): too long, too many requests or devices."""
    out = []
    if spec.duration > limits.DURATION_S.value:
        out.append(Problem(src.loc_of(("duration",)), "duration", limits.DURATION_S.message(f"{spec.duration:g}")))
    expected = sum((s.rate or 0.0) for s in spec.workload) * spec.duration + sum(s.requests or 0 for s in spec.workload)
    if expected > limits.REQUESTS.value:
        out.append(Problem(src.loc_of(("workload",)), "workload",
                           limits.REQUESTS.message(f"{expected:,.0f} at the streams' rates over {spec.duration:g} s")))
    devices = sum(p.count for p in spec.fleet)
    if devices > limits.DEVICES.value:
        out.append(Problem(src.loc_of(("fleet",)), "fleet", limits.DEVICES.message(f"{devices:,}")))
    return out


def _resolve_pool(pool: Pool, i: int, src: source.Source, topology=None) -> ResolvedPool:
    dev_path, model_path = ("fleet", i, "device"), ("fleet", i, "serve", "model")
    dev_key, dev_raw = _catalog_entry(pool.device, catalog.device_entries(), "device", dev_path, src)
    model_key, model_raw = _catalog_entry(pool.serve.model, catalog.model_entries(), "model", model_path, src)
    device = validate(DeviceSpec, dev_raw, src, dev_path) if isinstance(pool.device, dict) else _catalog_spec(DeviceSpec, dev_key, dev_raw, "device")
    device, dev_key = sharing.resolve_device(pool, i, device, dev_key, src)
    model = validate(ModelSpec, model_raw, src, model_path) if isinstance(pool.serve.model, dict) else _catalog_spec(ModelSpec, model_key, model_raw, "model")
    serve = pool.serve
    engine_path = ("fleet", i, "serve", "engine")
    choice = _engine_choice(serve, device, model, src, engine_path)
    engine = serve.engine.model_copy(update=choice.values)
    notes = list(choice.notes)
    kv_precision = serve.kv_precision
    if kv_precision is None:
        kv_precision, note = engines.kv_precision(choice, serve.precision)
        notes.append(note)
    if engine.chunked_prefill is not None and engine.chunked_prefill > engine.max_batch_tokens:
        raise ScenarioError.one(src.loc_of(engine_path + ("chunked_prefill",)), f"fleet[{i}].serve.engine.chunked_prefill",
                                f"chunked_prefill ({engine.chunked_prefill}) exceeds max_batch_tokens ({engine.max_batch_tokens})")
    dep = _deploy(device, model, serve, engine, kv_precision, dev_key, model_key, src, i)
    if choice.sglang_seqs:   # SGLang sizes its batch from the KV pool it got
        seqs = engines.sglang_max_running(dep.total_blocks * engine.block_size, model.max_context or 1)
        engine = engine.model_copy(update={"max_batch_seqs": seqs})
        dep = _deploy(device, model, serve, engine, kv_precision, dev_key, model_key, src, i)
        notes.append(f"engine: max_batch_seqs {seqs} (SGLang's max_running_requests from its KV pool)")
    if topology is not None and dep.tp > 1:
        dep.torus = topology.torus_group(dep.tp)     # a TPU-style slice: tensor parallelism rides its links
    try:
        dep.params, timed = timing.build(dep, engine, choice.framework, choice.version, model.max_context)
    except timing.TimingError as exc:
        raise ScenarioError.one(src.loc_of(engine_path + ("timing",)), f"fleet[{i}].serve.engine.timing",
                                str(exc)) from None
    dep.timing = timed.label
    dep.engine = engines.describe(choice)
    dep.assumptions.extend(notes + timed.notes)
    pool = pool.model_copy(update={"serve": serve.model_copy(update={"engine": engine, "kv_precision": kv_precision})})
    return ResolvedPool(pool, dev_key, model_key, dep)


def _engine_choice(serve, device, model, src, path) -> engines.Choice:
    """The pool's engine preset; an unknown version is an error at its line."""
    engine = serve.engine
    framework = engines.framework_for(engine, device)
    if engine.version is not None and engine.version not in engines.versions(framework):
        raise ScenarioError.one(src.loc_of(path + ("version",)), format_path(path + ("version",)),
                                f"no {framework} preset for version '{engine.version}'; presets: "
                                f"{', '.join(engines.versions(framework))}")
    return engines.choose(engine, device, model, serve.precision, serve.tp, serve.pp)


def _deploy(device, model, serve, engine, kv_precision, dev_key, model_key, src, i):
    limits = EngineLimits(block_size=engine.block_size, memory_utilization=engine.memory_utilization,
                          max_batch_tokens=engine.max_batch_tokens, max_batch_seqs=engine.max_batch_seqs,
                          iteration_overhead=engine.iteration_overhead or 0.0,
                          activation_reserve=engine.activation_reserve, tree_allreduce=engine.allreduce == "tree",
                          memory_of=engine.memory_of)
    try:
        return deploy(device, model, serve.precision, kv_precision, serve.tp, limits, dev_key, model_key, serve.pp,
                      serve.ep)
    except DeploymentError as exc:
        raise ScenarioError.one(src.loc_of(("fleet", i, "serve")), f"fleet[{i}].serve", str(exc)) from None


def _catalog_spec(cls, key: str, raw: dict, what: str):
    loader = catalog.device_loc if what == "device" else catalog.model_loc
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = err["loc"][0] if err["loc"] else None
            problems.append(Problem(loader(key, field), f"{what}s.{key}.{format_path(tuple(err['loc']))}", err["msg"]))
        raise ScenarioError(problems) from None


def _check_topology(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
    needed = sharing.accelerators_needed(spec)
    return [Problem(src.loc_of(("topology",) + path), format_path(("topology",) + path), message)
            for path, message in validate_topology(spec.topology, needed)]


__all__ = ["load_scenario", "variant_names", "Scenario", "ScenarioSpec", "ResolvedPool", "Stream", "validate"]
