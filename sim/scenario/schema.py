"""The scenario's schema: the sections of a scenario file and their fields."""
from __future__ import annotations

from typing import Any, Literal
from pydantic import Field, field_validator, model_validator

from ..catalog.hardware import Precision
from ..catalog.partition import Partition
from ..demand.sessions import Service
from ..demand.streams import Stream
from ..fabric.topology import TopologySpec
from ..ops.admission import AdmissionSpec
from ..ops.autoscaler import AutoscaleSpec
from ..ops.failures import FailureSpec
from ..spec.base import Bytes, Name, Seconds, Spec, Watts
from ..spec.slo import Slo


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
