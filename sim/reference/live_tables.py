"""Figures the project measures and commits, shown as the files hold them today: the
validation report's headline tables, the benchmark table and the changelog. The pages quote
no number themselves, so none can go stale."""
from __future__ import annotations

import json
import os
import subprocess

from .markdown import code, figure, table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALIDATION_REPORT = os.path.join(ROOT, "validation", "report.md")
BENCHMARKS = os.path.join(ROOT, "benchmarks", "results.json")
CHANGELOG = os.path.join(ROOT, "CHANGELOG.md")
# the report's per-case listing: hundreds of rows, for the file itself, not the page
VALIDATION_CASES_HEADING = "## All cases"


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _demoted(lines: list[str], levels: int) -> list[str]:
    """Headings `levels` deeper, so a file's sections nest under the page's own heading."""
    return ["#" * levels + line if line.startswith("#") else line for line in lines]


def validation_table() -> str:
    """validation/report.md from its headline to the per-case listing, its title left out
    (the page has its own) and its sections one level deeper."""
    lines = _read(VALIDATION_REPORT).splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    if VALIDATION_CASES_HEADING in lines:
        lines = lines[:lines.index(VALIDATION_CASES_HEADING)]
    body = "\n".join(_demoted(lines, 1)).strip()
    return body + "\n\nEvery case, with its source: `validation/report.md` (written by `make validate`).\n"


# the columns of benchmarks/results.json's rows that the table shows, with their headers
BENCH_COLUMNS = [("case", "case", ""), ("requests", "requests", "r"), ("replicas", "replicas", "r"),
                 ("simulated_s", "simulated s", "r"), ("simulate_wall_s", "simulate wall s", "r"),
                 ("process_wall_s", "process wall s", "r"), ("requests_per_wall_s", "requests / wall s", "r"),
                 ("events_per_request", "events / request", "r"), ("numba_share", "compiled share", "r"),
                 ("peak_rss_mb", "peak RSS MB", "r")]


def benchmark_table() -> str:
    data = json.loads(_read(BENCHMARKS))
    rows = [[code(r["case"])] + [_bench_value(key, r.get(key)) for key, _, _ in BENCH_COLUMNS[1:]]
            for r in data["results"]]
    align = "".join(a or "l" for _, _, a in BENCH_COLUMNS)
    machine = data.get("machine", "not recorded")
    return "\n".join([
        table([h for _, h, _ in BENCH_COLUMNS], rows, align),
        "",
        f"Measured on: {machine}. {_provenance(data)}",
    ]) + "\n"


def _bench_value(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "numba_share":
        return f"{value:.0%}"
    return figure(value)


def _provenance(data: dict) -> str:
    """Which commit the figures belong to: the file's own record if it has one, else the
    commit that last wrote the file (its subject says which code `make bench` measured)."""
    if data.get("commit"):
        return f"Commit: {code(data['commit'])}."
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h%x09%cs%x09%s", "--", BENCHMARKS], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "Commit: not known (no git here)."
    if out.returncode != 0 or not out.stdout.strip():
        return "Commit: not known (the file is not in a git history here)."
    commit, date, subject = out.stdout.strip().split("\t", 2)
    return f"Written by commit {code(commit)} ({date}): {subject}."


def changelog() -> str:
    """CHANGELOG.md as it stands, without its title (the page has its own)."""
    lines = _read(CHANGELOG).splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip() + "\n"
