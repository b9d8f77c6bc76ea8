"""Timing formulas: the only place that knows how long compute and transfers take.

Pure numba functions over numbers and numpy arrays, no SimPy and no objects, so they can be
tested by hand arithmetic and called from the event loop without Python overhead.

A replica's cost parameters are packed into one float64 vector `p` (see `sim.timing.deployment`),
indexed by the K_* constants below. All quantities are per device of the tensor-parallel
group (weights and heads already divided by `tp`).

One batch iteration is the sum over operators of a roofline,
    max(FLOPs / (peak x compute_eff), bytes / (bandwidth x mem_eff)),
over weight GEMMs, MoE experts, prefill and decode attention, SSM scans and the LM head,
plus the tensor-parallel all-reduces and pipeline-stage sends over the scale-up link and a
fixed host overhead. Prefill attention counts the causal query-key pairs, or all of them for a
bidirectional model (K_BIDIRECTIONAL: encoders, diffusion transformers). A diffusion
transformer's denoising step (`diffusion_step_time`) is one such iteration over its latent
tokens, the LM-head slot running its per-sample weights, plus text-encoder and VAE rooflines.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .table_lookup import table1, table2

# ---- layout of the cost vector p ---------------------------------------------------------
K_TP = 0              # tensor-parallel degree
K_LINK_BW = 1         # scale-up bandwidth per direction per device, bytes/s
K_LINK_LAT = 2        # scale-up per-hop latency, s
K_OVERHEAD = 3        # fixed host time per iteration (scheduling, kernel launch), s
K_GEMM_RATE = 4       # achievable FLOP/s for weight GEMMs at the weight precision
K_ATTN_RATE = 5       # achievable FLOP/s for attention at the KV-cache precision
K_MEM_RATE = 6        # achievable memory bandwidth, bytes/s
K_WBYTES = 7          # bytes per weight
K_ABYTES = 8          # bytes per activation element
K_KVBYTES = 9         # bytes per KV-cache element
K_PLAIN_LAYERS = 10   # layers with a dense MLP (or an SSM block)
K_PLAIN_W = 11        # weight params per device in one such layer
K_PLAIN_ACT = 12      # activation elements read+written per token by that layer's GEMMs
K_MOE_LAYERS = 13     # layers with routed experts
K_MOE_DENSE_W = 14    # params per device every token uses in an MoE layer (attention, shared, router)
K_MOE_DENSE_ACT = 15
K_EXPERTS = 16        # routed experts per MoE layer
K_ACTIVE = 17         # routed experts per token
K_EXPERT_W = 18       # params per device of one expert
K_EXPERT_ACT = 19     # activation elements per token per expert per device
K_ATTN_LAYERS = 20    # layers with attention
K_HEADS = 21          # query heads per device
K_QK_DIM = 22
K_V_DIM = 23
K_KV_ELEMS = 24       # KV elements cached per token per layer per device
K_SSM_LAYERS = 25
K_SSM_FLOPS = 26      # scan FLOPs per token per layer per device
K_SSM_STATE = 27      # recurrent-state bytes per sequence per layer per device
K_HEAD_W = 28         # LM-head params per device (vocab x hidden / tp)
K_HIDDEN = 29
K_ALLREDUCES = 30     # tensor-parallel all-reduces per layer
K_LAYERS = 31
K_PP = 32             # pipeline stages; each iteration sends activations pp-1 times
K_EP = 33             # expert-parallel ranks (data-parallel attention, experts spread over them)
K_EP_ON_LINK = 34     # 1: the all-to-all runs on the scale-up link here; 0: as flows on the fabric
K_TREE = 35           # all-reduce algorithm: 0 ring, 1 binary tree
K_BIDIRECTIONAL = 36  # 1: prefill attends to every query-key pair (encoders, diffusion transformers); 0: causal
K_TABLES = 37         # offset of the iteration's timing tables in p (0: the closed-form roofline above)
K_COMPUTE_SCALE = 38  # multiplies compute-bound kernel time (a power cap's 1/clock; k engines time-slicing)
K_MEMORY_SCALE = 39   # multiplies memory-bound kernel time
K_LINK_SCALE = 40     # multiplies collective time on the scale-up link
K_HOST_PER_SEQ = 41   # host time per sequence in the batch, s (on top of K_OVERHEAD)
K_HOST_OVERLAP = 42   # 1: the host prepares the next iteration while the device runs this one
K_GRAPH_MAX = 43      # largest iteration (tokens) replayed as a captured graph; larger ones launch eagerly
K_LAUNCH = 44         # host time to launch one iteration's kernels eagerly, s
K_GRAPH_DECODE_ONLY = 45  # 1: only iterations without prefill replay graphs
K_HOST_SCALE = 46     # multiplies host time (the head node's CPUs shared or slower, sim.serving.head_node)
P_SIZE = 47

# Timing tables (measured kernels composed into an iteration, `sim.timing`): at p[K_TABLES]
# four offsets (TAB_ROWS, TAB_LOGITS, TAB_DECODE, TAB_PREFILL), each to a table of four
# components: compute- and memory-bound seconds, and collectives on the link as they run
# inside a captured graph and as they run eagerly (each scaled by its K_*_SCALE):
#   rows     1-D over tokens in the iteration: every per-token kernel of every layer
#   logits   1-D over sequences producing a token: LM head, logits gather, sampling
#   decode   2-D over (decoding sequences, mean KV length): generation attention, all layers
#   prefill  2-D over (prefill chunks, equivalent causal prompt length): context attention
# A 1-D table at a: p[a] = n, then n abscissae, then n values per component. A 2-D table at
# a: p[a] = nx, p[a+1] = ny, nx then ny abscissae, then nx*ny values (row-major) per component.
# The lookups that read them are in `sim.timing.table_lookup`.
TAB_ROWS, TAB_LOGITS, TAB_DECODE, TAB_PREFILL = range(4)


@njit(cache=True)
def roofline(flops, nbytes, flop_rate, byte_rate):
    """Time of one operator bound by compute or by memory traffic, whichever is slower."""
    tc = flops / flop_rate
    tm = nbytes / byte_rate
    return tc if tc > tm else tm


@njit(cache=True)
def ring_allreduce_time(nbytes, n, bandwidth, latency):
    """Ring all-reduce of `nbytes` over `n` ranks: 2(n-1)/n * S/B + 2(n-1) * latency."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / bandwidth + 2.0 * (n - 1) * latency


