"""Every output says which dcsim, which catalog and which timing source produced it: the
run's summary.json, trace.json and manifest, its report page, a sweep's table and report;
`make same-results` leaves that record out of its comparison."""
from __future__ import annotations

import contextlib
import copy
import hashlib
import html
import io
import json
import os
import re
import shutil

import pandas as pd
import pytest
import yaml

import sim
from benchmarks.same_results import compare
from sim.catalog import digest
from sim.cli import main
from sim.results import analysis, html_report, provenance, sweep_analysis
from sim.tools import sweep as sw
from tests.conftest import BASE

CATALOG = os.path.dirname(digest.__file__)


def tiny_scenario(folder) -> str:
    """Two small pools, one on measured kernels and one held to the analytical model, so
    that each pool's own timing label must reach the outputs."""
    data = copy.deepcopy(BASE)
    data.update(duration="3s", warmup="1s")
    data["workload"][0]["rate"] = "4/s"
    measured = data["fleet"][0]
    measured["count"] = 1
    analytical = copy.deepcopy(measured)
    analytical["pool"] = "q"
    analytical["serve"]["engine"]["timing"] = "analytical"
    data["fleet"].append(analytical)
    path = os.path.join(folder, "tiny.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    return path


def recomputed_catalog_sha256(folder: str = CATALOG) -> str:
    """The catalog digest as sim.catalog.digest documents it, computed here independently:
    every YAML file and accuracy.json by name, each framed by its name and byte length."""
    names = sorted([n for n in os.listdir(folder) if n.endswith(".yaml")] + ["accuracy.json"])
    h = hashlib.sha256()
    for name in names:
        with open(os.path.join(folder, name), "rb") as fh:
            data = fh.read()
        h.update(f"{name}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """One traced run of the tiny scenario, its folder and its console output."""
    tmp = tmp_path_factory.mktemp("prov")
    out = str(tmp / "run")
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert main(["run", tiny_scenario(str(tmp)), "--out", out, "--trace"]) == 0
    return out, console.getvalue()


def load(folder, name):
    with open(os.path.join(folder, name)) as fh:
        return json.load(fh)


def check_record(record: dict, pools: list[dict]) -> None:
    assert set(record) == {"dcsim_version", "catalog_sha256", "timing"}
    assert record["dcsim_version"] == sim.__version__ == "0.1.0"
    assert re.fullmatch(r"[0-9a-f]{64}", record["catalog_sha256"])
    assert record["catalog_sha256"] == recomputed_catalog_sha256()
    assert record["timing"] == {p["pool"]: p["timing"] for p in pools}


def test_summary_json_records_version_catalog_and_each_pools_timing(run_folder):
    out, console = run_folder
    summary = load(out, "summary.json")
    check_record(summary["provenance"], summary["pools"])
    timing = summary["provenance"]["timing"]
    assert list(timing) == ["p", "q"]
    assert timing["p"].startswith("measured (aiconfigurator-core ") and timing["q"].startswith("analytical (")
    for pool, label in timing.items():      # the very text of the console's timing line
        assert f"{pool}: engine " in console and f"; timing: {label}" in console
    assert "provenance" not in console and summary["provenance"]["catalog_sha256"] not in console
    assert list(summary)[-1] == "provenance"      # after every section, which keep their places


def test_trace_metadata_and_manifest_carry_the_same_record(run_folder):
    out, _ = run_folder
    summary = load(out, "summary.json")
    assert load(out, "trace.json")["metadata"]["provenance"] == summary["provenance"]
    manifest = load(out, "manifest.json")
    assert manifest["dcsim_version"] == sim.__version__
    assert manifest["catalog_sha256"] == summary["provenance"]["catalog_sha256"]


def test_the_report_page_ends_with_a_provenance_footer(run_folder):
    out, _ = run_folder
    record = load(out, "summary.json")["provenance"]
    page = html_report.render(out)
    footer = re.search(r"<footer>(.*?)</footer>", page, re.S)
    assert footer and page.index("<footer>") > page.index("<h2>Cost</h2>")
    text = html.unescape(re.sub(r"<[^>]+>", "", footer.group(1)))
    assert f"dcsim {record['dcsim_version']}" in text and f"catalog sha256 {record['catalog_sha256']}" in text
    for pool, label in record["timing"].items():
        assert f"timing {pool}: {label}" in text
    assert provenance.text(None).startswith("provenance not recorded")     # results of an older dcsim


class InProcess:
    """An executor that runs the sweep's tasks here, one after another: a tiny sweep needs
    no pool of fresh processes."""

    def map_unordered(self, fn, tasks, *args):
        for task in tasks:
            yield task, fn(task, *args)


def test_a_sweep_table_and_its_report_carry_the_record_per_row(tmp_path):
    base = tiny_scenario(str(tmp_path))
    spec = {"name": "prov", "base": os.path.basename(base), "seeds": 1,
            "axes": [{"name": "rate", "path": "workload.0.rate", "values": [2, 4], "unit": "/s"}]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep = sw.load_sweep(str(path), str(tmp_path / "out"))
    sw.run_sweep(sweep, InProcess(), write_files=False)
    df = analysis.load_sweep(str(tmp_path / "out"))
    assert (df["status"] == "ok").all() and len(df) == 2
    summary = load(os.path.join(tmp_path / "out", df["folder"].iloc[0]), "summary.json")
    record = summary["provenance"]
    check_record(record, summary["pools"])
    assert (df["provenance.dcsim_version"] == record["dcsim_version"]).all()
    assert (df["provenance.catalog_sha256"] == record["catalog_sha256"]).all()
    for pool, label in record["timing"].items():
        assert (df[f"provenance.timing.{pool}"] == label).all()
    # the readers of the table still read it: text columns among the figures change nothing
    assert len(sweep_analysis.pareto_front(df)) >= 1
    page = html_report.render(str(tmp_path / "out"))
    line = provenance.sweep_text(df)
    assert f"<footer><p class=meta>{html.escape(line)}</p></footer>" in page
    assert record["catalog_sha256"] in line and all(f"timing {p}: {t}" in line for p, t in record["timing"].items())


def test_a_sweep_footer_names_every_install_its_rows_came_from():
    df = pd.DataFrame({"provenance.dcsim_version": ["0.1.0", "0.2.0", None],
                       "provenance.catalog_sha256": ["a" * 64, "a" * 64, None],
                       "provenance.timing.p": ["analytical (x)", "analytical (x)", None]})
    assert provenance.sweep_text(df) == f"dcsim 0.1.0 or 0.2.0; catalog sha256 {'a' * 64}; timing p: analytical (x)"


def test_one_changed_catalog_byte_changes_the_digest(tmp_path):
    for name in digest.data_files():
        shutil.copy(os.path.join(CATALOG, name), tmp_path / name)
    assert digest.sha256_of(str(tmp_path)) == digest.catalog_sha256() == recomputed_catalog_sha256()
    assert "accuracy.json" in digest.data_files() and "devices.yaml" in digest.data_files()
    for name in ("models.yaml", "accuracy.json"):
        changed = tmp_path / name
        original = changed.read_bytes()
        changed.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
        assert digest.sha256_of(str(tmp_path)) != digest.catalog_sha256()
        changed.write_bytes(original)
    assert digest.sha256_of(str(tmp_path)) == digest.catalog_sha256()


def test_same_results_leaves_the_provenance_out(tmp_path, capsys):
    frame = pd.DataFrame({"ttft": [0.1, 0.2]})
    summary = {"requests": {"arrived": 2}, "run": {"events": 9}}

    def write(folder, s):
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(s))
        frame.to_parquet(folder / "requests.parquet")

    write(tmp_path / "old" / "case", summary)           # an older commit: no provenance at all
    write(tmp_path / "new" / "case", {**summary, "provenance": {"dcsim_version": "0.2.0", "catalog_sha256": "b" * 64,
                                                                "timing": {"p": "analytical (x)"}}})
    assert compare(str(tmp_path / "old"), str(tmp_path / "new")) == 0
    assert "without its provenance" in capsys.readouterr().out
    write(tmp_path / "figure" / "case", {**summary, "run": {"events": 10}, "provenance": {}})
    assert compare(str(tmp_path / "old"), str(tmp_path / "figure")) == 1


def test_compare_rows_carry_each_runs_timing_version_and_catalog(tmp_path):
    path = tiny_scenario(str(tmp_path))
    out = tmp_path / "cmp"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["compare", path, "--out", str(out)]) == 0
    [row] = json.loads((out / "compare.json").read_text())
    assert row["dcsim_version"] == sim.__version__
    assert row["catalog_sha256"] == recomputed_catalog_sha256()
    assert row["timing"].startswith("p: measured (aiconfigurator-core ") and "; q: analytical (" in row["timing"]
    assert list(pd.read_csv(out / "compare.csv")["timing"]) == [row["timing"]]


def test_plan_json_records_the_install_and_each_trials_timing(tmp_path):
    path = tiny_scenario(str(tmp_path))
    with open(path) as fh:
        data = yaml.safe_load(fh)
    data["fleet"] = data["fleet"][:1]
    data["slo"] = {"ttft_p99": "5s"}
    with open(path, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    out = tmp_path / "plan"
    with contextlib.redirect_stdout(io.StringIO()):
        main(["plan", path, "--devices", "nvidia-h100-sxm", "--tp", "1", "--max-devices", "2", "--out", str(out)])
    doc = json.loads((out / "plan.json").read_text())
    assert doc["provenance"] == provenance.install()
    assert doc["trials"] and all(t["timing"].startswith("p: measured (aiconfigurator-core ") for t in doc["trials"])


def test_the_validation_report_names_dcsim_the_catalog_and_the_kernel_package():
    from sim.timing.database import package_version
    from sim.tools import fidelity_report
    line = fidelity_report._provenance()
    assert f"dcsim {sim.__version__}" in line and recomputed_catalog_sha256() in line
    assert f"aiconfigurator-core {package_version()}" in line
