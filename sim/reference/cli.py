"""The command-line reference: every command and flag, read from `sim.cli.parser()` itself,
so a flag added there is documented here without anyone writing it down."""
from __future__ import annotations

import argparse

from .markdown import code, table

# usage lines wrapped at a fixed width: the page must not depend on the terminal it was built in
USAGE_WIDTH = 100


def markdown() -> str:
    from ..cli import parser
    root = parser()
    commands = _subcommands(root)
    parts = [_command_index(root), _section("dcsim", None, root)]
    summaries = {a.dest: a.help for a in _subparsers_action(root)._choices_actions}
    parts += [_section(f"dcsim {name}", summaries.get(name), sub) for name, sub in commands.items()]
    return "\n\n".join(parts) + "\n"


def _subparsers_action(p: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return dict(_subparsers_action(p).choices)


def _command_index(root: argparse.ArgumentParser) -> str:
    rows = [[f"[{code('dcsim ' + a.dest)}](#{_anchor(a.dest)})", a.help or ""]
            for a in _subparsers_action(root)._choices_actions]
    return table(["command", "what it does"], rows)


def _anchor(name: str) -> str:
    return "dcsim-" + name


def _section(title: str, summary: str | None, p: argparse.ArgumentParser) -> str:
    name = title.split(" ", 1)[1] if " " in title else ""
    lines = [f"### `{title}` {{#{_anchor(name) if name else 'dcsim'}}}", ""]
    text = p.description or summary
    if text:
        lines += [_paragraphs(text), ""]
    lines += ["```text", _usage(p), "```", ""]
    rows = [_row(a, p.prog) for a in p._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    if rows:
        lines += [table(["argument", "meaning", "default", "choices"], rows), ""]
    if p.epilog:
        lines += ["```text", p.epilog.rstrip(), "```", ""]
    return "\n".join(lines).rstrip()


def _paragraphs(text: str) -> str:
    """A description as Markdown: its blank-line paragraphs kept, the lines inside joined."""
    return "\n\n".join(" ".join(par.split()) for par in text.strip().split("\n\n"))


def _usage(p: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(p.prog, width=USAGE_WIDTH)
    formatter.add_usage(p.usage, p._actions, p._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _row(a: argparse.Action, prog: str) -> list[str]:
    return [_invocation(a), _help(a, prog), _default(a),
            " | ".join(code(c) for c in a.choices) if a.choices else ""]


def _invocation(a: argparse.Action) -> str:
    if not a.option_strings:
        return code(a.metavar or a.dest) + ("..." if a.nargs in ("+", "*") else "")
    shown = ", ".join(a.option_strings)
    if a.nargs != 0:
        shown += " " + (a.metavar if isinstance(a.metavar, str) else a.dest.upper())
    return code(shown)


def _help(a: argparse.Action, prog: str) -> str:
    text = a.help or ""
    if "%" in text:     # argparse's own placeholders, e.g. %(default)s, as `--help` prints them
        params = {k: v for k, v in dict(vars(a), prog=prog).items() if v is not argparse.SUPPRESS}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    return " ".join(text.split())


def _default(a: argparse.Action) -> str:
    if isinstance(a, argparse._VersionAction) or a.default in (None, False, [], argparse.SUPPRESS):
        return ""
    return code(a.default)
