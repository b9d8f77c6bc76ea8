"""What the commands share: argument types, checked output paths, locations in messages."""
from __future__ import annotations

import argparse
import os
import textwrap

from ..spec.errors import ScenarioError

EXIT_SCENARIO = 2
EXIT_INTERRUPTED = 130     # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)
SCENARIO_HELP = "scenario YAML file, or an example's name (`dcsim catalog scenarios` lists them)"


def command(sub, name: str, help: str, examples: list[str], description: str | None = None):
    """A subcommand whose --help ends in `examples:`, commands a user can paste as they are:
    each "dcsim ... # note", the note printed above it (tests/test_cli_help.py parses them)."""
    # raw, so the examples keep their lines; the description is wrapped here instead
    text = description or help[:1].upper() + help[1:] + "."
    return sub.add_parser(name, help=help, description=textwrap.fill(text, width=90),
                          epilog=examples_text(examples), formatter_class=argparse.RawDescriptionHelpFormatter)


def examples_text(examples: list[str]) -> str:
    """The `examples:` block of a --help: each note as a comment, its command below it, a
    long command continued over lines with a backslash as a shell takes it."""
    blocks = []
    for example in examples:
        cmd, _, note = example.partition(" # ")
        shell = " \\\n      ".join(_fill(_words(cmd), width=88))
        blocks.append((f"  # {note.strip()}\n" if note else "") + f"  {shell}")
    return "examples:\n" + "\n\n".join(blocks)


def _words(cmd: str) -> list[str]:
    """A command's words, each option with its value, so no line break parts them."""
    words: list[str] = []
    for token in cmd.split():
        if words and words[-1].startswith("--") and " " not in words[-1] and not token.startswith("-"):
            words[-1] += " " + token
        else:
            words.append(token)
    return words


def _fill(words: list[str], width: int) -> list[str]:
    lines = [words[0]]
    for w in words[1:]:
        if len(lines[-1]) + 1 + len(w) > width:
            lines.append(w)
        else:
            lines[-1] += " " + w
    return lines


def at_least(low: int):
    """An argparse type: an integer >= low (a bad value exits 2 naming the flag)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def share(text: str) -> float:
    """An argparse type: a fraction in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def degrees(text: str) -> list[int]:
    """An argparse type: comma-separated tensor-parallel degrees, each at least 1."""
    parse = at_least(1)
    return [parse(part.strip()) for part in text.split(",")]


def writable(path: str, flag: str = "--out", folder: bool = True) -> str:
    """Check, before any simulation, that results can go to `path`: a folder (or for a file
    output, a file) that exists or can be created in a writable folder."""
    from ..results.folder import replaceable
    if folder and os.path.isdir(path) and not replaceable(path):
        raise ScenarioError.one(loc(flag), "", f"{path} exists and is not a dcsim results folder (it holds other "
                                                f"files, which a run would replace); choose a new folder")
    if os.path.exists(path) and os.path.isdir(path) != folder:
        kind = "a file" if folder else "a folder"
        raise ScenarioError.one(loc(flag), "", f"{path} is {kind}; give a {'folder' if folder else 'file'} "
                                                               f"path")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ScenarioError.one(loc(flag), "", f"cannot create {path}: {parent} is a file")
    if not os.access(parent, os.W_OK):
        raise ScenarioError.one(loc(flag), "", f"cannot write to {parent}")
    return path


def loc(text):
    from ..spec.errors import Loc
    return Loc(text)


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """The --set flag of every command that reads a scenario: overrides, as `PATH=VALUE`."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a field, e.g. --set workload.rate=80/s (repeatable)")
