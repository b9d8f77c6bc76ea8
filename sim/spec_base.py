"""Base for every spec read from YAML: frozen, unknown fields rejected with a did-you-mean."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from . import units
from .errors import did_you_mean


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any):
        if isinstance(data, dict):
            valid = set(cls.model_fields)
            valid |= {f.alias for f in cls.model_fields.values() if f.alias}
            for key in data:
                if key not in valid:
                    raise PydanticCustomError(
                        "unknown_field", "unknown field '{field}'{hint}",
                        {"field": key, "hint": did_you_mean(str(key), valid, "fields")},
                    )
        return data


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
