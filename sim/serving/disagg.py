"""Prefill/decode disaggregation: a prompt is prefilled on one replica, decoded on another.

When a prefill replica finishes a prompt (and has produced the first token), the request's
KV cache moves over the fabric to a decode replica: one flow per pair of devices, device i
of the prefill group sending its share to device i mod tp of the decode group. The prefill
replica keeps the blocks until the last byte has left; the decode replica admits the
request once the cache has arrived. The transfer shows in the time to the second token.
"""
from __future__ import annotations

from ..catalog.hardware import BYTES_PER_ELEMENT
from ..core.metrics import RequestTable
from .replica import Replica


def kv_cache_bytes(model, kv_precision: str, tokens: int) -> float:
    """The whole model's KV cache for `tokens` tokens: layers x cached elements x bytes."""
    return model.layers * model.kv_elements_per_token_layer() * BYTES_PER_ELEMENT[kv_precision] * tokens


class Disaggregation:
    def __init__(self, env, fabric, placement: dict[int, list], decoders: dict[str, list[Replica]],
                 table: RequestTable, model_of: dict[int, str]):
        self.env = env
        self.fabric = fabric
        self.placement = placement        # replica index -> its accelerators' node ids
        self.decoders = decoders          # model -> decode replicas
        self.table = table
        self.model_of = model_of          # replica index -> model key

    def hand_off(self, prefill: Replica, r: int, blocks: int) -> None:
        decode = self._choose(self.model_of[prefill.index], r)
        self.env.process(self._move(prefill, decode, r, blocks))

    def _choose(self, model: str, r: int) -> Replica:
        """The decode replica with the fewest outstanding requests that can hold this one."""
        need = int(self.table.prompt[r] + self.table.output[r] - 1)
        fits = [rep for rep in self.decoders[model] if rep.dep.blocks_for(need) <= rep.dep.total_blocks]
        return min(fits or self.decoders[model], key=lambda rep: rep.outstanding())

    def _move(self, prefill: Replica, decode: Replica, r: int, blocks: int):
        dep = prefill.dep
        size = kv_cache_bytes(dep.model, dep.kv_precision, int(self.table.prompt[r]))
        src, dst = self.placement[prefill.index], self.placement[decode.index]
        pairs = max(len(src), len(dst))
        t0 = self.env.now
        yield self.env.all_of([self.fabric.transfer(src[i % len(src)], dst[i % len(dst)], size / pairs, "kv")
                               for i in range(pairs)])
        self.table.kv_transfer_bytes[r] = size
        self.table.kv_transfer_time[r] = self.env.now - t0
        prefill.release_blocks(blocks)
        self.table.replica[r] = decode.index
        decode.submit_prefilled(r)
