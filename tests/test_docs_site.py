"""The documentation site: it builds strict and offline, every page is in the nav, the
generated reference covers the code it is generated from."""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys

import pytest
import yaml

import sim.reference as reference
from sim.cli import parser
from sim.reference import cli as cli_reference
from sim.reference import scenario_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
MKDOCS = [sys.executable, "-m", "mkdocs"]
# a <link> or <script> that loads from another host: the site must not (no fonts, no CDN)
EXTERNAL_ASSET = re.compile(r"<(?:link|script)\b[^>]*\b(?:href|src)=[\"'](?:https?:)?//", re.IGNORECASE)


def build(config: str, site: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(MKDOCS + ["build", "--strict", "-f", config, "-d", site], cwd=os.path.dirname(config),
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("site"))
    done = build(os.path.join(ROOT, "mkdocs.yml"), out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strict(site):
    assert os.path.isfile(os.path.join(site, "index.html"))
    assert os.path.isfile(os.path.join(site, "reference", "scenario.html"))


def test_the_site_loads_nothing_from_other_hosts(site):
    found = {}
    for page in glob.glob(os.path.join(site, "**", "*.html"), recursive=True):
        with open(page, encoding="utf-8") as fh:
            hits = EXTERNAL_ASSET.findall(fh.read())
        if hits:
            found[os.path.relpath(page, site)] = hits
    assert not found


def test_generated_blocks_are_filled_in(site):
    for page in glob.glob(os.path.join(site, "**", "*.html"), recursive=True):
        with open(page, encoding="utf-8") as fh:
            assert "<!-- generated:" not in fh.read(), page


def nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_every_page_is_in_the_nav_once():
    with open(os.path.join(ROOT, "mkdocs.yml")) as fh:
        config = yaml.safe_load(fh)
    pages = sorted(os.path.relpath(p, DOCS) for p in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True))
    listed = nav_pages(config["nav"])
    assert sorted(listed) == pages
    assert len(set(listed)) == len(listed)


def test_every_generated_name_in_the_pages_is_known():
    for page in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True):
        with open(page, encoding="utf-8") as fh:
            unknown = set(reference.names_in(fh.read())) - set(reference.GENERATORS)
        assert not unknown, (page, unknown)


def test_an_unknown_generated_name_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# A page\n\n<!-- generated: no-such-table -->\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(yaml.safe_dump({"site_name": "t", "hooks": [os.path.join(DOCS, "hooks.py")]}))
    done = build(str(config), str(tmp_path / "site"))
    assert done.returncode != 0
    assert "no-such-table" in done.stdout + done.stderr
    with pytest.raises(reference.UnknownGenerator):
        reference.expand("<!-- generated: no-such-table -->")


def test_a_marker_inside_a_code_block_is_left_as_written():
    text = "```text\n<!-- generated: NAME -->\n```\n"
    assert reference.expand(text) == text


@pytest.mark.parametrize("name", sorted(reference.GENERATORS))
def test_every_generator_writes_markdown(name):
    assert reference.generate(name).strip()


def test_every_scenario_field_has_a_description():
    missing = [path for path, info in scenario_fields.reachable_fields() if not info.description]
    assert not missing


def test_the_scenario_reference_has_every_section_and_field():
    text = reference.generate("scenario-fields")
    walk = scenario_fields.walk()
    for section in walk.sections:
        assert f"{{#{section.anchor}}}" in text
    slo_fields = {f"slo.{name}" for name in scenario_fields.Slo.model_fields}   # shown as its target keys
    for path, _ in scenario_fields.reachable_fields():
        if path not in slo_fields:
            assert f"`{path.rsplit('.', 1)[-1]}`" in text, path
    assert "`ttft_<stat>`" in text


def test_the_cli_reference_has_every_command_and_flag():
    text = cli_reference.markdown()
    root = parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        assert f"`dcsim {name}`" in text
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)
