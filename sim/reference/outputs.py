"""The outputs reference: a results folder's files, keys and columns, from the declaration in
`sim.results.columns` (which the tests hold real runs to)."""
from __future__ import annotations

from ..results import columns
from .markdown import code, table


def markdown() -> str:
    parts = ["### The results folder", "",
             table(["file", "what it holds", "written"],
                   [[code(f.name), f.meaning, f.when or "always"] for f in columns.FILES])]
    parts += ["", "### `summary.json`", "", _keys(columns.SUMMARY)]
    for name, cols in columns.TABLES.items():
        parts += ["", f"### `{name}`", "",
                  table(["column", "type", "unit", "meaning", "written"],
                        [[code(c.name), c.type, c.unit, c.meaning, c.when or "always"] for c in cols])]
    parts += ["", "### `trace.json`", "", _keys(columns.TRACE),
              "", "### `manifest.json`", "", _keys(columns.MANIFEST)]
    return "\n".join(parts) + "\n"


def _keys(keys) -> str:
    return table(["key", "unit", "meaning", "may be missing or null"],
                 [[code(k.name), k.unit, k.meaning, k.when] for k in keys])
