"""Figures of requests beyond chat text: media, sessions, prefix reuse."""
from __future__ import annotations

import numpy as np

from ...core.metrics import COMPLETED, unserved
from ...demand import media
from ...demand.sessions import CALL
from ...simulation import RunResult
from ...timing import kernels
from .stats import stats


def request_flops(result: RunResult, pool_index: np.ndarray) -> np.ndarray:
    """Model FLOPs each request took: 2 x active parameters x tokens computed (its prompt,
    less what the prefix cache held, plus its output); attention is not counted. Requests to
    speech-to-text and diffusion models by their own formulas (`sim.demand.media.request_flops`:
    a window's encoder and decoder tokens; steps x passes x samples x a transformer pass,
    attention included, plus text encoders and VAE)."""
    active = np.array([p.deployment.model.computed_active_params() for p in result.scenario.pools] + [np.nan])
    t = result.table
    flops = 2.0 * active[pool_index] * (t.prompt - t.cached + t.output)
    for k, pool in enumerate(result.scenario.pools):
        model = pool.deployment.model
        if model.diffusion is not None or model.modality == "speech_to_text":
            mine = pool_index == k
            flops[mine] = media.request_flops(model, t.prompt[mine], t.output[mine], t.samples[mine], t.pixels[mine])
    return flops


def modalities_section(result: RunResult, cols: dict, measured, done, finished_in, window: float,
                usd: np.ndarray, pool_index: np.ndarray) -> dict:
    """Figures of each request kind beyond chat text that the run holds, in its own terms
    (`sim.demand.media`), and what a unit of it costs (its requests' share of their pools' hour, as
    for tenants, over the units finished in the window). The fleet-level latency section keeps
    every request; there a request to which a figure does not apply has none (an image has no
    first token: no TTFT or TPOT)."""
    t = result.table
    out = {}

    def per(finished, units: float, scale: float = 1.0):
        """Dollars per unit (x scale) of the requests finished in the window."""
        spent = usd[finished]
        return None if np.isnan(spent).any() or units <= 0 else float(spent.sum()) / units * scale

    for code in np.unique(t.modality).tolist():
        kind = media.KINDS[code]
        if kind == "text":
            continue
        mine = t.modality == code
        m, d, f = measured & mine, done & mine, finished_in & mine
        fig = {"requests": int(m.sum()), "completed": int(d.sum()),
               "turned_away": int((m & unserved(t.state)).sum()),
               "latency_s": stats(cols["e2e"][d]), "queue_wait_s": stats(cols["queue_wait"][d])}
        if kind == "embedding":
            fig["tokens_per_s"] = float(t.prompt[f].sum()) / window
            fig["usd_per_m_tokens"] = per(f, float(t.prompt[f].sum()), 1e6)
        elif kind in ("image", "video"):
            with np.errstate(invalid="ignore", divide="ignore"):
                per_step = (t.finished - t.admitted) / t.output
            fig["steps_mean"] = float(t.output[d].mean()) if d.any() else None
            fig["time_per_step_s"] = stats(per_step[d])
            if kind == "image":
                fig["images_per_s"] = float(t.samples[f].sum()) / window
                fig["usd_per_image"] = per(f, float(t.samples[f].sum()))
            else:
                fig["videos_per_s"] = float(f.sum()) / window
                fig["video_seconds_per_s"] = float(np.nansum(t.media_seconds[f])) / window
                fig["usd_per_video"] = per(f, float(f.sum()))
        elif kind == "speech_to_text":
            fig.update(_clips(t, mine, measured, finished_in, window))
        elif kind == "text_to_speech":
            fig.update(_speech_out(result, t, cols, d, f, window, pool_index))
        if kind in ("speech_to_text", "text_to_speech"):
            fig["usd_per_audio_hour"] = per(f, float(np.nansum(t.media_seconds[f])), 3600.0)
        out[kind] = fig
    return out


