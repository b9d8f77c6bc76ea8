"""`dcsim report`: a self-contained page (no fetches, no scripts, escaped text) for a run and
for a sweep, a one-line error for a wrong folder, and, in headless Chromium, every plot shows
and the page logs no errors."""
from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import main
from sim.results.folder import write_manifest
from tests import browser as chromium
from tests.results_fixtures import NASTY_NAME, full_run, scenario_file, sweep_folder

RUN_HEADINGS = ["Fleet", "Requests", "Latency", "Throughput", "SLO", "Tenants", "Utilization and power", "Cost",
                "Autoscaling", "Failures", "Network", "Assumptions and notes"]
SWEEP_HEADINGS = ["Points", "Cost against latency", "SLO boundary", "Against count", "Against rate"]


@pytest.fixture(scope="module")
def run_report(tmp_path_factory):
    _, folder = full_run(str(tmp_path_factory.mktemp("run")))
    assert main(["report", folder]) == 0
    return os.path.join(folder, "report.html")


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    folder = sweep_folder(str(tmp_path_factory.mktemp("sweep")))
    out = os.path.join(folder, "pages", "sweep.html")
    assert main(["report", folder, "--out", out]) == 0
    return out


def self_contained(page: str) -> None:
    """Nothing to fetch (every src/href a data: URI), no script, no external style sheet."""
    assert "<script" not in page.lower()
    refs = re.findall(r'\b(?:src|href)\s*=\s*"?([^"\s>]*)', page)
    assert refs and all(r.startswith("data:") for r in refs), [r[:40] for r in refs if not r.startswith("data:")]
    assert "@import" not in page and "url(" not in page


def test_run_report_is_self_contained_and_escaped(run_report):
    page = Path(run_report).read_text()
    self_contained(page)
    assert html.escape(NASTY_NAME) in page and NASTY_NAME not in page
    for h in RUN_HEADINGS:
        assert f"<h2>{html.escape(h)}</h2>" in page
    assert page.count("<img ") == 7   # latency, utilization, power, cost, replicas, link graph, links over time


def test_sweep_report_shows_the_table_and_the_failed_run(sweep_report):
    page = Path(sweep_report).read_text()
    self_contained(page)
    for h in SWEEP_HEADINGS:
        assert f"<h2>{h}</h2>" in page
    assert "ValueError: &lt;b&gt;boom&lt;/b&gt; &amp; more" in page and "<b>boom" not in page
    assert page.count("count=2,rate=60/s") == 3 and page.count("<img ") == 4   # two seeds and the failure


def test_report_of_a_folder_dcsim_sweep_wrote(tmp_path):
    """The hand-made sweep above follows the format; this one is written by sim.tools.sweep itself."""
    from sim.tools import sweep
    base = scenario_file(str(tmp_path / "in"), {"name": "tiny"})
    sweep.run({"name": "real", "base": base, "axes": [{"name": "count", "path": "fleet.0.count", "values": [1, 2]}],
               "seeds": 1}, out=str(tmp_path / "sweep"), workers=1)
    assert main(["report", str(tmp_path / "sweep")]) == 0
    page = (tmp_path / "sweep" / "report.html").read_text()
    self_contained(page)
    assert "<h2>Cost against latency</h2>" in page and "<h2>Against count</h2>" in page
    assert "2 points x 1 seed = 2 runs: 2 ok, 0 failed" in page


def test_a_wrong_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    (tmp_path / "summary.json").write_text("not json")
    for name in ("requests.parquet", "devices.parquet", "scenario.yaml"):
        (tmp_path / name).write_text("")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "no such results folder" in err[0] and "missing summary.json" in err[1] and "incomplete" in err[2]
    assert not (tmp_path / "report.html").exists()


def test_results_of_another_format_are_one_line_too(run_report, tmp_path, capsys):
    folder = tmp_path / "old"
    shutil.copytree(os.path.dirname(run_report), folder)
    pd.DataFrame({"time": [0.0]}).to_parquet(folder / "devices.parquet")   # columns this version does not know
    write_manifest(str(folder))                                             # complete, as another version wrote it
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "format this dcsim does not read" in err[0], err


