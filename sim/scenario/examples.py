"""The example scenarios, sweeps, workloads and topologies that ship with dcsim, found by name.

`dcsim run quickstart` runs scenarios/quickstart.yaml wherever dcsim is installed: a bare
name (no `/`, no `.yaml`, not a path that exists here) is looked up among the examples, and
anything else is a path, read as given.

The examples live at the top of the repository (scenarios/, workloads/, topologies/). A wheel
carries them as sim/examples/ in the same layout (pyproject.toml maps the folders there), so a
scenario's relative includes (`../topologies/x.yaml`, `../../workloads/y.yaml`) resolve in an
installed copy as in a clone; a clone or an editable install reads the repository's own.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..spec.errors import Loc, ScenarioError, did_you_mean

_SIM = Path(__file__).resolve().parent.parent
# an installed wheel first (sim/examples/), then the checkout the package sits in
_PLACES = (_SIM / "examples", _SIM.parent)


@dataclass(frozen=True)
class Kind:
    """One kind of example file: what errors call it, and its folder under the examples' root."""

    what: str
    folder: str


SCENARIOS = Kind("scenario", "scenarios")
SWEEPS = Kind("sweep", "scenarios/sweeps")
TOPOLOGIES = Kind("topology", "topologies")


def root() -> Path | None:
    """The folder that holds scenarios/, workloads/ and topologies/ (None: this copy has none)."""
    for place in _PLACES:
        if (place / SCENARIOS.folder).is_dir():
            return place
    return None


def folder(kind: Kind = SCENARIOS) -> Path | None:
    """Where the examples of `kind` are."""
    top = root()
    return None if top is None else top / kind.folder


def names(kind: Kind = SCENARIOS) -> list[str]:
    """The examples of `kind` by name (their file names less .yaml), sorted."""
    place = folder(kind)
    if place is None or not place.is_dir():
        return []
    return sorted(p.stem for p in place.glob("*.yaml") if p.is_file())


def is_bare_name(text: str) -> bool:
    """A name rather than a path: no folder, no YAML suffix, and no file of that name here."""
    return ("/" not in text and os.sep not in text and not text.endswith((".yaml", ".yml"))
            and not os.path.exists(text))


def path_of(text: str | os.PathLike, kind: Kind = SCENARIOS) -> str | os.PathLike:
    """The file `text` means: itself when it is a path, else the example of `kind` it names.
    An unknown name is a ScenarioError that lists the examples."""
    name = os.fspath(text)
    if not is_bare_name(name):
        return text
    place = folder(kind)
    found = None if place is None else place / f"{name}.yaml"
    if found is not None and found.is_file():
        return str(found)
    known = names(kind)
    hint = did_you_mean(name, known, "examples") if known else "; this copy of dcsim ships no examples"
    raise ScenarioError.one(Loc(name), "", f"no such {kind.what} '{name}'{hint}")


def purpose(path: str | Path) -> str:
    """What an example is for, in one sentence: the first of its opening comment, else its name:."""
    opening = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            # an indented comment line is a command or a list: the opening prose has ended
            if not line.startswith("#") or line.startswith("#  "):
                break
            opening.append(line[1:].strip())
    text = " ".join(x for x in opening if x)
    if text:
        return re.split(r"(?<=[.?!])\s", text, maxsplit=1)[0]
    named = re.search(r"^name:\s*(\S.*?)\s*$", Path(path).read_text(encoding="utf-8"), re.MULTILINE)
    return named.group(1).strip("'\"") if named else ""


def listing(kind: Kind = SCENARIOS) -> dict[str, dict]:
    """Each example of `kind`: its file and purpose, by name."""
    place = folder(kind)
    return {n: {"file": str(place / f"{n}.yaml"), "purpose": purpose(place / f"{n}.yaml")} for n in names(kind)}
