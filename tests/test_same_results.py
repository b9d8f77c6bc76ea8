"""benchmarks/same_results.py: what counts as the same results."""
from __future__ import annotations

import json

import pandas as pd

from benchmarks.same_results import compare


def write(folder, summary: dict, requests: pd.DataFrame):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    requests.to_parquet(folder / "requests.parquet")


def test_only_wall_time_may_differ(tmp_path):
    frame = pd.DataFrame({"ttft": [0.1, 0.2]})
    summary = {"requests": {"arrived": 2}, "run": {"wall_seconds": 1.0, "events": 9}}
    write(tmp_path / "a" / "case", summary, frame)
    write(tmp_path / "b" / "case", {**summary, "run": {"wall_seconds": 7.5, "events": 9}}, frame)
    assert compare(str(tmp_path / "a"), str(tmp_path / "b")) == 0


def test_a_changed_figure_order_or_row_differs(tmp_path):
    frame = pd.DataFrame({"ttft": [0.1, 0.2]})
    summary = {"requests": {"arrived": 2, "completed": 2}, "run": {"events": 9}}
    write(tmp_path / "a" / "case", summary, frame)
    write(tmp_path / "figure" / "case", {**summary, "run": {"events": 10}}, frame)
    write(tmp_path / "order" / "case", {"run": {"events": 9}, "requests": summary["requests"]}, frame)
    write(tmp_path / "row" / "case", summary, pd.DataFrame({"ttft": [0.1, 0.25]}))
    for other in ("figure", "order", "row"):
        assert compare(str(tmp_path / "a"), str(tmp_path / other)) == 1
