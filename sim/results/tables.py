"""The summary's section tables that the console and the HTML report both show.

Each `*_rows` function turns one section of summary.json into (title, headers, rows) of text:
`sim.results.console` prints them with rich, `sim.results.html_report` writes them as HTML.
"""
from __future__ import annotations

from ..spec.units import duration_or_dash, format_duration


def or_dash(x, fmt="{:,.1f}"):
    """`x` in `fmt`, or '-' where it is None."""
    return "-" if x is None else fmt.format(x)


def sessions_rows(sessions: dict) -> tuple[str, list[str], list[list[str]]]:
    """(title, headers, rows) of the sessions table, for the console and the HTML report."""
    headers = ["stream", "started", "completed", "failed", "latency p50", "latency p99", "calls", "tokens",
               "PFLOP", "$ each"]
    rows = []
    for s in sessions["streams"]:
        lat = s["latency_s"]
        rows.append([s["stream"], f"{s['started']:,}", f"{s['completed']:,}", f"{s['failed']:,}",
                     duration_or_dash(lat["p50"]), duration_or_dash(lat["p99"]), or_dash(s["calls_per_session"]),
                     or_dash(s["tokens_per_session"], "{:,.0f}"), or_dash(s["pflop_per_session"], "{:.3g}"),
                     or_dash(s["usd_per_session"], "{:.4f}")])
    return "sessions (started in the window; latency from start to answer)", headers, rows


def pipeline_step_rows(sessions: dict) -> tuple[str, list[str], list[list[str]]]:
    """Each pipeline stream's steps and its answer's first token, each with its own latency."""
    headers = ["stream", "step", "what", "p50", "p90", "p99"]
    rows = []
    for s in sessions["streams"]:
        for step in s.get("steps") or []:
            lat = step["latency_s"]
            rows.append([s["stream"], str(step["step"]), step["what"],
                         *(duration_or_dash(lat[q]) for q in ("p50", "p90", "p99"))])
            if "of_which_before_answer_s" in step:
                before = step["of_which_before_answer_s"]
                rows.append([s["stream"], "", "  of which the steps before the answering call",
                             *(duration_or_dash(before[q]) for q in ("p50", "p90", "p99"))])
    return "pipeline steps (sessions started in the window and answered)", headers, rows


def prefix_cache_rows(pools: list[dict]) -> tuple[str, list[str], list[list[str]]]:
    headers = ["pool", "requests", "could reuse", "hits", "hit rate", "tokens cached", "prefill saved",
               "evicted blocks"]
    rows = []
    for p in pools:
        rate = p["hit_rate"]
        tok = p["token_hit_rate"]
        rows.append([p["pool"], f"{p['requests']:,}", f"{p['reusable_requests']:,}", f"{p['hits']:,}",
                     "-" if rate is None else f"{rate * 100:.1f}%",
                     f"{p['cached_tokens']:,}" + ("" if tok is None else f" ({tok * 100:.0f}%)"),
                     f"{format_duration(p['prefill_seconds_saved'])}, {p['prefill_pflop_saved']:.3g} PFLOP",
                     f"{p['evicted_blocks']:,}"])
    return "prefix cache (completed requests in the window)", headers, rows


def power_cap_rows(cap: dict) -> tuple[str, list[str], list[list[str]]]:
    headers = ["budget", "scope", "capped", "mean clock capped", "lowest clock", "peak drawn IT", "peak wanted IT"]
    kw = lambda w: "-" if w is None else f"{w / 1000:,.1f} kW"     # noqa: E731
    rows = [[kw(cap["budget_w"]), f"{cap['scope']} ({cap['scopes']})", f"{cap['capped_fraction'] * 100:.0f}%",
             or_dash(cap["mean_clock_when_capped"], "{:.0%}"), f"{cap['min_clock']:.0%}", kw(cap["peak_drawn_it_w"]),
             kw(cap["peak_wanted_it_w"])]]
    return "power cap (share of intervals the clock was lowered)", headers, rows