@njit(cache=True)
def tree_allreduce_time(nbytes, n, bandwidth, latency):
    """Binary-tree all-reduce: reduce up and broadcast down ceil(log2 n) levels, whole buffers."""
    if n <= 1:
        return 0.0
    levels = np.ceil(np.log2(n))
    return 2.0 * levels * (nbytes / bandwidth + latency)


@njit(cache=True)
def experts_touched(tokens, experts, active):
    """Expected distinct experts a batch of `tokens` routes to (uniform routing)."""
    if tokens <= 0.0:
        return 0.0
    return experts * (1.0 - (1.0 - active / experts) ** tokens)


@njit(cache=True)
def gemm_time(m, n, k, in_bytes, out_bytes, flop_rate, byte_rate):
    """C[m,n] = A[m,k] B[k,n]: 2mnk FLOPs; A and B read once, C written once."""
    return roofline(2.0 * m * n * k, (m * k + k * n) * in_bytes + m * n * out_bytes, flop_rate, byte_rate)


@njit(cache=True)
def attention_time(batch, heads, seq, head_dim, causal, elem_bytes, flop_rate, byte_rate):
    """Fused attention forward over `seq` tokens: QK^T and PV over every (causal) query-key
    pair, 4 x head_dim FLOPs per pair per head; Q, K, V read and O written once."""
    pairs = seq * (seq + 1) / 2.0 if causal else seq * seq
    return roofline(4.0 * batch * heads * head_dim * pairs, 4.0 * batch * heads * seq * head_dim * elem_bytes,
                    flop_rate, byte_rate)


