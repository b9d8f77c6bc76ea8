"""Runs the examples of a documentation page, so an example that drifts from what dcsim does
fails a test (the rules are the docs contract's "Executed examples").

A page's fenced blocks, in page order, in a scratch folder holding copies of the repository's
scenarios/, workloads/ and topologies/, with the venv's `dcsim` on PATH and COLUMNS=200:

- `console`: each `$ ` line is a command (a trailing backslash continues it on the next
  line) run by bash; the lines up to the next `$ ` are its expected output, stdout then
  stderr. A command with no output lines must just succeed. It must exit 0, or N where the
  command line ends with `# exit N`.
- `python`: run by the venv's python with the scratch folder as its working folder; it
  must succeed. Written as a doctest (`>>> ` lines), each example's printed output is
  checked like a command's.
- `title="PATH"`: a repository file's text must equal the block (or match it where the block
  elides lines with `...` or `# ...`); any other PATH is a file the reader writes, and it is
  written into the scratch folder for the blocks after it.
- `sh`: set-up a reader types once; not run, but each line must start with one of SH_PREFIXES.
- any other block must not hold a line starting with `dcsim` or `$ ` (an example no test runs).

Matching: a line that is exactly `...` stands for any number of lines; `...` inside a line
for any text in it; trailing spaces are ignored; everything else must be equal.

    python tests/docs_examples.py docs/tutorial.md      # run one page, print what differs
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what each page's scratch folder starts with: the files its examples name
EXAMPLE_FOLDERS = ("scenarios", "workloads", "topologies")
SH_PREFIXES = ("make ", "pip ", "python -m venv", "python3 -m venv", "git clone", "cd ", "source ")
FORBIDDEN_PREFIXES = ("dcsim", "$ ")
COMMAND_TIMEOUT_S = 300
ELLIPSIS = "..."

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
TITLE = re.compile(r"""title=(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)')""")
EXIT = re.compile(r"\s+#\s*exit\s+(?P<status>\d+)\s*$")


# ---- reading a page ------------------------------------------------------------------------

@dataclass
class Block:
    lang: str                  # the info string's first word: console, python, yaml, sh, ...
    title: str | None          # its title="PATH", if any
    lines: list[str]
    line: int                  # the page line of its first content line (1-based)


def blocks(text: str) -> list[Block]:
    """The page's fenced code blocks, in order (indented ones, in lists or admonitions, too)."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = len(opening["indent"]), opening["fence"], opening["info"].strip()
        body, j = [], i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            body.append(_dedent(lines[j], indent))
            j += 1
        title = TITLE.search(info)
        lang = info.split()[0].strip("{}.") if info.split() else ""
        out.append(Block(lang, (title["double"] if title["double"] is not None else title["single"]) if title else None,
                         body, i + 2))
        i = j + 1
    return out


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and not stripped.strip(fence[0])


def _dedent(line: str, indent: int) -> str:
    """The line without the fence's own indentation (a block inside a list item)."""
    cut = 0
    while cut < indent and cut < len(line) and line[cut] in " \t":
        cut += 1
    return line[cut:]


@dataclass
class Command:
    text: str                  # as bash runs it
    expected: list[str]
    status: int
    line: int


def commands(block: Block) -> tuple[list[Command], list[str]]:
    """A console block's commands, and the problems of its form (output before any command)."""
    out, problems, i = [], [], 0
    lines = block.lines
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if lines[i].strip():
                problems.append(f"line {block.line + i}: output before any `$ ` command: {lines[i]!r}")
            i += 1
            continue
        start, text = i, [lines[i][2:]]
        while text[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            text.append(lines[i])
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        status = EXIT.search(text[-1])
        if status:
            text[-1] = text[-1][:status.start()]
        out.append(Command("\n".join(text), expected, int(status["status"]) if status else 0, block.line + start))
    return out, problems


def form_problems(path: str, block: Block) -> list[str]:
    """What breaks the contract's rules for blocks that are not run (sh and the others)."""
    where = f"{path}:{block.line}"
    if block.lang == "sh":
        continued = False
        out = []
        for k, line in enumerate(block.lines):
            text = line.strip()
            if text and not text.startswith("#") and not continued and not text.startswith(SH_PREFIXES):
                out.append(f"{path}:{block.line + k}: an `sh` block holds only set-up commands "
                           f"({', '.join(p.strip() for p in SH_PREFIXES)}); got {line!r}: show a dcsim "
                           f"command in a `console` block, with its output")
            continued = text.endswith("\\")
        return out
    if block.lang in ("console", "python") or block.title is not None:
        return []
    return [f"{where}: a `{block.lang or 'plain'}` block holds {line!r}: a command no test runs; put it in a "
            f"`console` block with its output" for line in block.lines if line.startswith(FORBIDDEN_PREFIXES)]


# ---- matching ------------------------------------------------------------------------------

def _line_matches(expected: str, actual: str) -> bool:
    if ELLIPSIS not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split(ELLIPSIS))
    return re.fullmatch(pattern, actual, re.DOTALL) is not None


