"""Which dcsim, which catalog and which timing source produced a result.

`record` builds the one object every output carries: summary.json's `provenance`,
trace.json's `metadata.provenance`, and through the summary each sweep row
(`provenance.dcsim_version`, `provenance.catalog_sha256`, `provenance.timing.<pool>`). The
report pages print it as one footer line (`text`, `sweep_text`). Two results of the same
scenario and seed whose records differ need not agree: another dcsim, other catalog figures
or another kernel package time the same iterations differently.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import __version__
from ..catalog.digest import catalog_sha256

# the sweep table's columns of the object, as sim.tools.sweep.flatten names them
PREFIX = "provenance."
TIMING_PREFIX = "provenance.timing."

if TYPE_CHECKING:
    import pandas as pd


def install() -> dict:
    """The dcsim version and the catalog's digest (sim.catalog.digest): the provenance of an
    output that gathers many runs (plan.json, compare tables, the validation report), each
    run's timing source recorded beside its own figures."""
    return {"dcsim_version": __version__, "catalog_sha256": catalog_sha256()}


def record(scenario) -> dict:
    """The provenance of a run of the resolved `scenario`: `install()` and each pool's timing
    label, as the console's `timing:` line shows it (a measured pool's label names the kernel
    package's version)."""
    return install() | {"timing": {p.name: p.deployment.timing or "-" for p in scenario.pools}}


def timing_text(summary: dict) -> str:
    """A run's timing sources in one string, `pool: label` joined by `; ` (for table rows)."""
    timing = (summary.get("provenance") or {}).get("timing") or {}
    return "; ".join(f"{pool}: {label}" for pool, label in timing.items())


def text(facts: dict | None) -> str:
    """The footer line of a run's report: the facts of its `record`, in words."""
    if not facts:
        return "provenance not recorded (results written before dcsim recorded it)"
    timing = "; ".join(f"timing {pool}: {label}" for pool, label in (facts.get("timing") or {}).items())
    return (f"dcsim {facts.get('dcsim_version', '-')}; catalog sha256 {facts.get('catalog_sha256', '-')}"
            + (f"; {timing}" if timing else ""))


def sweep_text(df: pd.DataFrame) -> str:
    """The footer line of a sweep's report, from its table's provenance columns. Each fact
    lists every value its rows hold: rows are separate runs (a resumed sweep keeps the rows
    it did not rerun, a cluster's workers have their own installs), and the footer must not
    claim one install made them all."""
    if f"{PREFIX}dcsim_version" not in df:
        return text(None)

    def values(column: str) -> str:
        seen = [v for v in dict.fromkeys(df[column].tolist()) if isinstance(v, str)]   # failed rows: none
        return " or ".join(seen) or "-"

    return text({"dcsim_version": values(PREFIX + "dcsim_version"),
                 "catalog_sha256": values(PREFIX + "catalog_sha256"),
                 "timing": {c[len(TIMING_PREFIX):]: values(c) for c in df.columns if c.startswith(TIMING_PREFIX)}})