def _clips(t, mine, measured, finished_in, window: float) -> dict:
    """Speech to text, per clip (its windows share `t.clip`): latency until its last window is
    done, real-time factor (that latency / the clip's audio seconds), audio seconds
    transcribed per second of the window."""
    rows = np.flatnonzero(mine)
    firsts, index = np.unique(t.clip[rows], return_inverse=True)
    n = len(firsts)
    windows = np.bincount(index, minlength=n)
    completed = np.bincount(index, weights=t.state[rows] == COMPLETED, minlength=n)
    seconds = np.bincount(index, weights=t.media_seconds[rows], minlength=n)
    end = np.full(n, -np.inf)
    np.maximum.at(end, index, np.nan_to_num(t.finished[rows], nan=np.inf))
    counted = measured[firsts]
    whole = (completed == windows) & counted
    latency = (end - t.arrival[firsts])[whole]
    return {"clips": int(counted.sum()), "clips_completed": int(whole.sum()),
            "windows_per_clip": float(windows[counted].mean()) if counted.any() else None,
            "clip_latency_s": stats(latency), "real_time_factor": stats(latency / seconds[whole]),
            "audio_seconds_per_s": float(t.media_seconds[finished_in & mine].sum()) / window}


def _speech_out(result: RunResult, t, cols: dict, done, finished_in, window: float,
                pool_index: np.ndarray) -> dict:
    """Text to speech: time to first audio (TTFT + (first_chunk_tokens - 1) x the request's
    TPOT: the codec's first chunk generated; a reply shorter than one chunk plays when it
    ends), the real-time factor of generation (decode time / audio seconds; below 1 it is
    written faster than it plays), audio seconds produced per second."""
    chunk = np.zeros(len(result.scenario.pools) + 1, np.int64)
    for k, pool in enumerate(result.scenario.pools):
        if pool.deployment.model.modality == "text_to_speech":
            chunk[k] = pool.deployment.model.speech.first_chunk_tokens
    first = chunk[pool_index]
    audio = np.where(t.output >= first, cols["ttft"] + (first - 1) * np.nan_to_num(cols["tpot"]), cols["e2e"])
    with np.errstate(invalid="ignore", divide="ignore"):
        rtf = (t.finished - t.first_token) / t.media_seconds
    return {"time_to_first_audio_s": stats(audio[done]), "real_time_factor": stats(rtf[done]),
            "audio_seconds_per_s": float(np.nansum(t.media_seconds[finished_in])) / window}


def sessions_section(result: RunResult, usd: np.ndarray, pool_index: np.ndarray, w0: float, w1: float) -> list[dict]:
    """Per session stream, the sessions that started in [w0, w1): what became of them, their
    latency (start to the answering call's end), calls, tokens, compute and cost per session
    (the sum of its calls'); and the tool services' queues."""
    runner, t = result.sessions, result.table
    plan = runner.plan
    n = len(plan.start)
    mine = t.session >= 0
    sid = t.session[mine]
    calls = np.bincount(sid, minlength=n)
    tokens = np.bincount(sid, weights=(t.prompt + t.output)[mine], minlength=n)
    flops = np.bincount(sid, weights=request_flops(result, pool_index)[mine], minlength=n)
    spent = np.bincount(sid, weights=np.nan_to_num(usd[mine]), minlength=n)
    priced = np.bincount(sid, weights=np.isnan(usd[mine]) & (t.state[mine] == COMPLETED), minlength=n) == 0
    end = np.full(n, np.nan)
    answered = mine & t.final & (t.state == COMPLETED)
    end[t.session[answered]] = t.finished[answered]
    failed = runner.failed.copy()
    failed[t.session[mine & unserved(t.state)]] = True
    out = []
    for k, stream in enumerate(result.scenario.spec.workload):
        if stream.session is None:
            continue
        started = (plan.stream == k) & (plan.start >= w0) & (plan.start < w1)
        ok = started & ~np.isnan(end)
        out.append({
            "stream": stream.name,
            "started": int(started.sum()),
            "completed": int(ok.sum()),
            "failed": int((started & failed).sum()),
            "in_flight": int((started & np.isnan(end) & ~failed).sum()),
            "latency_s": stats((end - plan.start)[ok]),
            "calls_per_session": float(calls[ok].mean()) if ok.any() else None,
            "tokens_per_session": float(tokens[ok].mean()) if ok.any() else None,
            "pflop_per_session": float(flops[ok].mean()) / 1e15 if ok.any() else None,
            "usd_per_session": float(spent[ok].mean()) if ok.any() and priced[ok].all() else None,
            "steps": _pipeline_steps(result, stream, ok) if stream.session.steps is not None else None,
        })
    services = [{"service": s.name, "servers": s.servers, "calls": len(s.waits),
                 "wait_s": stats(np.array(s.waits)), "utilization": s.busy / (s.servers * max(result.end_time, 1e-12))}
                for s in runner.services.values()]
    return {"streams": out, "services": services}


