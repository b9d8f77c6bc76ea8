"""The catalog reference: devices, models and engine presets as the catalog files write them,
each figure beside the source it was read from."""
from __future__ import annotations

import yaml

from .. import catalog
from ..catalog import engines
from ..catalog.models import ModelSpec
from .markdown import code, plain, table

# the figures a capacity planner compares devices by, in the overview table
DEVICE_COLUMNS = [("memory", "memory"), ("memory bandwidth", "memory_bandwidth"), ("bf16", "peak_flops.bf16"),
                  ("fp8", "peak_flops.fp8"), ("fp4", "peak_flops.fp4"), ("int8", "peak_flops.int8"),
                  ("scale-up / direction", "scale_up_bandwidth"), ("TDP", "tdp"), ("list price $", "list_price_usd"),
                  ("$ / hour", "hourly_usd")]
MODEL_COLUMNS = ["name", "architecture", "modality", "params", "layers", "hidden", "heads", "kv_heads", "ffn",
                 "experts", "active_experts", "max_context"]


def written(value) -> str:
    """A catalog value as the YAML writes it (mappings and lists in flow style)."""
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _flat(entry: dict, prefix: str = "") -> dict[str, object]:
    """A device entry's figures by dotted name; `peak_flops` and `node` opened up, as the
    overview and the per-figure sources name them."""
    out = {}
    for key, value in entry.items():
        if key == "sources":
            continue
        if key in ("peak_flops", "node") and isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _source_of(entry: dict, name: str) -> str:
    """The source the catalog gives a figure: its own, or its parent mapping's (peak_flops)."""
    if name.startswith("node."):
        return (entry.get("node") or {}).get("sources", {}).get(name[5:], "")
    sources = entry.get("sources", {})
    return sources.get(name) or sources.get(name.split(".")[0], "")


# ---- devices -------------------------------------------------------------------------------

def devices() -> str:
    entries = catalog.device_entries()
    rows = []
    for key, entry in entries.items():
        flat = _flat(entry)
        rows.append([f"[{code(key)}](#{_device_anchor(key)})", plain(entry.get("name", ""))]
                    + [written(flat[f]) if f in flat else "-" for _, f in DEVICE_COLUMNS])
    parts = ["Peak FLOP/s are dense (no structured sparsity), per chip; bandwidths per chip, scale-up per "
             "direction. `-`: the catalog gives no figure (see each device's sources for why).", "",
             table(["device", "name"] + [h for h, _ in DEVICE_COLUMNS], rows)]
    for key, entry in entries.items():
        parts += ["", f"### `{key}` {{#{_device_anchor(key)}}}", "", plain(entry.get("name", "")), "",
                  table(["figure", "value", "source"],
                        [[code(name), code(written(value)), plain(_source_of(entry, name))]
                         for name, value in _flat(entry).items()])]
    return "\n".join(parts) + "\n"


def _device_anchor(key: str) -> str:
    return "device-" + key.replace(".", "-")


# ---- models --------------------------------------------------------------------------------

def models() -> str:
    entries = catalog.model_entries()
    rows = [[code(key)] + [_model_figure(entry, c) for c in MODEL_COLUMNS] for key, entry in entries.items()]
    parts = [table(["model"] + MODEL_COLUMNS, rows), "", "Sources:", ""]
    parts += [f"- {code(key)}: {plain(entry.get('source', ''))}" for key, entry in entries.items()]
    return "\n".join(parts) + "\n"


def _model_figure(entry: dict, column: str) -> str:
    field = ModelSpec.model_fields.get(column)
    value = entry.get(column, None if field is None or field.is_required() else field.default)
    if value is None or (column in ("experts", "active_experts") and not value):
        return "-"
    if column == "params":
        return f"{float(value) / 1e9:,.3g}B"
    if column == "name":
        return plain(value)
    return written(value)


# ---- engine presets ------------------------------------------------------------------------

def engine_presets() -> str:
    parts = []
    for framework, entry in engines.frameworks().items():
        default = str(entry["default_version"])
        parts += [f"### {plain(entry['name'])} (`framework: {framework}`)", "",
                  f"Versions: {', '.join(code(v) for v in entry['versions'])}; default {code(default)}.", ""]
        for version in entry["versions"]:
            values = engines.preset(framework, version)
            sources = values.pop("sources", {})
            rows = [[code(k), code(written(v)), plain(sources.get(k, ""))] for k, v in values.items()]
            mark = " (default)" if version == default else ""
            parts += [f"#### {plain(entry['name'])} {version}{mark}", "",
                      table(["field", "value", "source"], rows), ""]
    return "\n".join(parts).rstrip() + "\n"
