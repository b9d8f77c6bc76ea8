"""The shape of the output declarations in sim.results.columns: a JSON key, a table column,
a file, each with its unit and meaning and when it may be missing."""
from __future__ import annotations

from dataclasses import dataclass

# latency statistics: {p50, p90, p99, mean} in seconds, null where nothing was measured
STATS = "{p50, p90, p99, mean}"


@dataclass(frozen=True)
class Key:
    name: str           # the key's path in its JSON file
    unit: str           # "" for text, flags and objects
    meaning: str
    when: str = ""      # when it may be absent or null ("" : always there)


@dataclass(frozen=True)
class Column:
    name: str
    type: str           # as pandas reads it
    unit: str
    meaning: str
    when: str = ""      # when the column is written ("" : always)


@dataclass(frozen=True)
class OutputFile:
    name: str
    meaning: str
    when: str = ""


def children(keys: tuple[Key, ...], parent: str) -> list[Key]:
    """The declared keys one step below `parent` ("" for the top level; `pools[]` for the
    items of the list `pools`)."""
    prefix = parent + "." if parent else ""
    return [k for k in keys if k.name.startswith(prefix) and "." not in k.name[len(prefix):]]
