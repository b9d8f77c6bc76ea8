"""Catalog names and inline definitions resolved into devices, models, engines and deployments."""
from __future__ import annotations

from pydantic import ValidationError

from .. import catalog, timing
from ..catalog import engines
from ..catalog.hardware import DeviceSpec
from ..catalog.models import ModelSpec
from ..serving import sharing
from ..spec import source
from ..spec.errors import Problem, ScenarioError, did_you_mean, format_path
from ..spec.validate import validate
from ..timing.deployment import DeploymentError, EngineLimits, deploy
from .resolved import ResolvedPool
from .schema import Pool


def catalog_entry(ref, entries: dict, what: str, loc_path: tuple, src: source.Source) -> tuple[str, dict]:
    """Resolve a catalog name, or an inline mapping with an optional `base:` name to override."""
    field = format_path(loc_path)
    if isinstance(ref, str):
        if ref not in entries:
            raise ScenarioError.one(src.loc_of(loc_path), field,
                                    f"unknown {what} '{ref}'" + did_you_mean(ref, entries, f"{what}s"))
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


def resolve_pool(pool: Pool, i: int, src: source.Source, topology=None) -> ResolvedPool:
    dev_path, model_path = ("fleet", i, "device"), ("fleet", i, "serve", "model")
    dev_key, dev_raw = catalog_entry(pool.device, catalog.device_entries(), "device", dev_path, src)
    model_key, model_raw = catalog_entry(pool.serve.model, catalog.model_entries(), "model", model_path, src)
    device = (validate(DeviceSpec, dev_raw, src, dev_path) if isinstance(pool.device, dict)
              else catalog_spec(DeviceSpec, dev_key, dev_raw, "device"))
    device, dev_key = sharing.resolve_device(pool, i, device, dev_key, src)
    model = (validate(ModelSpec, model_raw, src, model_path) if isinstance(pool.serve.model, dict)
             else catalog_spec(ModelSpec, model_key, model_raw, "model"))
    serve = pool.serve
    engine_path = ("fleet", i, "serve", "engine")
    choice = engine_choice(serve, device, model, src, engine_path)
    engine = serve.engine.model_copy(update=choice.values)
    notes = list(choice.notes)
    kv_precision = serve.kv_precision
    if kv_precision is None:
        kv_precision, note = engines.kv_precision(choice, serve.precision)
        notes.append(note)
    if engine.chunked_prefill is not None and engine.chunked_prefill > engine.max_batch_tokens:
        raise ScenarioError.one(src.loc_of(engine_path + ("chunked_prefill",)),
                                f"fleet[{i}].serve.engine.chunked_prefill",
                                f"chunked_prefill ({engine.chunked_prefill}) exceeds max_batch_tokens "
                                f"({engine.max_batch_tokens})")
    dep = deploy_pool(device, model, serve, engine, kv_precision, dev_key, model_key, src, i)
    if choice.sglang_seqs:   # SGLang sizes its batch from the KV pool it got
        seqs = engines.sglang_max_running(dep.total_blocks * engine.block_size, model.max_context or 1)
        engine = engine.model_copy(update={"max_batch_seqs": seqs})
        dep = deploy_pool(device, model, serve, engine, kv_precision, dev_key, model_key, src, i)
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


def engine_choice(serve, device, model, src, path) -> engines.Choice:
    """The pool's engine preset; an unknown version is an error at its line."""
    engine = serve.engine
    framework = engines.framework_for(engine, device)
    if engine.version is not None and engine.version not in engines.versions(framework):
        raise ScenarioError.one(src.loc_of(path + ("version",)), format_path(path + ("version",)),
                                f"no {framework} preset for version '{engine.version}'; presets: "
                                f"{', '.join(engines.versions(framework))}")
    return engines.choose(engine, device, model, serve.precision, serve.tp, serve.pp)


def deploy_pool(device, model, serve, engine, kv_precision, dev_key, model_key, src, i):
    limits = EngineLimits(block_size=engine.block_size, memory_utilization=engine.memory_utilization,
                          max_batch_tokens=engine.max_batch_tokens, max_batch_seqs=engine.max_batch_seqs,
                          iteration_overhead=engine.iteration_overhead or 0.0,
                          activation_reserve=engine.activation_reserve, tree_allreduce=engine.allreduce == "tree",
                          custom_allreduce=engine.custom_allreduce, memory_of=engine.memory_of)
    try:
        return deploy(device, model, serve.precision, kv_precision, serve.tp, limits, dev_key, model_key, serve.pp,
                      serve.ep)
    except DeploymentError as exc:
        raise ScenarioError.one(src.loc_of(("fleet", i, "serve")), f"fleet[{i}].serve", str(exc)) from None


def catalog_spec(cls, key: str, raw: dict, what: str):
    loader = catalog.device_loc if what == "device" else catalog.model_loc
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = err["loc"][0] if err["loc"] else None
            problems.append(Problem(loader(key, field), f"{what}s.{key}.{format_path(tuple(err['loc']))}", err["msg"]))
        raise ScenarioError(problems) from None
