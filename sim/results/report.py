"""Results on disk (the console's view of them: sim.results.console).

A run's folder holds `summary.json` (every headline figure and the scenario it came from),
`scenario.yaml` (the fully resolved scenario), `requests.parquet` (one row per request) and
`devices.parquet` (per replica and time bin: busy fraction, KV occupancy, power).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ..core import column_store
from ..core.column_store import in_chunks
from ..core.metrics import REASONS, STATE_NAMES
from ..demand.media import KINDS
from ..simulation import RunResult
from .folder import staged
from .summary.money import request_costs
from .summary.usage import engine_watts, pool_of_requests, powered_share, unpowered_share


def requests_frame(result: RunResult, summary: dict | None = None, rows: slice = slice(None)) -> pd.DataFrame:
    """One row per request (of `rows`); with the run's summary, each completed request's cost
    too (its tokens at its pool's input and output prices)."""
    t = result.table
    cols = t.columns(rows)
    frame = pd.DataFrame(dict(cols))
    frame["state"] = pd.Categorical.from_codes(cols["state"], categories=list(STATE_NAMES.values()))
    frame["reason"] = _names(list(REASONS.values()), cols["reason"])
    frame["stream"] = _names(result.stream_names, cols["stream"])
    frame["pool"] = _names([r.pool for r in result.replicas] + [""], cols["replica"])   # -1: none
    spec = result.scenario.spec
    # the requests the summary's latency figures describe: arrived in [warmup, duration)
    frame["measured"] = (frame["arrival"] >= spec.warmup) & (frame["arrival"] < spec.duration)
    frame["tenant"] = _names([s.tenant or s.name for s in spec.workload], cols["stream"])
    frame["priority"] = t.priority[rows]
    if t.modality.any():   # requests beyond chat text (sim.demand.media)
        frame["modality"] = pd.Categorical.from_codes(t.modality[rows], categories=list(KINDS))
        frame["clip"] = t.clip[rows]
        frame["media_seconds"] = t.media_seconds[rows]
        frame["samples"] = t.samples[rows]
        frame["pixels"] = t.pixels[rows]
    if summary is not None:
        prices = np.array([[np.nan if p[k] is None else p[k] / 1e6 for k in
                            ("usd_per_m_input_tokens", "usd_per_m_output_tokens")] for p in summary["pools"]]
                          + [[np.nan, np.nan]])
        frame["usd"] = request_costs(t, pool_of_requests(result, rows), prices, rows)
    return frame


def _names(names: list[str], codes: np.ndarray) -> np.ndarray:
    """Each code's name (code -1 is the last name)."""
    return np.array(names, dtype=object)[codes]


def write_requests(result: RunResult, summary: dict, path: str) -> None:
    """requests.parquet; a table kept in scratch files goes out a row group at a time."""
    t = result.table
    if not t.store.spill:
        requests_frame(result, summary).to_parquet(path, index=False)
        return
    writer = None
    try:
        step = column_store.WRITE_ROWS
        for a in range(0, t.n, step):
            part = pa.Table.from_pandas(requests_frame(result, summary, slice(a, a + step)), preserve_index=False)
            writer = writer or pq.ParquetWriter(path, part.schema)
            writer.write_table(part)
            t.let_go()
    finally:
        if writer is not None:
            writer.close()


def devices_frame(result: RunResult, bins: int = 200) -> pd.DataFrame:
    """Per replica and time bin (`time` is the bin's start): busy fraction (share of the bin
    spent running iterations), GPU active fraction (busy minus the host's per-iteration work,
    while the devices wait), KV occupancy, tokens processed per second, power (its devices'
    draw from the active fraction and clock, plus their share of server overhead)."""
    end = max(result.end_time, result.scenario.spec.duration)
    width = max(end / bins, 1e-3)
    nbins = int(math.ceil(end / width))
    n = len(result.replicas)
    busy = np.zeros((n, nbins))
    kv = np.zeros((n, nbins))
    tokens = np.zeros((n, nbins))
    host = np.zeros((n, nbins))
    dyn = np.zeros((n, nbins))       # computing seconds weighted by clock^3
    for rep, s, e, blocks, tok, its, clock, wait in _stretches(result.log):
        host_share = min(its * wait / max(e - s, 1e-300), 1.0)
        b0, b1 = int(s // width), min(int(e // width), nbins - 1)
        for b in range(b0, b1 + 1):
            ov = min(e, (b + 1) * width) - max(s, b * width)
            if ov > 0:
                share = ov / (e - s)
                busy[rep, b] += ov
                kv[rep, b] += ov * blocks
                tokens[rep, b] += tok * share
                host[rep, b] += host_share * ov
                dyn[rep, b] += (1.0 - host_share) * ov * clock ** 3
    active = np.maximum(busy - host, 0.0) / width
    dyn /= width
    busy /= width
    drawing = _drawing_by_bin(result, nbins, width)
    rows = []
    pools = {p.name: p for p in result.scenario.pools}
    for info in result.replicas:
        dep = pools[info.pool].deployment
        u = np.clip(busy[info.index], 0.0, 1.0)
        a = np.clip(active[info.index], 0.0, 1.0)
        d = np.clip(dyn[info.index], 0.0, 1.0)
        watts = [engine_watts(dep.device, x, y, z, info.tp) for x, y, z in zip(d, a, drawing[info.index], strict=True)]
        rows.append(pd.DataFrame({
            "time": np.arange(nbins) * width,
            "replica": info.index,
            "pool": info.pool,
            "busy_fraction": u,
            "gpu_active": a,
            "kv_occupancy": kv[info.index] / (width * info.total_blocks),
            "tokens_per_s": tokens[info.index] / width,
            # its devices' draw (clock^3-weighted while capped) plus their share of server
            # overhead, none while its server is down or its replica stopped
            "power_w": np.array([np.nan if w is None else w for w in watts]),
        }))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _stretches(log):
    """The busy log's rows as tuples, a chunk at a time."""
    for _, c in in_chunks(log.columns(), log.store):
        yield from zip(c["replica"].tolist(), c["start"].tolist(), c["end"].tolist(), c["kv_blocks"].tolist(),
                       c["tokens"].tolist(), c["iterations"].tolist(), c["clock"].tolist(), c["host_wait"].tolist(),
                       strict=True)


def _drawing_by_bin(result: RunResult, nbins: int, width: float) -> np.ndarray:
    """Per engine and bin: the share of the bin its server had power and its replica ran."""
    out = np.ones((len(result.replicas), nbins))
    autoscaled = [p for p in result.scenario.pools if p.spec.autoscale is not None]
    if result.failures is None and not autoscaled:
        return out
    for pool in result.scenario.pools:
        idx = np.array([r.index for r in result.replicas if r.pool == pool.name])
        for b in range(nbins):
            w0 = b * width
            out[idx, b] = powered_share(result, pool, w0, w0 + width) * (1.0 - unpowered_share(result, idx, w0,
                                                                                                w0 + width))
    return out


def write_results(result: RunResult, summary: dict, out_dir: str, also=None) -> str:
    """Write the run's results folder whole (sim.results.folder): it replaces an earlier one
    only once every file, and the manifest after them, is written. `also(folder)` writes
    further files into it (a trace)."""
    with staged(out_dir) as folder:
        with open(os.path.join(folder, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2, default=_jsonable)
        with open(os.path.join(folder, "scenario.yaml"), "w") as fh:
            yaml.safe_dump(result.scenario.resolved_dict(), fh, sort_keys=False)
        write_requests(result, summary, os.path.join(folder, "requests.parquet"))
        devices_frame(result).to_parquet(os.path.join(folder, "devices.parquet"), index=False)
        if result.fabric is not None:
            result.fabric.link_frame().to_parquet(os.path.join(folder, "links.parquet"), index=False)
        if also is not None:
            also(folder)
    return out_dir


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    raise TypeError(f"not serializable: {type(x)}")
