"""A scenario field's type as a user writes it (`duration`, `int >= 1`, one of `a` | `b`),
read from its pydantic annotation, and its default in the same words.

The unit types of `sim.spec.base` (Seconds, PerSecond, Bytes, ...) are plain floats to
pydantic; what marks each is the parser its BeforeValidator wraps, so the parser is what
names the type here.
"""
from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..spec import base, units
from .markdown import code

# each unit parser: the type's name in the reference and the SI unit the value is read in
UNIT_TYPES = {
    units.parse_duration: ("duration", "s"),
    units.parse_rate: ("rate", "1/s"),
    units.parse_bytes: ("bytes", "B"),
    units.parse_bandwidth: ("bandwidth", "B/s"),
    units.parse_power: ("power", "W"),
    units.parse_flops: ("compute", "FLOP/s"),
}
PLAIN = {int: "int", float: "number", str: "text", bool: "`true` | `false`"}
# upper bounds from here up guard against typos (a billion-token prompt), not a real range:
# the reference leaves them out, as a reader never meets them
SANITY_BOUND = 1_000_000


@dataclass(frozen=True)
class Shape:
    text: str              # Markdown: what a user writes
    unit: str = ""         # the SI unit a unit type is read in, else ""
    kind: str = ""         # the unit type's name ("duration", ...), for the default's wording


