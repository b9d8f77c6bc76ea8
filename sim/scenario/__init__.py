"""Scenario files: schema, catalog resolution and checks, with errors at file:line:field.

`load_scenario(path, overrides)` is the one entry point: it reads the YAML (with includes),
applies `--set` overrides, validates the schema, resolves catalog names and inline
definitions, and checks that each pool's model fits its devices. It returns a `Scenario`
whose pools carry a resolved `Deployment`; nothing reads YAML after it returns.

The sections and their fields are in `schema`, name resolution against the catalog in
`resolve`, checks across sections in `checks`, and the loaded `Scenario` in `resolved`.
"""
from __future__ import annotations

import os

from ..catalog import economics
from ..demand import trace_file
from ..demand.streams import Stream
from ..serving import sharing
from ..spec import source
from ..spec.errors import Loc, Problem, ScenarioError, did_you_mean
from ..spec.validate import validate
from ..timing import calibration
from . import examples
from .checks import (
    check_admission,
    check_autoscale,
    check_failures,
    check_modalities,
    check_roles,
    check_sessions,
    check_sizes,
    check_tenants,
    check_topology,
)
from .resolve import resolve_pool
from .resolved import ResolvedPool, Scenario
from .schema import ScenarioSpec


def load_scenario(path: str, overrides: list[str] | tuple[str, ...] = (), variant: str | None = None) -> Scenario:
    """A scenario file, with variant `variant` applied (None: the base scenario); a bare name
    such as "quickstart" is the example scenario of that name (`examples`)."""
    path = examples.path_of(path)
    src = source.load(path)
    src.select_variant(variant)
    return scenario_from_source(src, overrides, path)


def variant_names(path: str) -> list[str]:
    """The variants a scenario file defines (`variants:`), in file order."""
    return source.load(path).variants()


def scenario_from_source(src: source.Source, overrides=(), path: str = "") -> Scenario:
    """A scenario from YAML already read (a whole file, or a `Source.subtree` of one)."""
    if not isinstance(src.data, dict):
        raise ScenarioError.one(Loc(src.root, 1), "",
                                "a scenario file must be a mapping of fields (name:, fleet:, ...)")
    for assignment in overrides:
        src.override(assignment)
    sharing.inherit(src)
    spec = validate(ScenarioSpec, src.data, src)
    pools = _resolve_pools(spec, src)
    names = [p.pool for p in spec.fleet]
    if spec.calibration is not None:
        overlay = calibration.load(spec.calibration, src.loc_of(("calibration",)))
        notes = calibration.apply(overlay, os.path.basename(spec.calibration), pools)
        for p in pools:
            p.deployment.assumptions.extend(notes)
    # the pools as they run: engine fields their presets filled in, the KV precision chosen
    spec = spec.model_copy(update={"fleet": [p.spec for p in pools]})
    problems = _check_sections(spec, pools, names, src)
    if problems:
        raise ScenarioError(problems)
    problems.extend(check_failures(spec, pools, src))
    if problems:
        raise ScenarioError(problems)
    scenario = Scenario(spec, pools, src, path)
    scenario.pricing = pricing_basis(scenario, spec.economics.pricing, src)
    return scenario


def _resolve_pools(spec: ScenarioSpec, src: source.Source) -> list[ResolvedPool]:
    """Each pool resolved against the catalog, its names unique; every problem at once."""
    problems: list[Problem] = []
    pools = []
    for i, pool in enumerate(spec.fleet):
        try:
            pools.append(resolve_pool(pool, i, src, spec.topology))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    names = [p.pool for p in spec.fleet]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append(Problem(src.loc_of(("fleet", i, "pool")), f"fleet[{i}].pool",
                                    f"duplicate pool name '{name}'"))
    if problems:
        raise ScenarioError(problems)
    return pools


def _check_sections(spec: ScenarioSpec, pools: list[ResolvedPool], names: list[str],
                    src: source.Source) -> list[Problem]:
    """The checks across sections, in order; an invalid topology is raised at once, with the
    problems found before it."""
    served = {p.model_key for p in pools}
    problems = _check_streams(spec, served, src)
    problems.extend(check_roles(spec, pools, src))
    problems.extend(check_tenants(spec, src))
    problems.extend(check_admission(spec, src))
    problems.extend(check_autoscale(spec, src))
    problems.extend(check_sessions(spec, served, src))
    problems.extend(check_modalities(spec, pools, src))
    problems.extend(sharing.check(spec, pools, src))
    for name in spec.router.weights or {}:
        if name not in names:
            problems.append(Problem(src.loc_of(("router", "weights", name)), f"router.weights.{name}",
                                    f"no pool '{name}'" + did_you_mean(name, names, "pools")))
    problems.extend(check_sizes(spec, src))
    # the checks below build the topology's graph: an invalid topology is reported first
    topology_problems = check_topology(spec, src) if spec.topology is not None else []
    if topology_problems:
        raise ScenarioError(problems + topology_problems)
    problems.extend(_check_fabric_needs(spec, src))
    return problems


def _check_streams(spec: ScenarioSpec, served: set[str], src: source.Source) -> list[Problem]:
    """Each stream asks for a model the fleet serves, and its trace file exists and reads."""
    problems: list[Problem] = []
    for i, stream in enumerate(spec.workload):
        if stream.model is None and len(served) > 1 and not (stream.session and stream.session.names_every_model()):
            problems.append(Problem(src.loc_of(("workload", i)), f"workload[{i}]",
                                    "name the model this stream asks for; the fleet serves "
                                    + ", ".join(sorted(served))))
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
    return problems


def _check_fabric_needs(spec: ScenarioSpec, src: source.Source) -> list[Problem]:
    """Ingress and weights loaded from elsewhere need a topology, with the node or storage they name."""
    problems: list[Problem] = []
    if spec.ingress is not None:
        if spec.topology is None:
            problems.append(Problem(src.loc_of(("ingress",)), "ingress", "ingress needs topology: to carry requests"))
        elif spec.ingress.node not in spec.topology.graph():
            nodes = [n for n, d in spec.topology.graph().nodes(data=True)
                     if d.get("kind") in ("switch", "storage", "cpu")]
            problems.append(Problem(src.loc_of(("ingress", "node")), "ingress.node",
                                    f"no node '{spec.ingress.node}' in the topology"
                                    + did_you_mean(spec.ingress.node, nodes, "nodes")))
    for i, pool in enumerate(spec.fleet):
        where = src.loc_of(("fleet", i, "serve", "weights"))
        if pool.serve.weights != "preloaded" and spec.topology is None:
            problems.append(Problem(where, f"fleet[{i}].serve.weights", f"loading weights from {pool.serve.weights} "
                                    f"moves them over the fabric: add topology:"))
        elif pool.serve.weights == "storage" and not any(
                d.get("kind") == "storage" for _, d in spec.topology.graph().nodes(data=True)):
            problems.append(Problem(where, f"fleet[{i}].serve.weights", "the topology has no storage node; "
                                    "add storage to its builder or a node of kind storage"))
    return problems


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


__all__ = ["load_scenario", "variant_names", "Scenario", "ScenarioSpec", "ResolvedPool", "Stream", "validate"]
