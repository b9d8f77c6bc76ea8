"""The scenario reference: every section a scenario file may hold, walked from the schema's
root model, one table per section (field, type, unit, default, meaning).

Meanings are the fields' `Field(description=...)`, so the reference cannot disagree with
the code that reads the file.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..catalog.engines import ENGINE_FIELDS
from ..catalog.hardware import DeviceSpec
from ..catalog.models import ModelSpec
from ..demand.distributions import KINDS, FixedLength
from ..scenario.schema import Engine, Pool, ScenarioSpec, Serve
from ..spec import source
from ..spec.slo import SLO_METRICS, SLO_STATS, Slo
from . import field_types
from .markdown import anchor, code, table

# `device:` and `model:` are a catalog name or a mapping; the schema takes them as they are
# and sim.scenario.resolve validates the mapping against these models after the catalog
# lookup, so the walk steps into them here.
INLINE = {(Pool, "device"): DeviceSpec, (Serve, "model"): ModelSpec}
INLINE_TYPE = "catalog name, or a mapping"

# Read by sim.spec.source before the schema sees the file, so no model holds them.
SOURCE_FIELDS = [
    ("variants", "map of name to mapping", "none",
     "alternatives to the base scenario, each replacing the top-level fields it writes (e.g. `fleet:`); "
     "`dcsim run --variant NAME` runs one, `dcsim compare` runs them all"),
]

DISTRIBUTIONS_ANCHOR = "distributions"


@dataclass
class Section:
    path: str                                  # where it first appears, e.g. fleet[].serve.engine
    model: type[BaseModel]
    kind: str | None = None                    # its `kind:` where a union of models tells them apart
    also: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return anchor(self.path + (f" {self.kind}" if self.kind else "")) or "top-level"

    @property
    def title(self) -> str:
        where = code(self.path) if self.path else "Top level"
        return where + (f" (`kind: {self.kind}`)" if self.kind else "")


@dataclass
class Walk:
    sections: list[Section] = field(default_factory=list)
    distributions: list[type[BaseModel]] = field(default_factory=list)   # every {dist: ...} kind met
    by_model: dict = field(default_factory=dict)

    def link(self, model) -> str | None:
        section = self.by_model.get(model)
        return section.anchor if section is not None else None


def walk() -> Walk:
    """Every model a scenario file reaches, each documented at the shortest path it appears
    at (so the top-level `slo:` is where the SLO's fields are, not a stream's `slo:`), in the
    order a reader meets them: a section, then the sections below it."""
    out = Walk()
    paths = _paths()
    first = {model: found[0] for model, found in paths.items()}
    _emit(ScenarioSpec, "", None, first, out)
    for section in out.sections:
        section.also = [p for p in dict.fromkeys(paths[section.model]) if p != section.path]
    return out


def _children(model) -> list[tuple[str, type[BaseModel], str | None]]:
    """(path step, model, kind) for each model a model's fields hold, in field order."""
    out = []
    for name, info in model.model_fields.items():
        step = name + ("[]" if field_types.is_list(info.annotation) else "")
        inline = INLINE.get((model, name))
        kinds = field_types.discriminated_kinds(info.annotation)
        if inline is not None:
            out.append((step, inline, None))
        elif kinds is not None:
            out += [(step, member, value) for value, member in kinds]
        else:
            out += [(step, child, None) for child in field_types.models_in(info.annotation)]
    return out


def _paths() -> dict:
    """Model -> the paths it appears at inside the sections that document their models, the
    shortest (fewest steps, then field order) first; a breadth-first walk from the root."""
    found = {ScenarioSpec: [""]}
    level = [(ScenarioSpec, "")]
    while level:
        below = []
        for model, path in level:
            for step, child, _ in _children(model):
                child_path = f"{path}.{step}" if path else step
                if _is_distribution(child):       # documented apart; look inside (mixture parts)
                    if (child, child_path) not in below and child not in found:
                        found[child] = [child_path]
                        below.append((child, child_path))
                    continue
                if child not in found:
                    below.append((child, child_path))
                found.setdefault(child, []).append(child_path)
        level = below
    return found


def _emit(model, path: str, kind: str | None, first: dict, out: Walk) -> None:
    if _is_distribution(model):      # a {dist: ...} kind: one shared section for them all
        if model not in out.distributions:
            out.distributions.append(model)
            for _, child, _ in _children(model):
                _emit(child, path, None, first, out)
        return
    if model in out.by_model or first.get(model) != path:
        return      # documented once, at its first path (met there, or met already)
    section = Section(path, model, kind)
    out.sections.append(section)
    out.by_model[model] = section
    for step, child, child_kind in _children(model):
        _emit(child, f"{path}.{step}" if path else step, child_kind, first, out)


def _is_distribution(model) -> bool:
    return getattr(model, "quantity", None) is not None