def _trimmed(lines: list[str]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    while out and not out[0]:
        out.pop(0)
    return out


def matches(expected: list[str], actual: list[str], elision: tuple[str, ...] = (ELLIPSIS,)) -> bool:
    """Whether `actual` is `expected` with each elision line standing for any number of lines
    and `...` inside a line for any text (trailing spaces and blank edges ignored)."""
    exp, act = _trimmed(expected), _trimmed(actual)
    # ok[i][j]: exp[i:] matches act[j:]; filled from the ends (no recursion: outputs are long)
    ok = [[False] * (len(act) + 1) for _ in range(len(exp) + 1)]
    ok[len(exp)][len(act)] = True
    for i in range(len(exp) - 1, -1, -1):
        skip = exp[i].strip() in elision
        for j in range(len(act), -1, -1):
            if skip:
                ok[i][j] = ok[i + 1][j] or (j < len(act) and ok[i][j + 1])
            else:
                ok[i][j] = j < len(act) and _line_matches(exp[i], act[j]) and ok[i + 1][j + 1]
    return ok[0][0]


def diff(expected: list[str], actual: list[str]) -> str:
    return "\n".join(difflib.unified_diff(_trimmed(expected), _trimmed(actual), "expected (the page)",
                                          "actual", lineterm="", n=3))


# ---- running a page ------------------------------------------------------------------------

@dataclass
class Run:
    path: str                              # the page, as failures name it
    scratch: str
    failures: list[str] = field(default_factory=list)

    def fail(self, line: int, what: str) -> None:
        self.failures.append(f"{self.path}:{line}: {what}")


@contextmanager
def scratch_folder():
    """A fresh folder with copies of the repository's example folders, removed afterwards.

    Its path is short and always as long (/tmp/docs-XXXXXXXX): dcsim prints absolute paths
    in some lines, and a line that outgrows the console's width wraps, so the output a page
    shows must not depend on where the test runner keeps its temporary files."""
    base = "/tmp" if os.access("/tmp", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="docs-", dir=base)
    try:
        for name in EXAMPLE_FOLDERS:
            shutil.copytree(os.path.join(ROOT, name), os.path.join(folder, name))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def environment() -> dict:
    """What the commands run with: the venv's dcsim first on PATH, 200 columns, no colours,
    and none of the caller's DCSIM_* limits (a page must not depend on them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCSIM_") and k != "FORCE_COLOR"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(COLUMNS="200", TERM="dumb", NO_COLOR="1")
    return env


def run_page(page: str, scratch: str, shown_as: str | None = None) -> list[str]:
    """Run every example of the page file `page` in `scratch`; the failures, each naming the
    page line and what differed (empty: the page holds)."""
    with open(page, encoding="utf-8") as fh:
        text = fh.read()
    return run_text(text, scratch, shown_as or os.path.relpath(page, ROOT))


def run_text(text: str, scratch: str, path: str) -> list[str]:
    run = Run(path, scratch)
    env = environment()
    for block in blocks(text):
        for problem in form_problems(path, block):
            run.failures.append(problem)
        if block.title is not None:
            _title_block(run, block)
        elif block.lang == "console":
            _console(run, block, env)
        elif block.lang == "python":
            _python(run, block, env)
    return run.failures


def _title_block(run: Run, block: Block) -> None:
    title = block.title
    if os.path.isabs(title) or os.path.normpath(title).startswith(".."):
        run.fail(block.line, f'title="{title}": give a path inside the folder the examples run in')
        return
    repo_file = os.path.join(ROOT, title)
    if os.path.isfile(repo_file):
        with open(repo_file, encoding="utf-8") as fh:
            actual = fh.read().split("\n")
        elided = any(line.strip() in (ELLIPSIS, "# " + ELLIPSIS) for line in block.lines)
        same = (matches(block.lines, actual, (ELLIPSIS, "# " + ELLIPSIS)) if elided
                else "\n".join(block.lines).rstrip("\n") == "\n".join(actual).rstrip("\n"))
        if not same:
            run.fail(block.line, f'the block titled "{title}" differs from the repository\'s {title}:\n'
                                 + diff(block.lines, actual))
        return
    target = os.path.join(run.scratch, title)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        fh.write("\n".join(block.lines).rstrip("\n") + "\n")


def _console(run: Run, block: Block, env: dict) -> None:
    cmds, problems = commands(block)
    for problem in problems:
        run.failures.append(f"{run.path}: {problem}")
    for cmd in cmds:
        try:
            done = subprocess.run(["bash", "-c", cmd.text], cwd=run.scratch, env=env, capture_output=True,
                                  text=True, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            run.fail(cmd.line, f"$ {cmd.text}\ntook over {COMMAND_TIMEOUT_S} s (examples must be cheap)")
            continue
        actual = done.stdout.splitlines() + done.stderr.splitlines()
        if done.returncode != cmd.status:
            run.fail(cmd.line, f"$ {cmd.text}\nexited {done.returncode}, expected {cmd.status}"
                               + ("" if cmd.status else " (an error example ends with `# exit N`)")
                               + "\noutput:\n" + "\n".join(actual))
        elif cmd.expected and not matches(cmd.expected, actual):
            run.fail(cmd.line, f"$ {cmd.text}\nprinted what the page does not show:\n" + diff(cmd.expected, actual))


# Runs doctest examples in one namespace, as the interactive interpreter would (an
# expression's value is printed), and reports each example's printed output as JSON.
DOCTEST_DRIVER = r"""
import contextlib, io, json, sys, traceback
namespace = {"__name__": "__main__"}
printed = []
for source in json.load(sys.stdin):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            exec(compile(source, "<doc>", "single"), namespace)
        except Exception as exc:
            print("Traceback (most recent call last):")
            print("".join(traceback.format_exception_only(type(exc), exc)).rstrip())
    printed.append(buffer.getvalue())
json.dump(printed, sys.__stdout__)
"""


@dataclass
class Example:
    source: str
    expected: list[str]
    line: int


def doctest_examples(block: Block) -> list[Example]:
    """`>>> ` lines (with their `... ` continuations) and the output lines after them."""
    out: list[Example] = []
    for k, line in enumerate(block.lines):
        if line.startswith(">>> ") or line == ">>>":
            out.append(Example(line[4:], [], block.line + k))
        elif out and line.startswith("... ") and not out[-1].expected:
            out[-1].source += "\n" + line[4:]
        elif out:
            out[-1].expected.append(line)
    return out


def _python(run: Run, block: Block, env: dict) -> None:
    examples = doctest_examples(block) if any(line.startswith(">>>") for line in block.lines) else None
    with tempfile.TemporaryDirectory() as tmp:
        if examples is None:
            script = os.path.join(tmp, "block.py")
            with open(script, "w", encoding="utf-8") as fh:
                fh.write("\n".join(block.lines) + "\n")
            args, stdin = [sys.executable, script], None
        else:
            args, stdin = [sys.executable, "-c", DOCTEST_DRIVER], json.dumps([e.source + "\n" for e in examples])
        try:
            done = subprocess.run(args, cwd=run.scratch, env=env, input=stdin, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            run.fail(block.line, f"the python block took over {COMMAND_TIMEOUT_S} s")
            return
    if done.returncode != 0:
        run.fail(block.line, f"the python block failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return
    if examples is not None:
        for example, printed in zip(examples, json.loads(done.stdout), strict=True):
            shown = printed.splitlines()
            same = matches(example.expected, shown) if example.expected else not printed.strip()
            if not same:
                run.fail(example.line, f">>> {example.source}\nprinted what the page does not show:\n"
                                       + diff(example.expected, shown))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    status = 0
    for page in argv:
        with scratch_folder() as folder:
            failures = run_page(page, folder)
        print(f"{page}: {'ok' if not failures else f'{len(failures)} failure(s)'}")
        for failure in failures:
            print("\n" + failure)
        status = status or (1 if failures else 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
