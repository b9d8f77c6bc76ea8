"""Every command's --help ends in examples a user can paste: each parses, and the scenarios,
files and folders it names exist (or an example before it in the same --help writes them)."""
from __future__ import annotations

import argparse
import os
import shlex

import pytest

from sim import catalog
from sim.cli import parser
from sim.scenario import examples, load_scenario, variant_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def example_lines(epilog: str) -> list[str]:
    """The `dcsim ...` commands of an examples: block, a backslash-continued one joined."""
    found, parts = [], []
    for line in epilog.splitlines():
        text = line.strip()
        if not parts and not text.startswith("dcsim "):
            continue                        # a note, a blank line or prose
        parts.append(text.removesuffix("\\").strip())
        if not text.endswith("\\"):
            found.append(" ".join(parts))
            parts = []
    return found


def parse(line: str) -> argparse.Namespace:
    try:
        return parser().parse_args(shlex.split(line, comments=True)[1:])
    except SystemExit:
        raise AssertionError(f"the example does not parse: {line}") from None


def test_every_command_has_examples():
    found = commands()
    assert set(found) == {"run", "compare", "plan", "sweep", "validate", "validate-model", "topology", "catalog",
                          "report", "calibrate"}
    for name, sub in found.items():
        assert sub.formatter_class is argparse.RawDescriptionHelpFormatter, name
        assert (sub.epilog or "").startswith("examples:\n"), f"dcsim {name} --help has no examples"
        lines = example_lines(sub.epilog)
        assert 2 <= len(lines) <= 4, f"dcsim {name}: {len(lines)} examples"
        # every one parses; report's first runs the scenario whose results it reads
        assert name in [parse(line).command for line in lines], name


def test_the_top_level_help_has_examples_and_a_version():
    top = parser()
    assert [parse(line).command for line in example_lines(top.epilog)] == ["run", "catalog"]
    assert any(a.option_strings == ["--version"] for a in top._actions)


def test_help_prints_the_examples(capsys):
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["run", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n" in out and "  dcsim run quickstart\n" in out


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_example_names_what_exists(name, monkeypatch):
    """From the repository's root, as a user of a clone pastes them: every scenario, variant,
    device, file and folder an example names is there, or written by an example above it."""
    monkeypatch.chdir(ROOT)
    written: set[str] = set()
    for line in example_lines(commands()[name].epilog):
        args = parse(line)
        missing = [x for x in _inputs(args) if not os.path.exists(x) and os.path.normpath(x) not in written]
        assert missing == [], f"{line}: names {missing}, which do not exist"
        written.update(_outputs(args))


def _inputs(args) -> list[str]:
    """The files and folders a command reads, example names resolved (an unknown one raises)."""
    scenarios = {"run": [getattr(args, "scenario", None)], "validate": [getattr(args, "scenario", None)],
                 "plan": [getattr(args, "scenario", None)], "calibrate": [getattr(args, "scenario", None)],
                 "compare": getattr(args, "scenarios", [])}.get(args.command, [])
    paths = [examples.path_of(s) for s in scenarios]
    for path in paths:   # each scenario loads as the example runs it: variant and overrides too
        load_scenario(path, getattr(args, "overrides", []), getattr(args, "variant", None))
    if getattr(args, "variant", None):
        assert args.variant in variant_names(paths[0])
    if args.command == "plan" and args.devices:
        assert set(args.devices.split(",")) <= set(catalog.device_entries())
    if args.command == "sweep":
        paths.append(examples.path_of(args.sweep, examples.SWEEPS))
    if args.command == "topology":
        paths.append(examples.path_of(args.file, examples.TOPOLOGIES))
    paths += {"calibrate": getattr(args, "files", []), "report": [getattr(args, "results", None)],
              "validate-model": [getattr(args, "cases", None)]}.get(args.command, [])
    return paths


def _outputs(args) -> set[str]:
    """The results folder a `run` example writes, for the examples after it."""
    if args.command != "run":
        return set()
    name = load_scenario(args.scenario, args.overrides, args.variant).name
    return {os.path.normpath(args.out or os.path.join("results", name))}


def test_every_argument_says_what_it_does():
    """The command-line reference (docs/reference/cli.md) prints each argument's help: none
    may be empty."""
    missing = [f"{name} {action.dest}" for name, sub in commands().items() for action in sub._actions
               if not action.help and action.dest != "help"]
    assert not missing