def reachable_fields() -> list[tuple[str, FieldInfo]]:
    """(`path.field`, its FieldInfo) for every field of every reachable model (the
    distributions' kinds included): what the reference documents."""
    w = walk()
    out = [(f"{s.path}.{n}" if s.path else n, f) for s in w.sections for n, f in _own_fields(s, w).items()]
    out += [(f"{{dist: {_kind_of(m)}}} ({m.quantity.name}).{n}", f)
            for m in w.distributions for n, f in m.model_fields.items()]
    return out


# ---- Markdown ------------------------------------------------------------------------------

def markdown() -> str:
    w = walk()
    parts = [_section(s, w) for s in w.sections]
    parts.append(_distributions(w))
    return "\n\n".join(parts) + "\n"


def _section(s: Section, w: Walk) -> str:
    lines = [f"### {s.title} {{#{s.anchor}}}", ""]
    doc = _intro(s.model)
    if doc:
        lines += [doc, ""]
    parent = _documented_base(s, w)
    if parent is not None:
        lines += [f"Every field of [{parent.title}](#{parent.anchor}), and these:", ""]
    if s.also:
        lines += ["Also at: " + ", ".join(code(p) for p in s.also) + ".", ""]
    if s.model is Slo:
        lines.append(_slo_table())
        return "\n".join(lines)
    rows = [_row(s, name, info, w) for name, info in _own_fields(s, w).items()]
    if s.model is ScenarioSpec:
        rows += [[code(n), t, "", d, m] for n, t, d, m in SOURCE_FIELDS]
    lines.append(table(["field", "type", "unit", "default", "meaning"], rows))
    return "\n".join(lines)


def _row(s: Section, name: str, info: FieldInfo, w: Walk) -> list[str]:
    inline = INLINE.get((s.model, name))
    if inline is not None:
        shape = field_types.Shape(f"{INLINE_TYPE} ([fields](#{w.link(inline)}))")
    else:
        shape = field_types.shape(info.annotation, info.metadata, w.link)
    text = shape.text
    if not s.path and name in source.FILE_REFERENCE_KEYS:
        text += ", or the path of a file holding it"
    default = field_types.default_text(info, shape.kind)
    if s.model is Engine and name in ENGINE_FIELDS:
        default = "the [engine preset](catalog.md#engine-presets)"
    if s.kind is not None and name == "kind":
        default = code(s.kind)
    return [code(name), text, shape.unit, default, info.description or ""]


def _own_fields(s: Section, w: Walk) -> dict[str, FieldInfo]:
    """The section's fields, less those of a documented base model (listed there)."""
    parent = _documented_base(s, w)
    inherited = set(parent.model.model_fields) - {"kind"} if parent is not None else set()
    return {n: f for n, f in s.model.model_fields.items() if n not in inherited}


def _documented_base(s: Section, w: Walk) -> Section | None:
    for base in s.model.__mro__[1:]:
        if base in w.by_model:
            return w.by_model[base]
    return None


def _intro(model) -> str:
    """The model's own docstring, first paragraph (a model without one inherits none)."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _slo_table() -> str:
    """Slo collects `<metric>_<stat>` keys into its targets (sim.spec.slo), so its fields are
    those names rather than the model's."""
    meaning = {"ttft": "time to first token", "tpot": "time per output token after the first",
               "e2e": "end to end: arrival to last token", "queue_wait": "arrival to admission into a batch"}
    rows = [[code(f"{m}_<stat>"), "duration > 0", "s", "none",
             f"target for the {' | '.join(SLO_STATS)} of {meaning.get(m, m)}"] for m in SLO_METRICS]
    return table(["field", "type", "unit", "default", "meaning"], rows)


def _kind_of(model) -> str:
    return typing.get_args(model.model_fields["dist"].annotation)[0]


def _distributions(w: Walk) -> str:
    """One table per kind of `{dist: ...}`, from the token-count family; the duration
    families take the same fields in durations."""
    lines = [f"### Distributions {{#{DISTRIBUTIONS_ANCHOR}}}", "",
             "A random quantity is a bare value (fixed) or a mapping with `dist:` naming its kind. "
             "Token counts take whole numbers >= 1; durations (tool delays, service times, seconds of "
             "audio) take durations, e.g. `{dist: exponential, mean: 0.8s}`.", ""]
    token_kinds = [m for m in w.distributions if m.quantity is FixedLength.quantity]
    for model in sorted(token_kinds, key=lambda m: KINDS.index(_kind_of(m))):
        kind = _kind_of(model)
        lines += [f"#### `dist: {kind}`", ""]
        doc = _intro(model)
        if doc:
            lines += [doc, ""]
        rows = [[code(n), field_types.shape(f.annotation, f.metadata, w.link).text,
                 field_types.default_text(f) if n != "dist" else code(kind), f.description or ""]
                for n, f in model.model_fields.items()]
        lines += [table(["field", "type", "default", "meaning"], rows), ""]
    return "\n".join(lines).rstrip()
