"""Base for every spec read from YAML: frozen, unknown fields rejected with a did-you-mean."""
from __future__ import annotations

import re
import typing
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from . import units
from .errors import did_you_mean


class Spec(BaseModel):
    # NaN and infinity are never a valid figure in a scenario
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any):
        if isinstance(data, dict):
            valid = set(cls.model_fields)
            valid |= {f.alias for f in cls.model_fields.values() if f.alias}
            for key, value in data.items():
                if key not in valid:
                    raise PydanticCustomError(
                        "unknown_field", "unknown field '{field}'{hint}",
                        {"field": key, "hint": did_you_mean(str(key), valid, "fields")},
                    )
                if isinstance(value, bool) and _counts(cls.model_fields.get(key)):
                    raise PydanticCustomError("bool_as_number", "{field}: expected a number, got {value}",
                                              {"field": key, "value": str(value).lower()})
        return data


def _counts(field) -> bool:
    """Whether a field holds a number (so true/false is a mistake, not 1/0)."""
    if field is None:
        return False
    kinds = typing.get_args(field.annotation) or (field.annotation,)
    return any(k in (int, float) for k in kinds) and bool not in kinds


def _name(value):
    if not isinstance(value, str) or not NAME.fullmatch(value) or value != value.strip():
        raise PydanticCustomError("not_a_name", "must be a name, not a path (results go to results/<name>): up to "
                                                "100 characters, no '/' or '\\', not starting with '.' or '-', got "
                                                "{value}", {"value": repr(value)})
    return value


# a folder name on every system: no separators or control characters, not hidden, not a flag
NAME = re.compile(r"[^/\\\x00-\x1f.\-][^/\\\x00-\x1f]{0,99}")
Name = Annotated[str, BeforeValidator(_name)]


MAX_TOKENS = 1_000_000_000    # tokens in one prompt or answer: no model reads or writes a billion
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]


def _unit(parser):
    def parse(value):
        try:
            return parser(value)
        except units.UnitError as exc:
            raise PydanticCustomError("bad_unit", str(exc)) from None
    return BeforeValidator(parse)


Seconds = Annotated[float, _unit(units.parse_duration)]
PerSecond = Annotated[float, _unit(units.parse_rate)]
Bytes = Annotated[float, _unit(units.parse_bytes)]
BytesPerSecond = Annotated[float, _unit(units.parse_bandwidth)]
Watts = Annotated[float, _unit(units.parse_power)]
FlopsPerSecond = Annotated[float, _unit(units.parse_flops)]
