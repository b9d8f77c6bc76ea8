"""TensorRT-LLM's dynamic batch size tuning: the running batch a TensorRT engine allows.

With `DynamicBatchConfig(enable_batch_size_tuning=True)`, which trtllm-serve and trtllm-bench
set for TensorRT engines, the batch manager keeps the average input and output length of
the last 128 requests, asks the KV cache how many sequences of that length it holds, and
caps the running batch at that count rounded by a table (cpp/tensorrt_llm/executor/
dynamicBatchTuner.cpp `getRuntimeBatchSize`, dynamicBatchConfig.cpp `kDefaultBatchSizeTable`,
kvCacheManager.cpp `getMaxCapacityBatchSize`):

    capacity below 144 -> 128, 336 -> 256, 672 -> 512, 832 -> 768, 1280 -> 1024, 1664 -> 1536;
    above that, a multiple of 512 when within 128 of it, else the capacity itself.

So a KV cache that holds 662 requests of the average length runs at most 512 at once. The
simulator takes the average over the requests of the run that ask for the pool's model,
which is the moving average for a steady workload (and exact for fixed lengths).
"""
from __future__ import annotations

import numpy as np

# (capacity limit, batch size): the first row whose limit exceeds the capacity applies
BATCH_SIZE_TABLE = ((144, 128), (336, 256), (672, 512), (832, 768), (1280, 1024), (1664, 1536))
FALLBACK_GRANULARITY = 512
FALLBACK_THRESHOLD = 128


def runtime_batch_size(capacity: int) -> int:
    """The batch TensorRT-LLM runs when its KV cache holds `capacity` average requests."""
    for limit, size in BATCH_SIZE_TABLE:
        if capacity < limit:
            return size
    floor = capacity // FALLBACK_GRANULARITY * FALLBACK_GRANULARITY
    return floor if capacity < floor + FALLBACK_THRESHOLD else capacity


def capacity(total_blocks: int, blocks_per_request: int) -> int:
    """Requests needing `blocks_per_request` blocks each that a cache of `total_blocks` holds."""
    return total_blocks // max(blocks_per_request, 1)


def tuned_batch(max_seqs: int, capacity: int) -> int:
    """The engine's batch limit under tuning: its own limit, or the table's size for a cache
    that holds `capacity` average requests, whichever is smaller."""
    return max(1, min(max_seqs, runtime_batch_size(capacity)))


def average_lengths(prompt: np.ndarray, output: np.ndarray, mine: np.ndarray) -> tuple[int, int] | None:
    """Mean prompt and output tokens of the requests `mine` selects, truncated to whole tokens
    as TensorRT-LLM passes them; None without requests."""
    if not mine.any():
        return None
    return int(prompt[mine].mean()), int(output[mine].mean())