def _pipeline_steps(result: RunResult, stream, ok: np.ndarray) -> list[dict]:
    """A pipeline stream's sessions `ok` (started in the window, answered) step by step: each
    step's latency (its first invocation's start to its last one's end), then the answer's
    first token counted from the session's start, and how much of that the steps before the
    answering call took (retrieval, in a RAG pipeline)."""
    runner, t, plan = result.sessions, result.table, result.sessions.plan
    n = len(plan.start)
    calls = (t.session >= 0) & (t.step >= 0)
    tools = (plan.kind != CALL) & (plan.step >= 0)
    sid = np.concatenate([t.session[calls], plan.session[tools]])
    step = np.concatenate([t.step[calls], plan.step[tools]])
    begin = np.concatenate([t.arrival[calls], runner.tool_start[tools]])
    end = np.concatenate([t.finished[calls], runner.tool_done[tools]])
    out = []
    for k, spec in enumerate(stream.session.steps):
        mine = (step == k) & ok[sid]
        first, last = np.full(n, np.inf), np.full(n, -np.inf)
        np.minimum.at(first, sid[mine], begin[mine])
        np.maximum.at(last, sid[mine], end[mine])
        has = np.isfinite(first) & np.isfinite(last)
        what = (f"tool {spec.tool.service or spec.tool.name}" if spec.tool is not None else
                f"call {spec.call.model or stream.session.model or stream.model or 'the served model'}")
        out.append({"step": k, "what": what, "latency_s": stats((last - first)[has])})
    answers = t.final & (t.session >= 0) & (t.state == COMPLETED)
    answers &= ok[np.maximum(t.session, 0)]
    begun = plan.start[t.session[answers]]
    out.append({"step": "answer", "what": "first token of the answer, from the session's start",
                "latency_s": stats(t.first_token[answers] - begun),
                "of_which_before_answer_s": stats(t.arrival[answers] - begun)})
    return out


def prefix_cache_section(result: RunResult, pool_index: np.ndarray, done: np.ndarray) -> list[dict]:
    """Per pool that caches prefixes, over its completed measured requests: how many could
    reuse something (a call extending an earlier one, a shared system prompt), how many
    found it cached, the prompt tokens skipped, and what that saved: prefill FLOPs (2 x
    active parameters per token) and prefill time (each hit's prefill alone on its replica,
    whole prompt vs. the rest after the cached part)."""
    t = result.table
    reusable = result.prefix_reusable
    out = []
    for k, pool in enumerate(result.scenario.pools):
        if not pool.spec.serve.engine.prefix_cache:
            continue
        mine = done & (pool_index == k)
        hit = mine & (t.cached > 0)
        p = pool.deployment.params
        saved_s = 0.0
        empty = np.zeros(0, np.int64)
        for prompt, cached in zip(t.prompt[hit].tolist(), t.cached[hit].tolist(), strict=True):
            rest = kernels.batch_time(np.array([prompt - cached], np.int64), np.array([cached], np.int64),
                                      np.array([prompt], np.int64), empty, p)
            saved_s += kernels.prefill_time(p, prompt) - rest
        prompt_tokens = int(t.prompt[mine].sum())
        cached_tokens = int(t.cached[mine].sum())
        could = int((mine & reusable).sum())
        reps = [r for r in result.replicas if r.pool == pool.name]
        out.append({
            "pool": pool.name,
            "requests": int(mine.sum()),
            "reusable_requests": could,
            "hits": int(hit.sum()),
            "hit_rate": int(hit.sum()) / could if could else None,
            "prompt_tokens": prompt_tokens,
            "cached_tokens": cached_tokens,
            "token_hit_rate": cached_tokens / prompt_tokens if prompt_tokens else None,
            "prefill_pflop_saved": 2.0 * pool.deployment.model.computed_active_params() * cached_tokens / 1e15,
            "prefill_seconds_saved": saved_s,
            "evicted_blocks": int(sum(r.evicted_blocks for r in reps)),
            "cached_blocks_at_end": int(sum(r.cached_blocks for r in reps)),
        })
    return out
