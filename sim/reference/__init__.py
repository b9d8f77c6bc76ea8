"""The docs' reference pages, generated from the code they describe.

A page line that is exactly `<!-- generated: NAME -->` is replaced by what generator NAME
returns (`expand`); docs/hooks.py applies it to every page as mkdocs builds the site. An
unknown name is an error, so a typo fails the build instead of leaving a hole in a page.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from . import catalog, cli, limits, live_tables, outputs, scenario_fields

GENERATORS: dict[str, Callable[[], str]] = {
    "scenario-fields": scenario_fields.markdown,
    "cli": cli.markdown,
    "catalog-devices": catalog.devices,
    "catalog-models": catalog.models,
    "catalog-engines": catalog.engine_presets,
    "outputs": outputs.markdown,
    "limits": limits.markdown,
    "validation-table": live_tables.validation_table,
    "benchmark-table": live_tables.benchmark_table,
    "changelog": live_tables.changelog,
}

MARKER = re.compile(r"<!-- generated: (?P<name>[^ ]+) -->[ \t]*")
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")


class UnknownGenerator(ValueError):
    """A page names a generated block no generator makes."""


def generate(name: str) -> str:
    if name not in GENERATORS:
        raise UnknownGenerator(f"<!-- generated: {name} -->: no such generated block; the names are "
                               f"{', '.join(GENERATORS)}")
    return GENERATORS[name]().rstrip("\n")


def generate_all() -> dict[str, str]:
    """Every generated block by name."""
    return {name: generate(name) for name in GENERATORS}


def expand(markdown: str, blocks: dict[str, str] | None = None) -> str:
    """The page with each marker line replaced by its generator's Markdown (taken from
    `blocks` when given: the blocks generated once for a whole build)."""
    lines = markdown.split("\n")
    for i, name in _markers(lines):
        if blocks is not None and name not in blocks:
            generate(name)      # raises UnknownGenerator, naming the valid blocks
        text = blocks[name] if blocks is not None else generate(name)
        lines[i] = "\n" + text + "\n"      # its own blocks, whatever the page has around it
    return "\n".join(lines)


def names_in(markdown: str) -> list[str]:
    """The generated blocks a page asks for, in order."""
    return [name for _, name in _markers(markdown.split("\n"))]


def _markers(lines: list[str]) -> list[tuple[int, str]]:
    """(line index, name) of each marker line outside fenced code blocks (a page may show
    the marker itself in an example)."""
    out, fence = [], None
    for i, line in enumerate(lines):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            fence = None
        elif fence is None:
            m = MARKER.fullmatch(line)
            if m:
                out.append((i, m.group("name")))
    return out
