"""Markdown pieces every generator writes: tables and inline code that survive any text."""
from __future__ import annotations

import re

CODE_DELIMITER = re.compile(r"(?<!\\)`")     # a backtick that is not escaped
PIPE = re.compile(r"(?<!\\)\|")
# characters Markdown would read as markup in quoted source text (code, emphasis, links, tables)
MARKUP = re.compile(r"([\\`*_\[\]|])")


def cell(text) -> str:
    """Text safe inside a table cell: a `|` would end the cell, a newline the row, and
    `<name>` would be read as an HTML tag. Code spans are left as written (their text is
    literal already, and the table reader does not split a row inside one)."""
    out = []
    for i, part in enumerate(CODE_DELIMITER.split(str(text).replace("\n", " "))):
        if i % 2 == 0:      # outside a code span
            part = PIPE.sub("\\|", part).replace("<", "&lt;").replace(">", "&gt;")
        out.append(part)
    return "`".join(out)


def plain(text) -> str:
    """Quoted text (a catalog source, a message) shown as it is, none of it read as markup."""
    return MARKUP.sub(r"\\\1", str(text)).replace("<", "&lt;").replace(">", "&gt;")


def code(text) -> str:
    """Inline code; a backtick inside the text gets a longer fence so it shows as written."""
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(headers: list[str], rows: list[list], align: str = "") -> str:
    """A pipe table; `align` holds one letter per column, 'r' for right-aligned figures."""
    marks = ["---:" if (align[i:i + 1] == "r") else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def anchor(path: str) -> str:
    """A heading id from a scenario path: `fleet[].serve.engine` -> `fleet-serve-engine`."""
    out = "".join(c if c.isalnum() else "-" for c in path.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def figure(x) -> str:
    """A number as a reader wants it: whole numbers and figures from 100 up with thousands
    separators, smaller ones to three significant figures."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"
