"""The building blocks of the HTML report (sim.results.html_report): escaping, numbers,
tables, cards, plots embedded as PNG data URIs, and the self-contained page around them."""
from __future__ import annotations

import base64
import html
import io

import numpy as np

from ..spec.units import duration_or_dash

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 1.5em 2em 4em; color: #1d2330; line-height: 1.45; }
h1 { margin-bottom: 0.1em; }
h2 { margin-top: 2em; border-bottom: 2px solid #e3e6ec; padding-bottom: 0.2em; }
h3 { margin-top: 1.4em; }
.meta { color: #5b6475; margin-top: 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #e3e6ec; text-align: right; white-space: nowrap; }
th { background: #f4f6f9; font-weight: 600; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
td.wrap { white-space: normal; text-align: left; max-width: 40em; }
.ok { color: #18794e; font-weight: 600; }
.bad { color: #c22f2f; font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0.6em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eef0f4; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.8em 0; }
.card { background: #f4f6f9; border-radius: 6px; padding: 0.5em 1em; min-width: 9em; }
.card b { display: block; font-size: 1.3em; }
.card span { color: #5b6475; font-size: 0.85em; }
ul.notes { color: #5b6475; font-size: 0.9em; }
footer { margin-top: 3em; border-top: 1px solid #e3e6ec; padding-top: 0.6em; font-size: 0.85em;
         overflow-wrap: anywhere; }
"""


class Raw(str):
    """HTML that is already safe (built here from escaped parts): not escaped again."""


def escape(x) -> str:
    """Text made safe for HTML (Raw passes as it is; None is empty)."""
    return x if isinstance(x, Raw) else html.escape("" if x is None else str(x))


def number(x, fmt="{:,.2f}") -> str:
    """A figure in `fmt` (a format string, or 'duration', 'percent', 'kW'); '-' for none."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if fmt == "duration":
        return duration_or_dash(float(x))
    if fmt == "percent":
        return f"{float(x) * 100:.1f}%"
    if fmt == "kW":
        return f"{float(x) / 1000:,.1f}"
    return fmt.format(x)


def verdict(met) -> Raw:
    """'met' or 'missed', coloured; '-' when unknown."""
    if met is None or (isinstance(met, float) and np.isnan(met)):
        return Raw("-")
    return Raw('<span class="ok">met</span>' if met else '<span class="bad">missed</span>')


def html_table(headers, rows, text_columns=1) -> str:
    """Cells are plain text (escaped here) or Raw; the first `text_columns` align left."""
    head = "".join(f'<th{" class=text" if k < text_columns else ""}>{escape(h)}</th>' for k, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=text" if k < text_columns else ""}>{escape(c)}</td>'
                                    for k, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def cards(items) -> str:
    """A row of (label, value) cards: the figures a page opens with."""
    return '<div class="cards">' + "".join(f"<div class=card><b>{escape(v)}</b><span>{escape(k)}</span></div>"
                                           for k, v in items) + "</div>"


def figure(draw, size=(9.0, 4.0), alt="plot", rows=1, cols=1) -> str:
    """Draw on a fresh Agg figure (no pyplot: nothing global is left behind) and embed it."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    draw(axes[0, 0] if rows * cols == 1 else list(axes.flat))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}"></figure>'


def html_page(title: str, body: list[str]) -> str:
    """The whole page: its title, the inline style sheet and the body's parts."""
    # an empty icon: browsers would otherwise ask a server for /favicon.ico
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f'<link rel=icon href="data:,"><title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n'
            + "\n".join(body) + "\n</body></html>\n")
