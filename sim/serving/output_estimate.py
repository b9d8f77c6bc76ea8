"""SGLang's admission, compiled: a request joins only beside an estimate of what the running
requests will still write (`kv_reservation: estimated`).

SGLang does not reserve a request's output when it joins, nor allocate blindly: its
`PrefillAdder` (python/sglang/srt/managers/schedule_policy.py, 0.4.6 and 0.5.10) admits a
request only while its prompt plus its whole remaining output, each clipped at
CLIP_TOKENS, is less than the free and evictable KV cache less `new_token_ratio` times
every decoding request's remaining output (`_get_running_request_total_token_offset`,
`rem_total_tokens`, `add_one_req`: 'if total_tokens >= self.rem_total_tokens: return
AddReqResult.NO_TOKEN'). Those admitted in the same round hold their whole remaining
output (`_update_prefill_budget`). The ratio moves with the run (scheduler.py
`update_running_batch`, `self_check_during_idle`):
  - it starts at RATIO_INIT, and returns there whenever the engine is idle;
  - each decode iteration that needs no retraction lowers it by RATIO_DECAY, down to RATIO_MIN;
  - a decode iteration that runs out of KV cache retracts (preempts) requests and sets it
    to what the remaining ones have written, plus RETRACT_STEPS tokens each, over their
    whole outputs (schedule_batch.py `retract_decode`).
So a busy engine admits more and more boldly until it runs out and retracts, then holds
back for a while. The ratio is kept in parts per billion in the engine's counters
(`engine_state.RATIO`, 0: a fresh replica's RATIO_INIT).

Left out: SGLang retracts the request with the fewest output tokens (then the longest
prompt) where the simulator preempts the latest admitted, usually the same one; 0.4.6 also
retracts until 20 tokens a request are free, 0.5.10 (like the simulator) until the step
fits; after a request does not fit, SGLang tries no prefill until one leaves the batch
(`batch_is_full`), the simulator tries again at the next iteration; and with the radix
cache off, requests that ignore EOS take another path (`add_one_req_ignore_eos`). A
request's output length stands for its max_new_tokens, as benchmarks set it.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .engine_state import BLOCK_SIZE, ESTIMATED, GEN, KV, OUTPUT, REQ, RESERVE, TGT

RATIO_ONE = 1_000_000_000       # the ratio's unit: parts per billion
# python/sglang/srt/environ.py (0.5.10.post1): SGLANG_INIT_NEW_TOKEN_RATIO = EnvFloat(0.7),
# SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR = EnvFloat(0.14), SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS = EnvInt(600),
# SGLANG_RETRACT_DECODE_STEPS = EnvInt(20), SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION = EnvInt(4096);
# the same defaults in 0.4.6.post5's global_config.py and schedule_policy.py
RATIO_INIT = 700_000_000
RATIO_MIN = 98_000_000                              # 0.7 x 0.14
RATIO_DECAY = round((RATIO_INIT - RATIO_MIN) / 600)  # down to the minimum in 600 decode iterations
RETRACT_STEPS = 20
CLIP_TOKENS = 4096


@njit(cache=True, inline="always")
def remaining_output(r, generated, requests):
    """Tokens request r may still write, clipped as SGLang's estimate clips them."""
    left = requests[OUTPUT][r] - generated
    return left if left < CLIP_TOKENS else CLIP_TOKENS


@njit(cache=True, inline="always")
def held_back(seqs, n, ratio, requests, rules):
    """KV blocks held back for the decoding sequences' remaining output: ratio (ppb) times
    their clipped remaining tokens, in whole blocks (none unless RESERVE is ESTIMATED). A
    prompt still in prefill chunks is not yet in SGLang's running batch and holds nothing back."""
    if rules[RESERVE] != ESTIMATED:
        return np.int64(0)
    tokens = 0
    for i in range(n):
        if seqs[KV, i] >= seqs[TGT, i]:
            tokens += remaining_output(seqs[REQ, i], seqs[GEN, i], requests)
    return np.int64(np.ceil(ratio * 1e-9 * tokens / rules[BLOCK_SIZE]))


@njit(cache=True, inline="always")
def output_blocks(r, generated, requests, rules):
    """KV blocks of request r's clipped remaining output, which it holds back in the round it joins."""
    bs = rules[BLOCK_SIZE]
    return (remaining_output(r, generated, requests) + bs - 1) // bs


@njit(cache=True, inline="always")
def next_ratio(seqs, n, ratio, retracted, requests):
    """The ratio after a decode iteration: lowered by RATIO_DECAY, or after a retraction what
    the remaining decoding sequences have written plus RETRACT_STEPS each over their outputs."""
    if not retracted:
        lower = ratio - RATIO_DECAY
        return lower if lower > RATIO_MIN else np.int64(RATIO_MIN)
    written = 0
    whole = 0
    decoding = 0
    for i in range(n):
        if seqs[KV, i] >= seqs[TGT, i]:
            written += seqs[GEN, i]
            whole += requests[OUTPUT][seqs[REQ, i]]
            decoding += 1
    estimate = np.int64(np.floor(RATIO_ONE * ((written + RETRACT_STEPS * decoding) / (whole + 1.0))))
    return estimate if estimate < RATIO_ONE else np.int64(RATIO_ONE)