@njit(cache=True)
def iteration_time(tokens, logits, chunks, pf_pairs, pf_ctx, dec_ctx, seqs, p):
    """Duration of one batch iteration on one tensor-parallel group.

    tokens   tokens processed (prefill chunk tokens + one per decoding sequence)
    logits   sequences that produce an output token this iteration (a diffusion
             transformer: samples x passes, which run the per-sample weights in K_HEAD_W)
    chunks   prefill chunks in the batch (the other seqs - chunks sequences decode)
    pf_pairs query-key pairs of the prefill chunks: sum of c*o + c*(c+1)/2 (causal) or
             c*(o+c) (bidirectional) for a chunk of c tokens after o tokens already in the cache
    pf_ctx   cached tokens the prefill chunks attend to: sum of o + c
    dec_ctx  cached tokens the decode steps attend to: sum of context lengths
    seqs     sequences in the batch

    The device's time comes from the pool's timing tables (`K_TABLES`) or, without them,
    from the closed-form roofline; then the pipeline's stage sends and the host's work.
    """
    if tokens <= 0.0:
        return 0.0
    # a batch the engine's captured graphs do not cover (more tokens than the largest, or a
    # prefill where graphs are decode-only) launches its kernels one by one
    eager = tokens > p[K_GRAPH_MAX] or (chunks > 0.0 and p[K_GRAPH_DECODE_ONLY] > 0.0)
    if p[K_TABLES] > 0.0:
        t = table_kernels(tokens, logits, chunks, pf_pairs, seqs - chunks, dec_ctx, eager, p)
    else:
        t = roofline_kernels(tokens, logits, pf_pairs, pf_ctx, dec_ctx, seqs, p)
    if p[K_PP] > 1.0:  # each stage hands its activations to the next, split over tp links
        t += p[K_LINK_SCALE] * (p[K_PP] - 1.0) * (tokens * p[K_HIDDEN] * p[K_ABYTES] / p[K_TP] / p[K_LINK_BW]
                                                  + p[K_LINK_LAT])
    return with_host(t, eager, seqs, p)


@njit(cache=True)
def with_host(device, eager, seqs, p):
    """An iteration's duration from its device time and the host's work for it.

    The host schedules the batch, prepares its inputs and handles its outputs: K_OVERHEAD
    plus K_HOST_PER_SEQ per sequence. An engine that overlaps this with the device's previous
    iteration runs at the pace of the slower of the two; one that does not adds them. An
    iteration outside the captured graphs (`eager`) launches its kernels one by one, so the
    device cannot go faster than the host issues them (K_LAUNCH).
    """
    if eager and device < p[K_LAUNCH] * p[K_HOST_SCALE]:
        device = p[K_LAUNCH] * p[K_HOST_SCALE]
    host = (p[K_OVERHEAD] + p[K_HOST_PER_SEQ] * seqs) * p[K_HOST_SCALE]
    if p[K_HOST_OVERLAP] > 0.0:
        return device if device > host else host
    return device + host


@njit(cache=True)
def roofline_kernels(tokens, logits, pf_pairs, pf_ctx, dec_ctx, seqs, p):
    """Device time of one iteration by the closed-form roofline over aggregated operators
    (module docstring); compute, memory and link rates divided by their K_*_SCALE."""
    cs, ms, ls = p[K_COMPUTE_SCALE], p[K_MEMORY_SCALE], p[K_LINK_SCALE]
    gemm, mem = p[K_GEMM_RATE] / cs, p[K_MEM_RATE] / ms
    wb, ab = p[K_WBYTES], p[K_ABYTES]
    t = 0.0
    if p[K_PLAIN_LAYERS] > 0.0:
        w = p[K_PLAIN_W]
        t += p[K_PLAIN_LAYERS] * roofline(2.0 * tokens * w, w * wb + tokens * p[K_PLAIN_ACT] * ab, gemm, mem)
    if p[K_MOE_LAYERS] > 0.0:
        w = p[K_MOE_DENSE_W]
        dense = roofline(2.0 * tokens * w, w * wb + tokens * p[K_MOE_DENSE_ACT] * ab, gemm, mem)
        we, k, ep = p[K_EXPERT_W], p[K_ACTIVE], p[K_EP]
        # with expert parallelism every rank sends as many tokens (balanced load): a device
        # reads its 1/ep share of the experts the whole group's tokens touch
        touched = experts_touched(tokens * ep, p[K_EXPERTS], k) / ep
        routed = roofline(2.0 * tokens * k * we, touched * we * wb + tokens * k * p[K_EXPERT_ACT] * ab, gemm, mem)
        t += p[K_MOE_LAYERS] * (dense + routed)
        if ep > 1.0 and p[K_EP_ON_LINK] > 0.0:  # dispatch and combine: to its k experts and back
            a2a = tokens * k * p[K_HIDDEN] * ab * (ep - 1.0) / ep / p[K_LINK_BW] + (ep - 1.0) * p[K_LINK_LAT]
            t += ls * p[K_MOE_LAYERS] * 2.0 * a2a
    if p[K_ATTN_LAYERS] > 0.0:
        per_pair = 2.0 * p[K_HEADS] * (p[K_QK_DIM] + p[K_V_DIM])
        kv_token = p[K_KV_ELEMS] * p[K_KVBYTES]
        attn_rate = p[K_ATTN_RATE] / cs
        attn = 0.0
        if pf_pairs > 0.0:
            attn += roofline(per_pair * pf_pairs, kv_token * pf_ctx, attn_rate, mem)
        if dec_ctx > 0.0:
            attn += roofline(per_pair * dec_ctx, kv_token * dec_ctx, attn_rate, mem)
        t += p[K_ATTN_LAYERS] * attn
    if p[K_SSM_LAYERS] > 0.0:
        t += p[K_SSM_LAYERS] * roofline(tokens * p[K_SSM_FLOPS], 2.0 * seqs * p[K_SSM_STATE], gemm, mem)
    if logits > 0.0:
        w = p[K_HEAD_W]
        t += roofline(2.0 * logits * w, w * wb + logits * p[K_HIDDEN] * ab, gemm, mem)
    tp = p[K_TP]
    if tp > 1.0:
        if p[K_TREE] > 0.0:
            per = tree_allreduce_time(tokens * p[K_HIDDEN] * ab, tp, p[K_LINK_BW], p[K_LINK_LAT])
        else:
            per = ring_allreduce_time(tokens * p[K_HIDDEN] * ab, tp, p[K_LINK_BW], p[K_LINK_LAT])
        t += ls * p[K_LAYERS] * p[K_ALLREDUCES] * per
    return t