def models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation holds, in order (through Optional, Union,
    list, dict and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        for m in models_in(arg):
            if m not in out:
                out.append(m)
    return out


def distribution_family(annotation) -> str | None:
    """'Length', 'Delay' or 'Seconds' where the annotation is one of the `{dist: ...}`
    families of sim.demand.distributions (its kinds carry their `quantity`)."""
    members = models_in(annotation)
    quantities = {getattr(m, "quantity", None) for m in members}
    if members and len(quantities) == 1 and None not in quantities:
        return next(iter(quantities)).name
    return None


def is_list(annotation) -> bool:
    """Whether a field holds a list (its path in the reference ends in `[]`)."""
    inner = _strip_optional(_collect(annotation, [])[0])
    origin = typing.get_origin(inner)
    return origin is list or (origin is tuple and typing.get_args(inner)[-1:] == (Ellipsis,))


def discriminated_kinds(annotation) -> list[tuple[str, type[BaseModel]]] | None:
    """[(kind, model), ...] where the annotation is a union of models told apart by `kind`."""
    members = models_in(_strip_optional(_unannotated(annotation)))
    if len(members) < 2 or not all("kind" in m.model_fields for m in members):
        return None
    out = []
    for m in members:
        args = typing.get_args(m.model_fields["kind"].annotation)
        if len(args) != 1:
            return None
        out.append((args[0], m))
    return out


def shape(annotation, metadata: list, link: Callable[[type[BaseModel]], str | None]) -> Shape:
    """How a field of this annotation and constraint metadata is written; `link(model)` gives
    the anchor of a model's section (or None)."""
    annotation, metadata = _collect(annotation, list(metadata))
    annotation = _strip_optional(annotation)
    listed = typing.get_origin(annotation) in (list, tuple, dict)
    if not listed and distribution_family(annotation) is not None:
        return _distribution(distribution_family(annotation))
    unit = _unit_type(metadata)
    if unit is not None:
        name, si = unit
        return Shape(_bounded(name, metadata), si, name)
    if _is_name(metadata):
        return Shape("name")
    return Shape(_plain(annotation, metadata, link))


def _plain(annotation, metadata: list, link) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return "any"
    if origin is Literal and len(args) == 1:
        return code(args[0])
    if origin is Literal:
        return "one of " + " | ".join(code(a) for a in args)
    if origin in (Union, types.UnionType):
        kinds = discriminated_kinds(annotation)
        if kinds is not None:
            return "mapping, by `kind`: " + ", ".join(_linked(code(k), m, link) for k, m in kinds)
        return " or ".join(_inner(a, link) for a in args if a is not type(None))
    if origin in (list, tuple):
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            return "[" + ", ".join(_inner(a, link) for a in args) + "]"
        element = _inner(args[0], link)
        return "list of " + (f"({element})" if " or " in element else element)
    if origin is dict:
        key = _inner(args[0], link)
        key = f"({key[len('one of '):]})" if key.startswith("one of ") else key
        return f"map of {key} to {_inner(args[1], link)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _linked("mapping", annotation, link)
    if annotation in PLAIN:
        return _bounded(PLAIN[annotation], metadata)
    return getattr(annotation, "__name__", str(annotation))


def _inner(annotation, link) -> str:
    """The shape of a type inside a list, map or union (its own Annotated metadata kept)."""
    inner, metadata = _collect(annotation, [])
    family = distribution_family(inner)
    if family is not None:
        return _distribution(family).text
    unit = _unit_type(metadata)
    if unit is not None:
        return unit[0]
    return _plain(_strip_optional(inner), metadata, link)


def _linked(text: str, model, link) -> str:
    target = link(model)
    return f"[{text}](#{target})" if target else text


def _distribution(family: str) -> Shape:
    if family == "Length":      # token counts, and other whole counts (rounds, tool calls)
        return Shape("int >= 1 or [a distribution](#distributions)")
    return Shape("duration or [a distribution](#distributions)", "s", "duration")


def _bounded(name: str, metadata: list) -> str:
    """`name` with its bounds: `int >= 1`, `number in (0, 1]`."""
    low = high = None
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            low = ("[", ">=", m.ge)
        elif isinstance(m, annotated_types.Gt):
            low = ("(", ">", m.gt)
        elif isinstance(m, annotated_types.Le) and m.le < SANITY_BOUND:
            high = ("]", "<=", m.le)
        elif isinstance(m, annotated_types.Lt):
            high = (")", "<", m.lt)
    if low and high:
        return f"{name} in {low[0]}{_num(low[2])}, {_num(high[2])}{high[0]}"
    if low:
        return f"{name} {low[1]} {_num(low[2])}"
    if high:
        return f"{name} {high[1]} {_num(high[2])}"
    return name


def _num(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _collect(annotation, metadata: list) -> tuple[Any, list]:
    """The annotation without its Annotated layers, and every constraint and validator they
    held (FieldInfo layers unpacked), added to `metadata`."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            inner, *extra = typing.get_args(annotation)
            for e in extra:
                metadata.extend(e.metadata if isinstance(e, FieldInfo) else [e])
            annotation = inner
            continue
        stripped = _strip_optional(annotation)
        if stripped is not annotation and typing.get_origin(stripped) is typing.Annotated:
            annotation = stripped
            continue
        return annotation, metadata


def _unannotated(annotation):
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _strip_optional(annotation):
    """X for `X | None`; the annotation itself otherwise."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
        if len(rest) < len(typing.get_args(annotation)):
            return Union[tuple(rest)]  # noqa: UP007 -- a tuple built at run time, which `X | Y` cannot spell
    return annotation


def _validators(metadata: list):
    return [m.func for m in metadata if isinstance(m, BeforeValidator)]


def _unit_type(metadata: list) -> tuple[str, str] | None:
    for func in _validators(metadata):
        for cell in func.__closure__ or ():
            try:
                parser = cell.cell_contents
            except ValueError:      # an empty cell
                continue
            if parser in UNIT_TYPES:
                return UNIT_TYPES[parser]
    return None


def _is_name(metadata: list) -> bool:
    return base._name in _validators(metadata)


# ---- defaults ------------------------------------------------------------------------------

def default_text(field: FieldInfo, kind: str = "") -> str:
    """The field's default as a user would write it: `required`, `none`, `15s`, `0.9`."""
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    return written(value, kind)


def written(value, kind: str = "") -> str:
    if value == "":
        return '`""`'
    if value is None or value == [] or value == {} or value == ():
        return "none"
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, BaseModel):
        return _model_default(value)
    if isinstance(value, (int, float)) and kind:
        return code(_with_unit(float(value), kind))
    if isinstance(value, float) and value.is_integer():
        return code(f"{value:g}")
    return code(value)


def _model_default(value: BaseModel) -> str:
    """A nested section's default: a fixed distribution as its shorthand (`1`); any other
    section's default is its own fields' defaults."""
    if getattr(value, "dist", None) == "fixed":
        return code(value.value)
    return "see its fields"


def _with_unit(x: float, kind: str) -> str:
    """A value in SI as a scenario would write it: 300 -> 5min, 450e9 -> 450GB/s."""
    if kind == "duration":
        if x == 0:
            return "0s"
        for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if abs(x) >= size and round(x / size, 6) == int(round(x / size, 6)):
                return f"{x / size:g}{unit}"
        return f"{x:g}s"
    if kind == "bytes":
        for unit, size in (("GiB", 2.0 ** 30), ("MiB", 2.0 ** 20), ("KiB", 2.0 ** 10)):
            if x >= size and x % size == 0:
                return f"{x / size:g}{unit}"
        return _decimal(x, "B")
    suffix = {"rate": "/s", "bandwidth": "B/s", "power": "W", "compute": "FLOP/s"}[kind]
    if kind == "rate":
        return f"{x:g}/s"
    return _decimal(x, suffix)


def _decimal(x: float, unit: str) -> str:
    for prefix, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:g}{prefix}{unit}"
    return f"{x:g}{unit}"
