"""Request traces on disk (the Azure LLM inference schema: TIMESTAMP, ContextTokens,
GeneratedTokens), read and checked before anything runs.

A bad trace is a ScenarioError naming the trace file and the line of the first bad row:
an empty or binary file, a missing column, a timestamp that does not parse or goes back in
time, a token count that is blank, fractional, zero or negative.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ..spec.errors import Loc, Problem, ScenarioError
from ..spec.source import read_text

TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def read_trace(path: str, shown: str | None = None) -> pd.DataFrame:
    """The trace with a `t` column: seconds from its first request, in file order (which the
    check below requires to be time order)."""
    shown = shown or path
    text = read_text(path, shown)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ScenarioError.one(Loc(shown, 1), "", f"not a CSV trace: {str(exc).strip()}") from None
    missing = [c for c in TRACE_COLUMNS if c not in frame.columns]
    if missing:
        raise ScenarioError.one(Loc(shown, 1), "", f"lacks column(s) {', '.join(missing)}; expected a header "
                                                   f"{','.join(TRACE_COLUMNS)}")
    if frame.empty:
        raise ScenarioError.one(Loc(shown, 2), "", "no requests: the trace has a header and no rows")
    problems = []
    ts = pd.to_datetime(frame["TIMESTAMP"].str.strip(), format="mixed", errors="coerce")
    bad = np.flatnonzero(ts.isna().to_numpy())
    if len(bad):
        problems.append(_row(shown, bad[0], "TIMESTAMP", f"not a date and time: {frame['TIMESTAMP'][bad[0]]!r}"))
    else:
        back = np.flatnonzero(np.diff(ts.to_numpy().astype("datetime64[ns]").astype(np.int64)) < 0)
        if len(back):
            at, before = frame["TIMESTAMP"][back[0] + 1], frame["TIMESTAMP"][back[0]]
            problems.append(_row(shown, back[0] + 1, "TIMESTAMP",
                                 f"goes back in time ({at} after {before}); sort the trace"))
    counts = {}
    for column in TRACE_COLUMNS[1:]:
        raw = frame[column].str.strip()
        number = pd.to_numeric(raw, errors="coerce")
        bad = np.flatnonzero((number.isna() | (number < 1) | (number != np.floor(number))).to_numpy())
        if len(bad):
            problems.append(_row(shown, bad[0], column, f"expected a whole number of tokens, at least 1, got "
                                                        f"{raw[bad[0]]!r}"))
        else:
            counts[column] = number.to_numpy().astype(np.int64)
    if problems:
        raise ScenarioError(problems)
    seconds = (ts - ts.min()).dt.total_seconds().to_numpy()
    return pd.DataFrame({"TIMESTAMP": frame["TIMESTAMP"], "ContextTokens": counts["ContextTokens"],
                         "GeneratedTokens": counts["GeneratedTokens"], "t": seconds})


def _row(shown: str, row: int, column: str, message: str) -> Problem:
    """A problem at data row `row` (0-based): line row + 2 of the file, after its header."""
    return Problem(Loc(shown, int(row) + 2), column, message)
