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

# Engines run at most a few thousand sequences per iteration; the pool's build tabulates one decode
# step per batch size up to the cap, so an absurd cap would fill memory before the first request
MAX_BATCH_SEQS_LIMIT = 1_000_000


class Engine(Spec):
    framework: Literal["vllm", "sglang", "trtllm", "native"] | None = Field(
        default=None, description="the serving engine whose defaults and measured kernels the pool takes")
    version: str | None = Field(default=None, description="the engine's version (its preset and kernel measurements)")
    timing: Literal["auto", "measured", "analytical"] = Field(
        default="auto", description="where iteration times come from: measured kernels where the device and "
                                    "model have them (auto), required (measured), or the roofline (analytical)")
    batching: Literal["continuous", "static"] = Field(
        default="continuous", description="continuous: sequences join and leave the batch every iteration; "
                                          "static: a batch runs until its longest sequence ends")
    # Fields below that a pool leaves out come from its engine's preset (catalog/engines.yaml)
    max_batch_seqs: int = Field(default=256, ge=1, le=MAX_BATCH_SEQS_LIMIT, description="sequences in one iteration")
    max_batch_tokens: int = Field(default=8192, ge=1, description="tokens in one iteration (the token budget)")
    chunked_prefill: int | None = Field(default=None, ge=1,
                                        description="prefill tokens per iteration; off: whole prompts")
    block_size: int = Field(default=16, ge=1, description="tokens per KV-cache block")
    memory_utilization: float = Field(default=0.9, gt=0, le=1, description="share of memory the engine may use "
                                                                          "(see memory_of)")
    activation_reserve: Bytes | None = Field(default=None, ge=0, description="memory held for activations; none: "
                                                                          "estimated (an assumed: line says how)")
    kv_reservation: Literal["on_demand", "to_completion", "estimated"] = Field(
        default="on_demand", description="on_demand: a sequence takes KV blocks as it grows, and the latest admitted "
                                         "is preempted when they run out (vLLM); to_completion: a request joins "
                                         "only when the cache can hold its whole output too (its output length, as "
                                         "benchmarks set max_tokens), and no running sequence is ever preempted "
                                         "(TensorRT-LLM's GUARANTEED_NO_EVICT); estimated: a request joins only "
                                         "when its prompt and whole output fit beside a share of the decoding "
                                         "requests' remaining output, a share that shrinks while nothing is "
                                         "preempted and jumps when something is (SGLang's new_token_ratio)")
    kv_watermark: float = Field(default=0.0, ge=0, lt=1, description="share of the KV blocks a joining request "
                                                                      "must leave free (vLLM's watermark: 1% in "
                                                                      "its V0 engine, off in V1)")
    batch_size_tuning: bool = Field(
        default=False, description="TensorRT-LLM's dynamic batch size tuning (TensorRT engines): the running batch "
                                   "is capped at what the KV cache holds of requests of the average length, "
                                   "rounded by its batch-size table")
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
    custom_allreduce: bool = Field(
        default=True, description="the engine's own all-reduce kernel for tensor-parallel sums, as vLLM, SGLang and "
                                  "TensorRT-LLM run by default; false: NCCL's (vLLM and SGLang "
                                  "--disable-custom-all-reduce, or an engine without one)")
    tokenize_per_token: Seconds = Field(default=0.0, ge=0,
                                        description="host CPU time to tokenize one prompt token; 0: not modelled")
    detokenize_per_token: Seconds = Field(default=0.0, ge=0,
                                          description="host CPU time to detokenize one output token as it streams; "
                                                      "0: not modelled")
    fast_path: bool = Field(default=True, description="plan many iterations per scheduler call (false: one per "
                                                      "call, for checking); results are identical either way")
    preempt_lower: bool = Field(default=False, description="a waiting request of a higher class preempts "
                                                           "running ones of lower classes to get a slot or KV space")
    prefix_cache: bool = Field(default=False, description="keep finished requests' KV blocks (least recently "
                                                          "used evicted first) for later calls that share the prefix")


class Serve(Spec):
    model: Any = Field(description="the model served: a catalog name, or a mapping of model fields (with "
                                   "`base: NAME` to change some of a catalog model's)")
    precision: Precision = Field(default="bf16", description="weight and GEMM precision; one the device supports")
    kv_precision: Precision | None = Field(default=None, description="KV-cache precision; none: the engine's rule "
                                                                     "(an assumed: line says which)")
    tp: int = Field(default=1, ge=1, description="tensor-parallel degree; divides the model's attention heads")
    pp: int = Field(default=1, ge=1, description="pipeline stages, each of tp devices")
    ep: int = Field(default=1, ge=1, description="expert-parallel ranks: data-parallel attention, experts spread")
    role: Literal["both", "prefill", "decode"] = Field(
        default="both", description="disaggregated serving: pools that only prefill or only decode")
    weights: Literal["preloaded", "host", "storage"] = Field(
        default="preloaded", description="where replicas load their weights from when they start")
    provision: Seconds = Field(default=0.0, ge=0, description="a start after the run began: time to allocate the "
                                                              "node and start the engine, before loading weights")
    engine: Engine = Field(default=Engine(), description="the serving engine and its settings")

    @model_validator(mode="after")
    def _continuous_for_roles(self):
        if self.role != "both" and self.engine.batching != "continuous":
            raise ValueError(f"role: {self.role} needs continuous batching")
        if self.engine.prefix_cache and (self.role != "both" or self.engine.batching != "continuous"):
            raise ValueError("engine.prefix_cache needs continuous batching on a pool with role: both "
                             "(prefill/decode pools do not cache prefixes in this version)")
        return self