def head_nodes_busy(nodes: list[dict] | None) -> bool:
    """Whether any server's head node stretched host work or did more than run engine threads."""
    return bool(nodes) and any(n["host_stretch_max"] > 1.0 or n["cores_wanted_total"] > n["cores_wanted"]["engines"]
                               for n in nodes)


def head_node_rows(nodes: list[dict], most: int = 8) -> tuple[str, list[str], list[list[str]]]:
    """The servers whose host work stretched (the most stretched first), or all if none did."""
    stretched = sorted((n for n in nodes if n["host_stretch_max"] > 1.0), key=lambda n: -n["host_stretch_mean"])
    shown = (stretched or nodes)[:most]
    headers = ["server", "cores", "wanted", "engines", "front ends", "staging", "host work x", "peak x"]
    rows = [[n["server"], f"{n['cores']:,}", f"{n['cores_wanted_total']:.2f}", f"{n['cores_wanted']['engines']:.2f}",
             f"{n['cores_wanted']['frontend']:.2f}", f"{n['cores_wanted']['staging']:.2f}",
             f"{n['host_stretch_mean']:.2f}", f"{n['host_stretch_max']:.2f}"] for n in shown]
    more = len(stretched or nodes) - len(shown)
    title = "head nodes (CPU cores wanted on average; host work per iteration stretched by)"
    return title + (f", {more} more not shown" if more > 0 else ""), headers, rows


def _stat_pair(s: dict, fmt=duration_or_dash) -> str:
    """'p50 / p99' of a figure's quantiles."""
    return f"{fmt(s['p50'])} / {fmt(s['p99'])}"


def _ratio(x) -> str:
    """A ratio to three significant figures, or '-'."""
    return "-" if x is None else f"{x:.3g}"


def modalities_rows(modalities: dict) -> tuple[str, list[str], list[list[str]]]:
    """One row per request kind beyond chat text, each with the figures that apply to it."""
    headers = ["kind", "requests", "completed", "latency", "queue wait", "figures"]
    rows = []
    for kind, f in modalities.items():
        requests, completed, latency = f["requests"], f["completed"], f["latency_s"]
        if kind == "embedding":
            figures = f"{f['tokens_per_s']:,.0f} tok/s; ${or_dash(f['usd_per_m_tokens'], '{:.3f}')} per M tokens"
        elif kind == "image":
            figures = (f"{_stat_pair(f['time_per_step_s'])} per step, {or_dash(f['steps_mean'], '{:.0f}')} steps; "
                       f"{f['images_per_s']:.3g} images/s; ${or_dash(f['usd_per_image'], '{:.4f}')} per image")
        elif kind == "video":
            figures = (f"{_stat_pair(f['time_per_step_s'])} per step, {or_dash(f['steps_mean'], '{:.0f}')} steps; "
                       f"{f['videos_per_s']:.3g} videos/s, {f['video_seconds_per_s']:.3g} video s/s; "
                       f"${or_dash(f['usd_per_video'], '{:.3f}')} per video")
        elif kind == "speech_to_text":
            requests, completed, latency = f["clips"], f["clips_completed"], f["clip_latency_s"]
            figures = (f"clips of {or_dash(f['windows_per_clip'], '{:.2f}')} windows; real-time factor "
                       f"{_stat_pair(f['real_time_factor'], _ratio)}; {f['audio_seconds_per_s']:,.1f} audio s/s; "
                       f"${or_dash(f['usd_per_audio_hour'], '{:.3f}')} per audio hour")
        else:   # text_to_speech
            figures = (f"first audio {_stat_pair(f['time_to_first_audio_s'])}; real-time factor "
                       f"{_stat_pair(f['real_time_factor'], _ratio)}; {f['audio_seconds_per_s']:,.1f} audio s/s; "
                       f"${or_dash(f['usd_per_audio_hour'], '{:.3f}')} per audio hour")
        label = kind + (" (clips)" if kind == "speech_to_text" else "")
        rows.append([label, f"{requests:,}", f"{completed:,}", _stat_pair(latency),
                     duration_or_dash(f["queue_wait_s"]["p99"]), figures])
    return "request kinds (arriving in the window; p50 / p99)", headers, rows