# ---- in a browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    required = os.environ.get("DCSIM_REQUIRE_BROWSER") == "1"   # CI installs both: a skip there would hide a failure
    if not chromium.available():
        if required:
            pytest.fail(f"{chromium.CHROMIUM} is missing but DCSIM_REQUIRE_BROWSER=1")
        pytest.skip(f"{chromium.CHROMIUM} not installed (apt-get install chromium): report not checked in a browser")
    if importlib.util.find_spec("playwright") is None:
        if required:
            pytest.fail("playwright is not installed but DCSIM_REQUIRE_BROWSER=1")
        pytest.skip("playwright not installed (pip install -e '.[test]'): report not checked in a browser")
    with chromium.chromium() as b:
        yield b


def rendered(browser, path: str) -> dict:
    """Open the file; what the page shows and every problem it logged or fetch it tried."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems, fetched = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(Path(path).as_uri(), wait_until="load")
    shown = {
        "title": page.title(),
        "h1": page.locator("h1").inner_text(),
        "h2": page.locator("h2").all_inner_texts(),
        "images": page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])"),
        "scripts": page.locator("script").count(),
    }
    page.close()
    shown["problems"] = problems
    shown["fetched"] = [u for u in fetched if not u.startswith("data:")]
    return shown


def test_run_report_renders_in_chromium(browser, run_report):
    shown = rendered(browser, run_report)
    assert shown["problems"] == []
    assert shown["fetched"] == [Path(run_report).as_uri()]          # the page itself, nothing else
    assert shown["h1"] == NASTY_NAME and shown["scripts"] == 0       # the name is text, not markup
    assert shown["h2"] == RUN_HEADINGS
    assert len(shown["images"]) == 7
    assert all(complete and width > 0 for _, complete, width in shown["images"]), shown["images"]


def test_sweep_report_renders_in_chromium(browser, sweep_report):
    shown = rendered(browser, sweep_report)
    assert shown["problems"] == [] and shown["fetched"] == [Path(sweep_report).as_uri()]
    assert shown["h1"] == "tiny-sweep" and shown["h2"] == SWEEP_HEADINGS
    assert len(shown["images"]) == 4
    assert all(complete and width > 0 for _, complete, width in shown["images"]), shown["images"]


# the sections a run has only when its scenario uses the feature, each from a shipped scenario, shortened
FEATURES = {
    "media": (["scenarios/multimodal.yaml"], "Request kinds"),
    "agents and prefix cache": (["scenarios/agent-levels.yaml"], ["Sessions", "Prefix cache"]),
    "power cap": (["scenarios/quickstart.yaml", "--set", "power={budget: 6kW, scope: datacenter}"], "Power cap"),
    "head nodes": (["scenarios/legacy-nic-head-node.yaml"], "Head nodes"),
    "rag": (["scenarios/rag.yaml"], ["Sessions", "Pipeline steps"]),
    "failures": (["scenarios/failure-rack.yaml", "--set", "failures.events=[{at: 8s, fail: rack, target: 0, "
                  "repair_after: 5s}]"], "Failures"),
}


@pytest.fixture(scope="module")
def feature_reports(tmp_path_factory):
    from tests.conftest import ROOT
    out = {}
    for name, (args, _) in FEATURES.items():
        folder = str(tmp_path_factory.mktemp("feature"))
        assert main(["run", os.path.join(ROOT, args[0]), *args[1:], "--set", "duration=20s", "--set", "warmup=5s",
                     "--out", folder]) == 0
        assert main(["report", folder]) == 0
        out[name] = os.path.join(folder, "report.html")
    return out


def test_feature_sections_appear_and_render(feature_reports, browser):
    for name, (_, headings) in FEATURES.items():
        headings = [headings] if isinstance(headings, str) else headings
        page = Path(feature_reports[name]).read_text()
        self_contained(page)
        shown = rendered(browser, feature_reports[name])
        assert shown["problems"] == [] and shown["scripts"] == 0, name
        assert all(h in shown["h2"] for h in headings), (name, shown["h2"])