class Pool(Spec):
    pool: str = Field(description="the pool's name, in results and in other pools' references")
    device: Any = Field(description="the accelerator: a catalog name, or a mapping of device fields (with "
                                    "`base: NAME` to change some of a catalog device's)")
    count: int = Field(ge=1, description="accelerators in the pool")
    serve: Serve = Field(description="what the pool serves and how")
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
                    "lowest-latency", "lowest-cost", "cache-aware"] = Field(
        default="least-outstanding", description="how a replica is picked among those serving the request's model")
    weights: dict[str, float] | None = Field(default=None, description="weighted: pool name -> share of requests")
    queue_limit: int | None = Field(default=None, ge=0, description="max requests waiting at a replica")
    dispatch: Literal["immediate", "central"] = Field(
        default="immediate", description="immediate: each replica queues its own requests; central: one queue at "
                                         "the router, handed to a replica when it has a free batch slot")
    # cache-aware (after the SGLang model gateway's policy and its defaults): while the load is
    # balanced, the replica whose prefix cache holds most of the prompt, if that is at least
    # cache_threshold of it; else, and whenever the busiest replica has more than
    # balance_abs_threshold and balance_rel_threshold times the idlest's outstanding, the least loaded
    cache_threshold: float = Field(default=0.3, ge=0, le=1, description="cache-aware: share of the prompt a "
                                                                        "replica's cache must hold to be chosen")
    balance_abs_threshold: int = Field(default=64, ge=0, description="cache-aware: the load is unbalanced (the "
                                                                     "least loaded replica wins) when the busiest "
                                                                     "has more than this many outstanding requests "
                                                                     "above the idlest")
    balance_rel_threshold: float = Field(default=1.5, ge=1, description="cache-aware: and more than this many times "
                                                                        "the idlest's outstanding requests")

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

    node: str = Field(description="the topology node where requests enter")
    bytes_per_token: float = Field(default=4.0, gt=0, description="payload per prompt or output token")


class Economics(Spec):
    """One pricing basis for every pool: `own` (list prices of devices and servers, paid off over
    `amortize_years` at an annual `cost_of_capital`, plus electricity) or `rent` (by the hour,
    which already pays for power); `auto`: own when every device has a list price, else rent
    when every one has an hourly price."""

    usd_per_kwh: float = Field(default=0.08, ge=0, description="electricity price, $ per kWh")
    pue: float = Field(default=1.3, ge=1, description="power usage effectiveness: facility power / IT power")
    amortize_years: float = Field(default=4.0, gt=0, description="years over which owned hardware is paid off")
    cost_of_capital: float = Field(default=0.0, ge=0, le=1, description="annual rate, e.g. 0.08; 0: straight line")
    pricing: Literal["auto", "own", "rent"] = Field(
        default="auto", description="own: list prices amortized plus electricity; rent: hourly prices (which pay "
                                    "for power); auto: own when every device has a list price, else rent")
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

    budget: Watts = Field(gt=0, description="the limit: facility power for a datacenter, IT power per rack")
    scope: Literal["datacenter", "rack"] = Field(default="datacenter", description="what the budget limits")
    rack_devices: int | None = Field(default=None, ge=1, description="rack scope: accelerators per rack, "
                                                                     "taken in placement order")
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
    name: Name = Field(description="names the run and its results folder (results/NAME)")
    seed: int = Field(default=0, ge=0, description="one seed for the run; each component draws from its own "
                                                   "stream derived from it")
    duration: Seconds = Field(gt=0, description="window in which requests arrive")
    warmup: Seconds = Field(default=0.0, ge=0, description="arrivals before this are left out of latency "
                                                           "statistics; throughput counts completions after it")
    drain: Seconds | None = Field(default=None, ge=0,
                                  description="time after duration to finish in-flight work; none: until done")
    topology: TopologySpec | None = Field(default=None, description="the interconnect: replicas are placed on its "
                                                                    "accelerators and data moves over it as flows")
    fleet: list[Pool] = Field(min_length=1, description="the pools of accelerators and what each serves")
    router: Router = Field(default=Router(), description="how requests are spread over the replicas")
    admission: AdmissionSpec | None = Field(default=None, description="per-tenant rate limits, load shedding by class")
    ingress: Ingress | None = Field(default=None, description="where requests enter the fabric (needs a topology)")
    workload: list[Stream] = Field(min_length=1, description="the streams of requests")
    services: list[Service] = Field(default_factory=list, description="CPU-side services sessions' tools call")
    slo: Slo = Field(default=Slo(), description="latency targets; the summary says whether they are met")
    economics: Economics = Field(default=Economics(), description="how cost is counted")
    power: PowerBudget | None = Field(default=None, description="a power budget: above it devices are power-capped")
    failures: FailureSpec | None = Field(default=None, description="devices, servers, racks, links and switches "
                                                                   "that fail and are repaired")
    calibration: str | None = Field(default=None, description="overlay written by `dcsim calibrate` (path "
                                                              "relative to this file): factors fitted to your cluster")

    @model_validator(mode="after")
    def _warmup_inside(self):
        if self.warmup >= self.duration:
            raise ValueError(f"warmup ({self.warmup:g}s) must be shorter than duration ({self.duration:g}s)")
        return self
