"""The limits reference: every size limit of `sim.spec.limits`, the error format and the exit
statuses, from the code that enforces them."""
from __future__ import annotations

import os

from ..cli.arguments import EXIT_INTERRUPTED, EXIT_SCENARIO
from ..spec import limits
from ..spec.errors import ScenarioError
from .markdown import code, table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a typo'd rate, as the example of a refusal: the message below is the one dcsim prints for it
EXAMPLE = ("scenarios/quickstart.yaml", "workload.0.rate=1e9/s")


def all_limits() -> list[limits.Limit]:
    """Every Limit the module defines, in its order."""
    return [v for v in vars(limits).values() if isinstance(v, limits.Limit)]


def markdown() -> str:
    rows = [[code(limit.name), _default(limit), limit.what] for limit in all_limits()]
    path, assignment = EXAMPLE
    return "\n".join([
        table(["environment variable", "default", "what it bounds"], rows),
        "",
        f"A scenario over a limit is refused before it runs, with a message that names the variable; "
        f"`dcsim validate {path} --set {assignment}` prints:",
        "",
        "```text",
        refusal(path, assignment),
        "```",
        "",
        "## Errors and exit status",
        "",
        "Every problem with a scenario, a file it includes or an option prints one line on stderr, "
        "`error: FILE:LINE: field: message`, and dcsim exits without a traceback:",
        "",
        table(["exit status", "when"], [
            ["0", "the command did what it was asked"],
            ["1", "`dcsim validate-model --strict`: a case missed its tolerance"],
            [str(EXIT_SCENARIO), "a scenario, an included file, an option or a limit is wrong; nothing was run "
                                 "(argparse's own usage errors exit 2 too)"],
            [str(EXIT_INTERRUPTED), "interrupted (Ctrl-C): nothing it was writing is marked complete"],
        ]),
    ]) + "\n"


def refusal(path: str, assignment: str) -> str:
    """The error lines dcsim prints for `path` with the --set `assignment`."""
    from ..scenario import load_scenario
    try:
        load_scenario(os.path.join(ROOT, path), [assignment])
    except ScenarioError as exc:
        return "\n".join(f"error: {p}" for p in exc.problems).replace(ROOT + os.sep, "")
    raise AssertionError(f"{path} with --set {assignment} passed validation; the limits page needs a refusal")


def _default(limit: limits.Limit) -> str:
    value = limit.default
    if limit.name.endswith("_BYTES") and value % 2 ** 20 == 0:
        return f"{value / 2 ** 20:g} MiB"
    if limit.name.endswith("_DURATION_S") and value % 86400 == 0:
        return f"{value:,.0f} s ({value / 86400:g} days)"
    return f"{value:,.0f}"
