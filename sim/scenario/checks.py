"""Checks across sections that the schema alone cannot express, each a list of problems at file:line."""
from __future__ import annotations

from ..catalog.models import ModelSpec, a_kind
from ..demand.media import media_field
from ..demand.streams import Stream
from ..fabric.topology import validate_topology
from ..ops.failures import Components
from ..serving import sharing
from ..serving.placement import place
from ..spec import limits, source
from ..spec.errors import Problem, did_you_mean, format_path
from .resolved import ResolvedPool, Scenario
from .schema import ScenarioSpec

MEDIA_FIELD = {"speech_to_text": "audio_seconds", "text_to_speech": "audio_seconds", "image": "image",
               "video": "video"}


MEDIA_HINT = {"audio_seconds": "audio_seconds: (seconds of audio per request, e.g. 30s or {dist: lognormal, "
                                "mean: 8s, cv: 1})",
              "image": "image: {width: 1024, height: 1024}", "video": "video: {width: 1280, height: 720, frames: 81}"}


def check_modalities(spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source) -> list[Problem]:
    """Each stream describes its requests the way its model's modality needs (sim.demand.media), and
    pools serving a diffusion model run an engine that can."""
    models = {p.model_key: p.deployment.model for p in pools}
    problems = check_modality_engines(spec, pools, sorted(models), src)
    for i, stream in enumerate(spec.workload):
        problems.extend(check_stream_media(i, stream, models, pools, src))
    return problems


def check_modality_engines(spec: ScenarioSpec, pools: list[ResolvedPool], served: list[str],
                           src: source.Source) -> list[Problem]:
    """Pools serving a diffusion transformer or an encoder leave off the engine features that
    cannot apply to it (chunked prefill, prefix caching, roles, priority classes)."""
    problems = []
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
    return problems


def check_stream_media(i: int, stream: Stream, models: dict[str, ModelSpec], pools: list[ResolvedPool],
                       src: source.Source) -> list[Problem]:
    """Stream i gives the media field its model's modality takes (and only it); a session
    calls text and embedding models only."""
    problems = []
    field = media_field(stream)
    if stream.session is not None:
        for name in sorted((stream.session.models() | {stream.session.model}) - {None}):
            kind = models[name].modality if name in models else "text"
            if kind not in ("text", "embedding"):
                problems.append(Problem(src.loc_of(("workload", i, "session")), f"workload[{i}].session",
                                        f"sessions call text and embedding models; {name} is {a_kind(kind)} model"))
        return problems
    key = stream.model or (next(iter(models)) if len(models) == 1 else None)
    if key not in models:
        return problems   # reported above
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
        return problems
    if field is None:
        if expect is not None and kind != "text_to_speech":
            problems.append(Problem(where, name, f"{key} is {a_kind(kind)} model: give {MEDIA_HINT[expect]}; "
                                                 f"its requests' token counts are derived from it"))
        return problems
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
        problems.extend(check_diffusion_stream(i, stream, key, model, pools, src))
    return problems


def check_diffusion_stream(i: int, stream: Stream, key: str, model: ModelSpec, pools: list[ResolvedPool],
                            src: source.Source) -> list[Problem]:
    """A request must fit one batch of every pool that serves its model."""
    problems = []
    d = model.diffusion
    req = stream.image if model.modality == "image" else stream.video
    field = "image" if model.modality == "image" else "video"
    if field == "video" and (req.frames - 1) % d.frames_per_latent:
        problems.append(Problem(src.loc_of(("workload", i, "video", "frames")), f"workload[{i}].video.frames",
                                f"{key} compresses {d.frames_per_latent} frames into a latent frame after the first: "
                                f"frames must be {d.frames_per_latent}n + 1 "
                                f"(e.g. {req.frames - (req.frames - 1) % d.frames_per_latent})"))
    samples = req.images if field == "image" else 1
    tokens = d.latent_tokens(req.width, req.height, getattr(req, "frames", 1)) * samples * d.cfg_passes
    for pool in pools:
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
                                    f"more than pool {pool.name}'s engine.max_batch_tokens "
                                    f"({engine.max_batch_tokens:,}); raise it (it sizes the activation reserve)"))
    return problems


def check_sessions(spec: ScenarioSpec, served: set[str], src: source.Source) -> list[Problem]:
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


def check_tenants(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
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


def check_failures(spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source) -> list[Problem]:
    """Failure targets name components the fleet has; failed replicas' requests can go elsewhere."""
    if spec.failures is None:
        return []
    scenario = Scenario(spec, pools, src, "")
    problems = [Problem(src.loc_of(path), format_path(path), message)
                for path, message in Components(scenario, place(scenario)).problems(spec.failures)]
    for i, pool in enumerate(spec.fleet):
        if pool.serve.role != "both":
            path = ("fleet", i, "serve", "role")
            problems.append(Problem(src.loc_of(path), format_path(path), "failures: with disaggregated prefill/decode "
                                    "pools are not modelled in this version (a KV transfer to a failed replica)"))
    return problems


def check_autoscale(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
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


def check_admission(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
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
                                    + did_you_mean(limit.tenant, tenants,
                                                   "tenants (a stream's tenant:, else its name)")))
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


def check_roles(spec: ScenarioSpec, pools: list[ResolvedPool], src: source.Source) -> list[Problem]:
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


def check_sizes(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
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


def check_topology(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
    needed = sharing.accelerators_needed(spec)
    return [Problem(src.loc_of(("topology",) + path), format_path(("topology",) + path), message)
            for path, message in validate_topology(spec.topology, needed)]
