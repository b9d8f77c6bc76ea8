"""The `dcsim` command: run, validate, compare, plan, sweep, report, validate-model, topology, catalog.

Scenario problems print as `file:line: field: message` and exit with status 2; no traceback.
Each command's arguments and handler live in the module of its group (running, sizing,
sweeping, checking).
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..core.column_store import steady_heap
from ..spec.errors import ScenarioError
from . import checking, running, sizing, sweeping
from .arguments import EXIT_INTERRUPTED, EXIT_SCENARIO, examples_text

# in the order `dcsim --help` lists them
COMMANDS = (running.add_run, running.add_compare, sizing.add_plan, sweeping.add_sweep, checking.add_validate,
            checking.add_validate_model, checking.add_topology, checking.add_catalog, running.add_report,
            sizing.add_calibrate)


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="dcsim", description="Capacity simulator for AI-inference datacenters.",
                                  epilog=examples_text([
                                      "dcsim run quickstart # an example scenario; results in results/quickstart",
                                      "dcsim catalog scenarios # the examples, by name",
                                  ]) + "\n\nA command's options and examples: dcsim COMMAND --help.",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("--version", action="version", version=f"dcsim {__version__}")
    sub = out.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return out


def main(argv: list[str] | None = None) -> int:
    steady_heap()    # before anything allocates: long runs' memory then stays flat
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_SCENARIO
    except KeyboardInterrupt:
        print(f"interrupted: dcsim {args.command} stopped; nothing it was writing is marked complete",
              file=sys.stderr)
        return EXIT_INTERRUPTED
