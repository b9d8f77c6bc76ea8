"""What a run writes: every file of a results folder, and every key and column in them, with
its unit and meaning.

The outputs reference (docs/reference/outputs.md) is generated from these declarations, and
tests/test_output_columns.py holds real runs' files against them, so a key or column added,
renamed or dropped without a word here fails a test instead of leaving the docs behind.

A JSON key is named by its path: `requests.arrived`, `pools[].tp` (a key of each item of the
list `pools`). A key whose children are declared is checked key by key; one whose children
are not (a map keyed by pool or target name, a statistics object) is checked only for being
there. `when` says when a key may be missing or null; a key without one is always there.
"""
from __future__ import annotations

from .output_schema import STATS, Column, Key, OutputFile, children
from .summary_keys import SUMMARY

__all__ = ["STATS", "Column", "Key", "OutputFile", "children", "FILES", "SUMMARY", "TABLES", "TRACE", "MANIFEST",
           "JSON_FILES"]

FILES = (
    OutputFile("summary.json", "every headline figure of the run, with the scenario it came from"),
    OutputFile("scenario.yaml", "the scenario as it ran: included and referenced files read in, the variant and "
                                "--set changes applied"),
    OutputFile("requests.parquet", "one row per request"),
    OutputFile("devices.parquet", "per replica and time bin (200 bins over the run): utilization, KV cache, "
                                  "power"),
    OutputFile("links.parquet", "per directed link and time bin: bytes carried and utilization, links that "
                                "carried any", "the scenario has a topology"),
    OutputFile("trace.json", "the run as a timeline (Chrome Trace Event Format) for ui.perfetto.dev",
               "`dcsim run --trace` (or --trace-window, --trace-requests)"),
    OutputFile("manifest.json", "written last: the folder is complete and each file has the size it lists"),
)

# ---- the parquet tables --------------------------------------------------------------------

MEDIA = "requests beyond chat text (speech, image, video)"

REQUESTS = (
    Column("id", "int64", "", "request id, in arrival order"),
    Column("stream", "string", "", "its workload stream"),
    Column("arrival", "float64", "s", "arrival time"),
    Column("prompt_tokens", "int64", "tokens", "prompt tokens (a system prompt included)"),
    Column("output_tokens", "int64", "tokens", "output tokens"),
    Column("replica", "int32", "", "the replica that served it (-1: none)"),
    Column("queue_wait", "float64", "s", "arrival to admission into a batch (NaN if never admitted)"),
    Column("ttft", "float64", "s", "time to first token (NaN without one)"),
    Column("tpot", "float64", "s", "time per output token after the first (NaN unless completed with 2+ tokens)"),
    Column("e2e", "float64", "s", "arrival to last token (NaN unless completed)"),
    Column("finished", "float64", "s", "when it completed or was turned away (NaN while in flight)"),
    Column("state", "category", "", "completed, rejected, shed, failed or in_flight"),
    Column("reason", "string", "", "why it was rejected, shed or failed (empty otherwise)"),
    Column("preemptions", "int32", "count", "times it was preempted"),
    Column("retries", "int32", "count", "times it was sent again after a failure"),
    Column("start_wait", "float64", "s", "time it waited at the router for a replica to start"),
    Column("cached_tokens", "int64", "tokens", "prompt tokens the prefix cache held (prefill skipped)"),
    Column("session", "int64", "", "the session it is a call of (-1: none)"),
    Column("final", "bool", "", "the call that answers its session"),
    Column("kv_transfer_bytes", "float64", "B", "KV cache moved from prefill to decode (disaggregated serving)"),
    Column("kv_transfer_s", "float64", "s", "time that move took (NaN without one)"),
    Column("longest_stall", "float64", "s", "its longest gap between two tokens"),
    Column("pool", "string", "", "the pool that served it (empty: none)"),
    Column("measured", "bool", "", "arrived in [warmup, duration): counted in the latency figures"),
    Column("tenant", "string", "", "its stream's tenant"),
    Column("priority", "int64", "", "its stream's class"),
    Column("modality", "category", "", "text, embedding, speech_to_text, text_to_speech, image or video", MEDIA),
    Column("clip", "int64", "", "speech to text: the row of its clip's first window", MEDIA),
    Column("media_seconds", "float64", "s", "seconds of audio (or video) it carries", MEDIA),
    Column("samples", "int64", "count", "images (video: clips) it asks for", MEDIA),
    Column("pixels", "float64", "count", "output pixels the VAE decodes", MEDIA),
    Column("usd", "float64", "$", "what it cost: its tokens at its pool's input and output prices"),
)