@njit(cache=True)
def table_kernels(tokens, logits, chunks, pf_pairs, n_dec, dec_ctx, eager, p):
    """Device time of one iteration from the pool's timing tables (layout above). Prefill
    chunks are looked up as `chunks` causal prompts with their mean number of query-key
    pairs; decode steps as `n_dec` sequences of their mean KV length. `eager`: the
    iteration runs outside captured graphs (its collectives at their eager latency)."""
    cs, ms = p[K_COMPUTE_SCALE], p[K_MEMORY_SCALE]
    ls = p[K_LINK_SCALE] if p[K_TP] > 1.0 else 0.0   # tp 1: collectives run over the fabric instead
    o = int(p[K_TABLES])
    t = table1(p, int(p[o + TAB_ROWS]), tokens, cs, ms, ls, eager)
    if logits > 0.0:
        t += table1(p, int(p[o + TAB_LOGITS]), logits, cs, ms, ls, eager)
    if n_dec > 0.0:
        t += table2(p, int(p[o + TAB_DECODE]), n_dec, dec_ctx / n_dec, cs, ms, ls, eager)
    if chunks > 0.0:
        # the causal prompt length with as many query-key pairs: s (s + 1) / 2 = pairs
        s = (np.sqrt(1.0 + 8.0 * pf_pairs / chunks) - 1.0) / 2.0
        t += table2(p, int(p[o + TAB_PREFILL]), chunks, s, cs, ms, ls, eager)
    return t


@njit(cache=True)
def batch_time(pf_len, pf_offset, pf_target, dec_ctx, p):
    """Duration of one iteration of a mixed batch, from its sequences.

    pf_len[i]     tokens of prefill chunk i
    pf_offset[i]  tokens of that sequence already in the KV cache before the chunk
    pf_target[i]  tokens the sequence's prefill covers (the chunk that reaches it emits a token)
    dec_ctx[j]    tokens decode step j attends to (its context, including the new token)
    """
    tokens = 0.0
    logits = 0.0
    pairs = 0.0
    ctx = 0.0
    bidirectional = p[K_BIDIRECTIONAL] > 0.0
    for i in range(pf_len.shape[0]):
        c = float(pf_len[i])
        o = float(pf_offset[i])
        tokens += c
        pairs += c * o + (c * c if bidirectional else c * (c + 1.0) / 2.0)
        ctx += o + c
        if pf_offset[i] + pf_len[i] == pf_target[i]:
            logits += 1.0
    dec = 0.0
    for j in range(dec_ctx.shape[0]):
        dec += float(dec_ctx[j])
    n_dec = float(dec_ctx.shape[0])
    chunks = float(pf_len.shape[0])
    return iteration_time(tokens + n_dec, logits + n_dec, chunks, pairs, ctx, dec, chunks + n_dec, p)


