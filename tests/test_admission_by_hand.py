"""Admission rules by hand, one iteration of the compiled scheduler from a state written
out: SGLang's estimate of the running requests' output (`kv_reservation: estimated`) and the
share it holds back as it moves, and vLLM V0's watermark (`kv_watermark`)."""
from __future__ import annotations

import numpy as np

from sim.serving import engine_state as es
from sim.serving import output_estimate as oe
from sim.serving.scheduler import engine_run
from sim.timing import kernels as k

TOTAL = 10_000      # KV blocks of one token each (SGLang's page size)


def _params() -> np.ndarray:
    """An iteration of 10 ms whatever it holds: host time only."""
    p = np.zeros(k.P_SIZE)
    p[[k.K_TP, k.K_GEMM_RATE, k.K_MEM_RATE, k.K_COMPUTE_SCALE, k.K_MEMORY_SCALE, k.K_LINK_SCALE,
       k.K_HOST_SCALE]] = 1.0
    p[k.K_GRAPH_MAX] = 1e9
    p[k.K_OVERHEAD] = 0.01
    return p


def _step(running: int, free: int, ratio: int, waiting: tuple[int, int] | None = None, generated: int = 500,
          reservation: str = "estimated", watermark: int = 0, block_size: int = 1, urgent_ready: bool = False,
          log: list | None = None):
    """One iteration of an unmixed engine: `running` sequences of 100 prompt and 1,000 output
    tokens that have written `generated` each, `free` blocks free, the share at `ratio` ppb,
    and one waiting request of (prompt, output) tokens; `urgent_ready`: of a higher class,
    its KV cache already here (from a prefill replica), with lower classes preemptible.
    Returns the end state; `log` gets the iteration's events (kind, iteration, request, value)."""
    n_req = running + 1
    prompt = np.full(n_req, 100, np.int64)
    output = np.full(n_req, 1000, np.int64)
    if waiting:
        prompt[-1], output[-1] = waiting
    z = np.zeros(n_req, np.int64)
    ready, priority = np.zeros(n_req, np.bool_), z.copy()
    ready[-1] = priority[-1] = urgent_ready
    requests = (prompt, output, z.copy(), ready, priority, z.copy(), z.copy(), np.full(n_req, np.nan))
    rules = es.rules(block_size=block_size, max_seqs=64, max_tokens=8192, chunk=8192, chunked=True, kv_grows=True,
                     per_seq_blocks=0, total_blocks=TOTAL, stop_at_completions=False, prefill_only=False,
                     priority_classes=urgent_ready, preempt_lower=urgent_ready, stop_at_evictions=False,
                     mixed_batches=False, reservation=reservation, watermark=watermark)
    start, end, ck = (es.EngineState(64, TOTAL) for _ in range(3))
    seqs, counters, _ = start.arrays()
    held = -(-(100 + generated) // block_size)
    for i in range(running):
        seqs[[es.REQ, es.TGT, es.KV, es.BLK, es.GEN], i] = [i, 100 + generated, 100 + generated, held, generated]
    counters[es.RUNNING], counters[es.FREE], counters[es.RATIO] = running, free, ratio
    queue = (np.array([running] if waiting else [], np.int64), np.zeros(1 if waiting else 0), 0, 1 if waiting else 0)
    record = (np.zeros(4), np.zeros((es.BATCH_ROWS, 4), np.int64), np.zeros((1024, 4), np.int64),
              np.zeros(es.OUTCOME_SIZE, np.int64))
    engine_run(0.0, start.arrays(), end.arrays(), ck.arrays(), queue, requests, rules, _params(), 1, 0, 0, record)
    if log is not None:
        log.extend(record[2][:record[3][es.LOGGED]].tolist())
    return end


def test_a_request_joins_only_if_prompt_and_output_fit_beside_the_share_held_back():
    """Four decoding sequences have 500 tokens left each; at a share of 0.5 they hold back
    1,000 blocks of the 7,600 free. A request joins while its prompt plus its output is less
    than the 6,600 left, strictly, as in SGLang's `total_tokens >= rem_total_tokens`."""
    fits = _step(4, 7_600, 500_000_000, waiting=(2_599, 4_000))
    assert fits.counters[es.RUNNING] == 5 and fits.seqs[es.REQ, 4] == 4
    assert fits.counters[es.FREE] == 7_600 - 2_599          # it took its prompt's blocks, not its output's
    short = _step(4, 7_600, 500_000_000, waiting=(2_600, 4_000))
    assert short.counters[es.RUNNING] == 4                   # it waits; the four decode instead
    assert short.counters[es.FREE] == 7_600 - 4


def test_a_long_output_is_counted_up_to_the_clip():
    """SGLang clips every output at 4,096 tokens in its estimate: an output of 100,000 needs
    no more room than one of 4,096."""
    assert _step(4, 7_600, 500_000_000, waiting=(2_503, 100_000)).counters[es.RUNNING] == 5
    assert _step(4, 7_600, 500_000_000, waiting=(2_504, 100_000)).counters[es.RUNNING] == 4


def test_the_share_shrinks_each_decode_iteration_to_its_floor():
    after = _step(4, 7_600, 500_000_000)
    assert after.counters[es.RATIO] == 500_000_000 - oe.RATIO_DECAY
    assert _step(4, 7_600, oe.RATIO_MIN + 5).counters[es.RATIO] == oe.RATIO_MIN
    # from the start to the floor in SGLang's 600 decode iterations (one more for rounding)
    assert round((oe.RATIO_INIT - oe.RATIO_MIN) / oe.RATIO_DECAY) == 600


def test_a_retraction_sets_the_share_to_what_the_rest_have_written():
    """No block free: the first decoding sequence's token preempts the latest admitted. The
    three left have written 500 of 1,000 each: (1,500 + 20 x 3) / (3,000 + 1)."""
    after = _step(4, 0, 200_000_000)
    assert after.counters[es.RUNNING] == 3 and after.counters[es.PREEMPTED] == 1
    assert after.counters[es.RATIO] == int(np.floor(1e9 * (1_500 + 60) / 3_001.0))


def test_an_empty_engine_starts_the_share_afresh():
    after = _step(0, TOTAL, 150_000_000, waiting=(100, 100))
    assert after.counters[es.RUNNING] == 1 and after.counters[es.RATIO] == oe.RATIO_INIT


def test_a_request_joins_on_demand_only_if_it_leaves_the_watermark_free():
    """vLLM V0: of 7,600 free blocks a request takes its prompt's only if 100 stay free."""
    assert _step(4, 7_600, 0, waiting=(7_500, 4_000), reservation="on_demand", watermark=100).counters[
        es.RUNNING] == 5
    assert _step(4, 7_600, 0, waiting=(7_501, 4_000), reservation="on_demand", watermark=100).counters[
        es.RUNNING] == 4
    assert _step(4, 7_600, 0, waiting=(7_600, 4_000), reservation="on_demand").counters[es.RUNNING] == 5


def test_an_urgent_request_preempts_only_for_the_blocks_it_takes():
    """A request of a higher class whose 100-token prompt's KV cache is here already takes
    7 blocks of 16 (its next token falls in the seventh). With 7 free it joins and preempts
    nobody; with 6 it preempts the latest admitted of the lower class."""
    log: list = []
    enough = _step(4, 7, 0, waiting=(100, 50), reservation="on_demand", block_size=16, urgent_ready=True, log=log)
    assert enough.counters[es.RUNNING] == 5 and [e for e in log if e[0] == es.EV_PREEMPT] == []
    short = _step(4, 6, 0, waiting=(100, 50), reservation="on_demand", block_size=16, urgent_ready=True)
    assert short.counters[es.PREEMPTED] == 1 and short.stack[es.S_REQ, 0] == 3
    assert short.counters[es.RUNNING] == 4 and 4 in short.running()
