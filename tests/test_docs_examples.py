"""Every command and output shown in README.md and docs/**/*.md, run (tests/docs_examples.py
says how); one test per page, so pytest-xdist runs pages side by side. Then the runner's
own rules, on small made-up pages."""
from __future__ import annotations

import glob
import os
import re
import sys

import docs_examples
import pytest
from docs_examples import ROOT, run_text, scratch_folder

PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                                           recursive=True))


@pytest.mark.parametrize("path", PAGES)
def test_page(path):
    with scratch_folder() as folder:
        failures = docs_examples.run_page(os.path.join(ROOT, path), folder)
    assert not failures, "\n\n".join(failures)


# ---- the runner's rules --------------------------------------------------------------------

def fence(lang: str, body: str) -> str:
    return f"```{lang}\n{body.strip()}\n```\n"


@pytest.fixture
def run(tmp_path):
    """run(markdown) -> the failures of a made-up document run in a scratch folder."""
    def go(text: str) -> list[str]:
        folder = tmp_path / "scratch"
        folder.mkdir(exist_ok=True)
        return run_text(text, str(folder), "made-up.md")
    return go


def test_an_output_that_matches_passes(run):
    assert run(fence("console", "$ echo hello\nhello")) == []


def test_a_stale_output_fails_with_the_command_and_a_diff(run):
    failures = run(fence("console", "$ echo hello\nhallo"))
    assert len(failures) == 1
    assert "$ echo hello" in failures[0]
    assert "-hallo" in failures[0] and "+hello" in failures[0]
    assert failures[0].startswith("made-up.md:2:")


def test_stdout_comes_before_stderr(run):
    assert run(fence("console", "$ echo err >&2; echo out\nout\nerr")) == []
    assert run(fence("console", "$ echo err >&2; echo out\nerr\nout")) != []


def test_a_command_without_output_lines_need_only_succeed(run):
    assert run(fence("console", "$ echo anything")) == []
    assert run(fence("console", "$ false")) != []


def test_an_ellipsis_line_stands_for_any_number_of_lines(run):
    assert run(fence("console", "$ printf 'a\\nb\\nc\\nd\\n'\na\n...\nd")) == []
    assert run(fence("console", "$ printf 'a\\nd\\n'\na\n...\nd")) == []            # zero lines
    assert run(fence("console", "$ printf 'a\\nb\\n'\n...")) == []
    assert run(fence("console", "$ printf 'a\\nb\\nc\\n'\na\n...\nd")) != []        # the rest still counts


def test_an_ellipsis_inside_a_line_stands_for_any_text_in_it(run):
    assert run(fence("console", "$ echo 'simulated 2.1min in 0.68s wall'\nsimulated 2.1min in ...s wall")) == []
    assert run(fence("console", "$ echo 'simulated 2.1min in 0.68s wall'\nsimulated 3.1min in ...s wall")) != []
    assert run(fence("console", "$ printf 'a\\nb\\n'\na ...")) != []                 # not across lines


def test_trailing_spaces_are_ignored(run):
    assert run(fence("console", "$ echo 'a   '\na")) == []


def test_exit_n_expects_that_status(run):
    assert run(fence("console", "$ bash -c 'echo no >&2; exit 3'  # exit 3\nno")) == []
    failures = run(fence("console", "$ bash -c 'exit 3'"))
    assert failures and "exited 3, expected 0" in failures[0]
    assert run(fence("console", "$ true  # exit 2")) != []


def test_a_backslash_continues_a_command(run):
    assert run(fence("console", "$ echo one \\\n  two\none two")) == []


def test_output_before_any_command_fails(run):
    assert run(fence("console", "stray\n$ echo x\nx")) != []


def test_a_titled_block_of_a_repository_file_must_equal_it(run):
    with open(os.path.join(ROOT, "workloads", "chat.yaml")) as fh:
        chat = fh.read()
    assert run(fence('yaml title="workloads/chat.yaml"', chat)) == []
    failures = run(fence('yaml title="workloads/chat.yaml"', chat.replace("10/s", "20/s")))
    assert failures and "differs from the repository's workloads/chat.yaml" in failures[0]


def test_a_titled_block_may_elide_lines_of_the_file(run):
    with open(os.path.join(ROOT, "workloads", "chat.yaml")) as fh:
        lines = fh.read().splitlines()
    assert run(fence('yaml title="workloads/chat.yaml"', "\n".join(["# ..."] + lines[3:]))) == []
    assert run(fence('yaml title="workloads/chat.yaml"', "\n".join(lines[:4] + ["..."]))) == []
    assert run(fence('yaml title="workloads/chat.yaml"', "\n".join(["# ...", "name: other"]))) != []


def test_a_titled_block_of_a_new_file_is_written_for_the_blocks_after_it(run):
    text = fence('yaml title="mine/my.yaml"', "name: mine") + fence("console", "$ cat mine/my.yaml\nname: mine")
    assert run(text) == []


def test_commands_run_in_a_folder_with_the_example_folders():
    with scratch_folder() as folder:
        assert run_text(fence("console", "$ ls\nscenarios\ntopologies\nworkloads"), folder, "made-up.md") == []
    # the same short path whichever folder pytest keeps its own files in (lines with paths wrap alike)
    assert re.fullmatch(r"/tmp/docs-[^/]{8}", folder)


def test_dcsim_is_the_venvs(run):
    venv_dcsim = os.path.join(os.path.dirname(sys.executable), "dcsim")
    assert run(fence("console", f"$ command -v dcsim\n{venv_dcsim}")) == []


def test_blocks_share_their_folder_in_order(run):
    text = fence("console", "$ echo 1 > state") + fence("console", "$ cat state\n1")
    assert run(text) == []


def test_a_dcsim_line_in_a_block_that_is_not_run_fails(run):
    for lang in ("text", "", "bash", "yaml"):
        failures = run(fence(lang, "dcsim run scenarios/quickstart.yaml"))
        assert failures and "a command no test runs" in failures[0], lang
    assert run(fence("text", "$ dcsim run x")) != []
    assert run(fence("text", "usage: dcsim run ...")) == []


def test_an_sh_block_holds_only_set_up_commands(run):
    assert run(fence("sh", "# set up\nmake run\npip install .\npython3 -m venv .venv\ncd x\n"
                           "source .venv/bin/activate")) == []
    assert run(fence("sh", "dcsim run scenarios/quickstart.yaml")) != []
    assert run(fence("sh", "rm -rf results")) != []


def test_a_python_block_runs_and_must_succeed(run):
    text = fence("python", "with open('made.txt', 'w') as fh:\n    fh.write('by python')")
    assert run(text + fence("console", "$ cat made.txt\nby python")) == []        # in the folder
    failures = run(fence("python", "raise SystemExit('broken')"))
    assert failures and "broken" in failures[0]


def test_a_doctest_block_checks_what_it_prints(run):
    assert run(fence("python", ">>> 1 + 1\n2\n>>> for i in range(2):\n...     print(i)\n0\n1")) == []
    assert run(fence("python", ">>> x = 2\n>>> x * 3\n6")) == []
    assert run(fence("python", ">>> print('a\\nb\\nc')\na\n...")) == []
    failures = run(fence("python", ">>> 1 + 1\n3"))
    assert failures and "-3" in failures[0] and "+2" in failures[0]