@njit(cache=True)
def diffusion_step_time(tokens, samples, pairs, ctx, encode_flops, encode_bytes, decode_flops, decode_bytes, p):
    """Duration of one denoising step of a diffusion transformer's batch, per device.

    tokens   latent tokens through the transformer: sum over samples of L x passes
    samples  sample-passes: each runs the per-sample weights (K_HEAD_W) once
    pairs    query-key pairs, all of them (non-causal): sum of passes x (L^2 + L x cross tokens)
    ctx      keys and values read by the attention: sum of passes x (L + cross tokens)
    encode_flops, encode_bytes  text encoders of the requests admitted at this step (FLOPs,
             and their weights read once)
    decode_flops, decode_bytes  VAE decoding of the samples that finish at this step

    The transformer's pass is `iteration_time` (weight GEMMs, attention, per-sample weights,
    all-reduces, host overhead); the text encoders and the VAE decoder are one roofline each
    at the GEMM rate.
    """
    t = iteration_time(tokens, samples, samples, pairs, ctx, 0.0, samples, p)
    gemm, mem = p[K_GEMM_RATE] / p[K_COMPUTE_SCALE], p[K_MEM_RATE] / p[K_MEMORY_SCALE]
    if encode_flops > 0.0:
        t += roofline(encode_flops, encode_bytes, gemm, mem)
    if decode_flops > 0.0:
        t += roofline(decode_flops, decode_bytes, gemm, mem)
    return t


def prefill_time(p, prompt: int, seqs: int = 1) -> float:
    """One iteration that prefills `seqs` whole prompts of `prompt` tokens."""
    lens = np.full(seqs, prompt, np.int64)
    return batch_time(lens, np.zeros(seqs, np.int64), lens, np.zeros(0, np.int64), p)


def decode_time(p, seqs: int, context: int) -> float:
    """One iteration that decodes `seqs` sequences, each attending to `context` tokens."""
    empty = np.zeros(0, np.int64)
    return batch_time(empty, empty, empty, np.full(seqs, context, np.int64), p)


@njit(cache=True)
def decode_run(t0, kv_len, remaining, block_size, free_blocks, per_seq_blocks,
               pad, kv_grows, max_steps, p, ends, finish_step):
    """Advance a decode-only batch many iterations at once.

    kv_len[i]     tokens sequence i holds in the KV cache now
    remaining[i]  decode iterations sequence i still needs (>= 1)
    free_blocks   KV blocks free now; a step that needs more stops the run before it
    per_seq_blocks blocks each sequence holds besides its tokens (SSM state)
    pad           static batching: finished sequences stay in the batch until all finish
    kv_grows      0 when the model caches no per-token state (SSM): no blocks are allocated
    ends[s]       written: end time of step s (computed as t = t + dt, as stepping does)
    finish_step[i] written: index of the step that finishes sequence i, or -1

    Runs until every sequence has finished, the KV cache would overflow, or `max_steps`.
    Returns the number of steps taken. Each step's duration is `iteration_time` of the
    batch as it stands, so the result equals stepping one iteration at a time.
    """
    n = kv_len.shape[0]
    order = np.argsort(remaining, kind="mergesort")
    hist = np.zeros(block_size, np.int64)
    ctx = 0.0
    for i in range(n):
        hist[kv_len[i] % block_size] += 1
        ctx += kv_len[i]
        finish_step[i] = -1
    active = n
    done = 0  # position in `order` of the next sequence to finish
    t = t0
    steps = 0
    free = free_blocks
    while steps < max_steps and active > 0:
        # blocks this step allocates: sequences whose next token starts a new block
        # (static batching reserved every sequence's blocks up front, so it allocates none)
        r = (block_size - steps % block_size) % block_size
        need = hist[r] if (kv_grows and not pad) else 0
        if need > free:
            break
        free -= need
        batch = float(n) if pad else float(active)
        ctx += batch  # each sequence in the batch attends to one more token
        t = t + iteration_time(batch, batch, 0.0, 0.0, 0.0, ctx, batch, p)
        ends[steps] = t
        steps += 1
        while done < n and remaining[order[done]] == steps:
            i = order[done]
            finish_step[i] = steps - 1
            done += 1
            if not pad:
                active -= 1
                ctx -= kv_len[i] + steps
                hist[kv_len[i] % block_size] -= 1
                held = (kv_len[i] + steps + block_size - 1) // block_size if kv_grows else 0
                free += held + per_seq_blocks
        if pad and done == n:
            active = 0
    return steps
