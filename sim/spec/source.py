"""Read scenario YAML into plain data while remembering where every value came from.

`load(path)` returns a `Source`: the data (dicts, lists, scalars) with `include:` merged and
file references (`topology: ../topologies/x.yaml`) read in place, plus a map from each
value's path, e.g. ('fleet', 0, 'serve', 'model'), to the file and line that wrote it.
`Source.override("workload.rate", "80/s")` applies a command-line `--set`.
Schema validation (`sim.scenario`) uses the map to name file and line in its errors.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import limits
from .errors import Loc, ScenarioError, did_you_mean, format_path

# Keys whose string value names another YAML file to read in place.
FILE_REFERENCE_KEYS = {"topology", "workload"}
# Keys whose string value is a data file path, made absolute against the declaring file.
PATH_KEYS = {"path", "calibration"}


@dataclass
class Source:
    data: Any
    locs: dict[tuple, Loc] = field(default_factory=dict)
    root: str = ""

    def loc_of(self, path: tuple) -> Loc | None:
        """The location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.locs:
                return self.locs[path]
            if not path:
                return Loc(self.root) if self.root else None
            path = path[:-1]

    def subtree(self, path: tuple) -> Source:
        """The value at `path` as a Source of its own, keeping every value's file and line."""
        node = self.data
        for step in path:
            node = node[step]
        n = len(path)
        locs = {p[n:]: loc for p, loc in self.locs.items() if p[:n] == tuple(path)}
        return Source(data=copy.deepcopy(node), locs=locs, root=self.root)

    def variants(self) -> list[str]:
        v = self.data.get("variants") if isinstance(self.data, dict) else None
        return list(v) if isinstance(v, dict) else []

    def select_variant(self, name: str | None) -> None:
        """Keep the base scenario (name None) or apply variant `name`: each top-level field the
        variant writes replaces the base's, keeping the variant's file and line for errors."""
        if not isinstance(self.data, dict) or "variants" not in self.data:
            if name is not None:
                raise ScenarioError.one(Loc(self.root), "variants", f"no variant '{name}': this scenario has none")
            return
        variants = self.data.pop("variants")
        where = self.locs.get(("variants",), Loc(self.root))
        if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
            raise ScenarioError.one(where, "variants", "variants maps each variant's name to the fields it changes, "
                                                       "e.g. variants: {mi300x: {fleet: [...]}}")
        own = {p: loc for p, loc in self.locs.items() if p[:1] == ("variants",)}
        for p in own:
            del self.locs[p]
        if name is None:
            return
        if name not in variants:
            raise ScenarioError.one(where, "variants",
                                    f"no variant '{name}'" + did_you_mean(name, variants, "variants"))
        base_name = self.data.get("name")
        for key, value in variants[name].items():
            self.data[key] = value
            for p in [p for p in self.locs if p[:1] == (key,)]:
                del self.locs[p]
            for p, loc in own.items():
                if p[:3] == ("variants", name, key):
                    self.locs[p[2:]] = loc
        if "name" not in variants[name]:
            self.data["name"] = f"{base_name}-{name}"

    def override(self, assignment: str) -> None:
        """Apply `a.b[0].c=value` (value parsed as YAML) to the data, as `--set` does.

        A path step that meets a list without an index applies to every element, so
        `workload.rate=80/s` sets the rate of each workload stream.
        """
        if "=" not in assignment:
            raise ScenarioError.one(Loc("--set"), assignment, "expected PATH=VALUE, e.g. workload.rate=80/s")
        key, raw = assignment.split("=", 1)
        steps = _parse_path(key.strip())
        if not steps:
            raise ScenarioError.one(Loc("--set"), assignment, "empty path; expected PATH=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ScenarioError.one(Loc("--set"), key, f"value is not valid YAML: {exc}") from None
        loc = Loc(f"--set {assignment}")
        self._assign(self.data, steps, (), value, loc)

    def _assign(self, node, steps, prefix, value, loc):
        step, rest = steps[0], steps[1:]
        if isinstance(node, list) and not isinstance(step, int):
            for i, item in enumerate(node):
                self._assign(item, steps, prefix + (i,), value, loc)
            return
        if isinstance(node, list):
            if not -len(node) <= step < len(node):
                raise ScenarioError.one(loc, format_path(prefix),
                                        f"index {step} out of range (list has {len(node)} items)")
        elif not isinstance(node, dict):
            raise ScenarioError.one(loc, format_path(prefix), "cannot set a field inside a plain value")
        here = prefix + (step,)
        if not rest:
            node[step] = value
            for p in [p for p in self.locs if p[: len(here)] == here]:
                del self.locs[p]
            self.locs[here] = loc
            return
        if isinstance(node, dict) and step not in node:
            node[step] = {}
        self._assign(node[step], rest, here, value, loc)


def _parse_path(key: str) -> list:
    steps: list = []
    for part in key.replace("]", "").replace("[", ".").split("."):
        if part == "":
            continue
        steps.append(int(part) if part.lstrip("-").isdigit() else part)
    return steps


def walk(data, prefix: tuple = ()):
    """Every (path, value) of a nested structure of mappings and lists, the root first."""
    yield prefix, data
    if isinstance(data, dict):
        for k, v in data.items():
            yield from walk(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from walk(v, prefix + (i,))


def load(path: str | os.PathLike, plain: bool = False) -> Source:
    """Read a YAML file with includes resolved; raise ScenarioError naming file:line on failure.
    `plain`: read it as written (no includes, file references or paths resolved), as for a
    file that is not a scenario."""
    path = os.fspath(path)
    src = Source(data=None, root=display(path))
    src.data = _load_file(path, (), src.locs, stack=(), plain=plain)
    return src


def display(path: str) -> str:
    """A file as errors name it: relative to the working directory when inside it, else absolute."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    return full if rel.startswith("..") else rel


def _load_file(path: str, prefix: tuple, locs: dict, stack: tuple, plain: bool = False):
    shown = display(path)
    real = os.path.realpath(path)
    if real in stack:
        raise ScenarioError.one(Loc(shown), format_path(prefix), "include cycle: " + " -> ".join(stack + (real,)))
    text = read_text(path, shown, format_path(prefix))
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ScenarioError.one(Loc(shown, line), "", f"YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:          # a character YAML does not allow (a NUL, a control byte)
        position = getattr(exc, "position", 0) or 0
        raise ScenarioError.one(Loc(shown, text.count("\n", 0, position) + 1), "",
                                f"not a YAML text file: {getattr(exc, 'reason', exc)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise ScenarioError.one(Loc(shown, 1), format_path(prefix), "file is empty")
    walker = _Walker(loader, path, shown, locs, stack + (real,), plain)
    return walker.value(node, prefix)


def read_text(path: str, shown: str, field: str = "") -> str:
    """A text file's contents; a missing, unreadable, too large or non-UTF-8 file is a ScenarioError."""
    try:
        size = os.path.getsize(path)
        if size > limits.FILE_BYTES.value:
            raise ScenarioError.one(Loc(shown), field, limits.FILE_BYTES.message(f"{size:,}"))
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ScenarioError.one(Loc(shown), field, "file not found") from None
    except IsADirectoryError:
        raise ScenarioError.one(Loc(shown), field, "is a folder, not a file") from None
    except OSError as exc:
        raise ScenarioError.one(Loc(shown), field, f"cannot read file: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ScenarioError.one(Loc(shown, line), field, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                                                         f"{exc.start}): is it a binary file?") from None


class _Walker:
    def __init__(self, loader, path, shown, locs, stack, plain=False):
        self.loader, self.path, self.shown, self.locs, self.stack = loader, path, shown, locs, stack
        self.plain = plain
        self.dir = os.path.dirname(os.path.abspath(path))
        self.values = 0         # values expanded so far: an alias bomb stops at the limit

    def loc(self, node) -> Loc:
        return Loc(self.shown, node.start_mark.line + 1)

    def value(self, node, path: tuple):
        self.values += 1
        if self.values > limits.YAML_VALUES.value:
            raise ScenarioError.one(self.loc(node), format_path(path),
                                    limits.YAML_VALUES.message(f"more than {self.values - 1:,}"))
        if len(path) > limits.YAML_DEPTH.value:
            raise ScenarioError.one(self.loc(node), format_path(path[:8]) + "...",
                                    limits.YAML_DEPTH.message(f"{len(path)} levels (an alias inside itself?)"))
        self.locs.setdefault(path, self.loc(node))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node, path: tuple) -> dict:
        out: dict = {}
        include_node = None
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int)):
                raise ScenarioError.one(self.loc(key_node), format_path(path), f"keys must be names, got {key!r}")
            if key in seen:
                raise ScenarioError.one(self.loc(key_node), format_path(path + (key,)),
                                        f"duplicate key (first written on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
            if key == "include" and not self.plain:
                include_node = value_node
                continue
            self.locs[path + (key,)] = self.loc(key_node)
            if key in FILE_REFERENCE_KEYS and isinstance(value_node, yaml.ScalarNode) and not self.plain:
                ref = self.loader.construct_object(value_node)
                if isinstance(ref, str) and ref.endswith((".yaml", ".yml")):
                    out[key] = self.include(ref, value_node, path + (key,))
                    self.locs.setdefault(path + (key,), self.loc(key_node))
                    continue
            value = self.value(value_node, path + (key,))
            if key in PATH_KEYS and isinstance(value, str) and not os.path.isabs(value) and not self.plain:
                value = os.path.normpath(os.path.join(self.dir, value))
            out[key] = value
        if include_node is None:
            return out
        ref = self.loader.construct_object(include_node)
        if not isinstance(ref, str):
            raise ScenarioError.one(self.loc(include_node), format_path(path + ("include",)),
                                    "include takes a file path, e.g. include: ../workloads/chat.yaml")
        # Keys written next to `include:` override the included file's.
        own = {p: loc for p, loc in self.locs.items() if p[: len(path)] == path and len(p) > len(path)}
        included = self.include(ref, include_node, path)
        if not isinstance(included, dict):
            raise ScenarioError.one(self.loc(include_node), format_path(path + ("include",)),
                                    f"included file {ref} must hold a mapping of fields")
        merged = dict(included)
        merged.update(out)
        self.locs.update(own)
        return merged

    def include(self, ref: str, node, path: tuple):
        target = ref if os.path.isabs(ref) else os.path.join(self.dir, ref)
        if not os.path.exists(target):
            raise ScenarioError.one(self.loc(node), format_path(path),
                                    f"file not found: {ref} (looked for {display(target)})")
        return _load_file(target, path, self.locs, self.stack)