DEVICES = (
    Column("time", "float64", "s", "the bin's start"),
    Column("replica", "int64", "", "the replica"),
    Column("pool", "string", "", "its pool"),
    Column("busy_fraction", "float64", "fraction", "share of the bin it ran iterations"),
    Column("gpu_active", "float64", "fraction", "busy less the host's per-iteration work, while the devices wait"),
    Column("kv_occupancy", "float64", "fraction", "KV cache in use"),
    Column("tokens_per_s", "float64", "tokens/s", "tokens processed"),
    Column("power_w", "float64", "W", "its devices' draw and their share of server overhead (NaN without a TDP)"),
)

LINKS = (
    Column("time", "float64", "s", "the bin's start"),
    Column("src", "string", "", "the link's sending node"),
    Column("dst", "string", "", "its receiving node"),
    Column("bytes", "float64", "B", "bytes carried in the bin"),
    Column("utilization", "float64", "fraction", "bytes over the link's capacity in the bin"),
)

TABLES = {"requests.parquet": REQUESTS, "devices.parquet": DEVICES, "links.parquet": LINKS}

# ---- trace.json and manifest.json ----------------------------------------------------------

TRACE = (
    Key("traceEvents", "us", "the events (Chrome Trace Event Format); times in microseconds"),
    Key("displayTimeUnit", "", "ms: how viewers show times"),
    Key("metadata", "", "what the trace holds (Perfetto shows it as json_metadata.*)"),
    Key("metadata.generator", "", "dcsim run --trace"),
    Key("metadata.scenario", "", "the scenario's name"),
    Key("metadata.seed", "", "the run's seed"),
    Key("metadata.run_end_s", "s", "when the run ended"),
    Key("metadata.window_s", "s", "[start, end] of the traced window (end null: to the run's end)"),
    Key("metadata.window", "", "the window in words"),
    Key("metadata.time_unit", "", "us"),
    Key("metadata.max_events", "count", "the event budget"),
    Key("metadata.events", "count", "events written"),
    Key("metadata.batch_stretches", "", "batch stretches in the window, kept, and every k-th kept"),
    Key("metadata.flows", "", "network flows in the window, kept, every k-th kept, and whether recorded"),
    Key("metadata.requests", "", "requests in the window, the --trace-requests cap, and what was kept"),
    Key("metadata.note", "", "what sampling dropped, or why something is missing (empty: nothing)"),
    Key("metadata.provenance", "", "as summary.json's provenance"),
    Key("metadata.provenance.dcsim_version", "", "the dcsim version"),
    Key("metadata.provenance.catalog_sha256", "", "SHA-256 of the catalog files that set figures"),
    Key("metadata.provenance.timing", "", "pool -> its timing source"),
)

MANIFEST = (
    Key("complete", "", "true: the run finished writing the folder"),
    Key("dcsim_version", "", "the dcsim version that wrote it"),
    Key("catalog_sha256", "", "SHA-256 of the catalog files that set figures"),
    Key("scenario_sha256", "", "SHA-256 of scenario.yaml", "null without scenario.yaml"),
    Key("files", "B", "file -> its size; a reader accepts the folder only if every size matches"),
)

JSON_FILES = {"summary.json": SUMMARY, "trace.json": TRACE, "manifest.json": MANIFEST}
