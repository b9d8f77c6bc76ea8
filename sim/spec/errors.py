"""Errors a user can act on: file, line, field, what is wrong and what would be valid."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """Where a value came from: a file and a 1-based line (0 when unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Problem:
    loc: Loc | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class ScenarioError(Exception):
    """One or more problems with a scenario and the files it includes."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, loc: Loc | None, field: str, message: str) -> ScenarioError:
        return cls([Problem(loc, field, message)])


def did_you_mean(word: str, choices: Iterable[str], what: str = "") -> str:
    """' did you mean X? valid: a, b, c' — the tail of an 'unknown name' message."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(choices) if len(choices) <= 40 else ", ".join(choices[:40]) + ", ..."
    label = f"valid {what}" if what else "valid"
    return (f"{hint} " if hint else "; ") + f"{label}: {listing}" if listing else hint


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
