"""What the commands share: argument types, checked output paths, locations in messages."""
from __future__ import annotations

import argparse
import os


from ..spec.errors import ScenarioError

EXIT_SCENARIO = 2
EXIT_INTERRUPTED = 130     # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)


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
