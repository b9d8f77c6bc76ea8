"""Pydantic's validation errors as problems a user can act on: file, line, field, message."""
from __future__ import annotations

from pydantic import ValidationError

from .errors import Problem, ScenarioError, did_you_mean, format_path
from .source import Source


def validate(cls, data, src: Source, prefix: tuple = ()):
    """Validate `data` against a Spec class, turning pydantic errors into ScenarioError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_problems(exc, src, data, prefix)) from None


def _problems(exc: ValidationError, src: Source, data, prefix: tuple) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        path = _data_path(data, err["loc"])
        if err["type"] == "unknown_field":
            path = path + (err["ctx"]["field"],)
        shown = prefix + path
        if err["type"] == "missing":  # name the missing field; point at its parent's line
            shown = shown + (err["loc"][-1],)
        full = prefix + path
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] in ("literal_error", "union_tag_invalid", "enum"):
            given = err.get("input")
            expected = err.get("ctx", {}).get("expected") or err.get("ctx", {}).get("expected_tags", "")
            choices = [c.strip(" '\"") for c in str(expected).replace(" or ", ",").split(",") if c.strip()]
            if err["type"] == "union_tag_invalid":
                given = err.get("ctx", {}).get("tag", given)
            msg = f"'{given}' is not valid" + did_you_mean(str(given), choices)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(Problem(src.loc_of(full), format_path(shown), msg))
    return out


def _data_path(data, loc) -> tuple:
    """The part of a pydantic error location that names real keys in the data."""
    path, node = [], data
    for part in loc:
        if ((isinstance(node, dict) and part in node)
                or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))):
            path.append(part)
            node = node[part]
    return tuple(path)
