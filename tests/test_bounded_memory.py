"""Long runs keep their columns in scratch files (sim.core.column_store) and give the same results.

The 24-hour memory figure is a benchmark (`make bench`, case bench-24h); here, that the
spilling path changes nothing: same summary, same requests.parquet, same devices.parquet.
"""
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sim import simulation
from sim.core import column_store
from sim.core.column_store import ColumnStore, in_chunks
from sim.core.metrics import BusyLog, RequestTable
from sim.results.report import write_results
from sim.results.summary import summarize
from sim.scenario import load_scenario

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_spilled_column_keeps_its_data_after_its_pages_are_let_go():
    store = ColumnStore(spill=True)
    a = store.column(300_000, float, np.nan)
    assert np.isnan(a).all()
    a[:1000] = np.arange(1000)
    store.release(a, 200_000)
    store.drop(a)
    assert a[999] == 999.0 and np.isnan(a[1000]) and np.isnan(a[-1])
    b = store.grow(a, 600_000)      # longer, the same file: old rows kept, new ones zero
    assert b[999] == 999.0 and np.isnan(b[299_999]) and (b[300_000:] == 0.0).all()


def test_in_memory_store_makes_plain_arrays():
    store = ColumnStore(spill=False)
    a = store.column(5, np.int32, -1)
    assert a.tolist() == [-1] * 5
    assert store.grow(a, 8).tolist() == [-1] * 5 + [0] * 3


def test_chunks_cover_every_row_once():
    cols = {"x": np.arange(10), "y": np.arange(10) * 2}
    seen = [(a, c["x"].tolist(), c["y"].tolist()) for a, c in in_chunks(cols, rows=4)]
    assert seen == [(0, [0, 1, 2, 3], [0, 2, 4, 6]), (4, [4, 5, 6, 7], [8, 10, 12, 14]), (8, [8, 9], [16, 18])]


def test_busy_log_grows_the_same_in_memory_and_spilled(monkeypatch):
    monkeypatch.setattr(column_store, "CHUNK_ROWS", 64)
    logs = [BusyLog(capacity=16), BusyLog(capacity=16, spill=True)]
    for log in logs:
        for i in range(1000):
            log.add(i % 3, i * 0.5, i * 0.5 + 0.25, 1 + i % 4, 10 * i, i % 7, 1.0 - i / 1e4, 1e-3 * (i % 5))
    a, b = (log.columns() for log in logs)
    for name in BusyLog.FIELDS:
        np.testing.assert_array_equal(a[name], b[name])


def test_columns_of_some_rows_are_those_rows_of_every_column():
    n = 50
    rng = np.random.default_rng(1)
    t = RequestTable(np.sort(rng.uniform(0, 10, n)), np.zeros(n), rng.integers(1, 100, n), rng.integers(1, 50, n))
    t.first_token[:40] = t.arrival[:40] + 0.1
    t.finished[:30] = t.first_token[:30] + 1.0
    t.state[:30] = 1
    mask = rng.random(n) < 0.5
    whole, part, rows = t.columns(), t.columns(mask), t.columns(np.flatnonzero(mask))
    assert set(whole) == set(part) == set(rows) and "tpot" in whole and "x" not in whole
    for name in whole:
        np.testing.assert_array_equal(whole[name][mask], part[name])
        np.testing.assert_array_equal(whole[name][mask], rows[name])
    with pytest.raises(KeyError):
        whole["x"]


def _run_into(folder, spill_rows, monkeypatch):
    monkeypatch.setenv(column_store.SPILL_ROWS_ENV, str(spill_rows))
    # small chunks, so the run releases, reads and writes many of them
    monkeypatch.setattr(column_store, "CHUNK_ROWS", 512)
    monkeypatch.setattr(column_store, "WRITE_ROWS", 300)
    monkeypatch.setattr(simulation, "SETTLE_EVERY", 100)
    scenario = load_scenario(os.path.join(ROOT, "scenarios", "quickstart.yaml"), ["duration=90s"])
    result = simulate_checked(scenario, spill=spill_rows == 0)
    summary = summarize(result)
    write_results(result, summary, str(folder))
    return folder


def simulate_checked(scenario, spill: bool):
    result = simulation.simulate(scenario)
    assert result.table.store.spill is spill and result.log.store.spill is spill
    return result


def test_spilled_run_gives_the_in_memory_results(tmp_path, monkeypatch):
    memory = _run_into(tmp_path / "memory", 10 ** 9, monkeypatch)
    spilled = _run_into(tmp_path / "spilled", 0, monkeypatch)
    a, b = (json.loads((f / "summary.json").read_text()) for f in (memory, spilled))
    for s in (a, b):
        s["run"].pop("wall_seconds")
    assert a == b
    assert a["requests"]["arrived"] > 3000      # more rows than several chunks
    assert pq.ParquetFile(spilled / "requests.parquet").num_row_groups > 10   # written a row group at a time
    for parquet in ("requests.parquet", "devices.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(memory / parquet), pd.read_parquet(spilled / parquet))


def _file_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssFile:")) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_let_go_pages_leave_memory_even_through_views():
    store = ColumnStore(spill=True)
    a = store.column(10_000_000, float)      # 80 MB
    a[:] = 1.0
    before = _file_rss_mb()
    view = a[:9_000_000]
    store.drop(view[:4_000_000])
    store.drop(view, 4_000_000)
    assert before - _file_rss_mb() > 60
    assert a[:9_000_000].sum() == 9_000_000.0      # read back from the file
