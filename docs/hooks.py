"""mkdocs hook: fills each page's `<!-- generated: NAME -->` lines from the code (sim.reference).

Named in mkdocs.yml under `hooks:`; kept out of the site itself by `exclude_docs`. The blocks
are made once per build, in a fresh Python (`python -m sim.reference`): `mkdocs serve` keeps
one process across rebuilds, which would otherwise go on showing the code and the catalog as
it first imported them.
"""
import json
import subprocess
import sys

from sim.reference import expand

BLOCKS: dict[str, str] = {}


def on_pre_build(config):
    done = subprocess.run([sys.executable, "-m", "sim.reference"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"generating the reference failed:\n{done.stderr}")
    BLOCKS.clear()
    BLOCKS.update(json.loads(done.stdout))


def on_page_markdown(markdown, page, config, files):
    return expand(markdown, BLOCKS)
