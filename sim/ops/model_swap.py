"""Model swapping: models that take turns holding the same devices as demand moves.

Pools that `swap_devices_with` a host run replica by replica on its devices: slot r is the
devices of the host's replica r, and each pool's replica r runs there. A slot holds one model
at a time (a replica starting, live or draining). Each pool's autoscaler says how many
replicas its model wants; when the free slots do not give them, it claims slots another
model of the group holds:

- from a pool with surplus: replicas above every recommendation of its last
  `scale_down_window`, which its own scale-down would release now (the devices go to the
  model that asked rather than falling idle);
- for a pool with requests waiting and nothing running: one slot from a pool that would keep
  one, or whose replica has held its devices at least that pool's `scale_down_window` (so
  two models on one device take turns no faster than that).

Never below the holder's `min`. Among the candidates it takes the least loaded replica. The
claimed replica stops taking requests and drains; when it is off, the claimant's replica on
those devices starts (provisioning, then its weights, `sim.ops.lifecycle`). A swap costs the
drain plus that start; the incoming model's requests wait meanwhile, and their wait is
reported as `start_wait`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lifecycle import LIVE, OFF, STARTING


@dataclass
class Swap:
    """Devices changing model: a claim (`direct`), or a start on devices another model held
    last and had released (then `claimed` and `drained` are the start's time)."""
    slot: int
    out_pool: str
    in_pool: str
    claimed: float             # when the incoming model asked for the devices
    direct: bool = True        # claimed from a model that held them
    drained: float = np.nan    # when the outgoing replica was off
    start: object = None       # the incoming replica's ColdStart (its `live` ends the swap)


class ModelSwap:
    def __init__(self, env, lifecycle, scalers: list):
        """`scalers`: the autoscalers of one swap group's pools, the host's first."""
        self.env, self.life, self.scalers = env, lifecycle, scalers
        self.slots = list(zip(*[s.groups for s in scalers], strict=True))     # slot -> each pool's group there
        self.slot_of = {g: r for r, groups in enumerate(self.slots) for g in groups}
        self.owner = {g: s for s in scalers for g in s.groups}
        self.reserved: dict[int, tuple[int, Swap]] = {}          # slot -> (claimant's group, its swap)
        self.swaps: list[Swap] = []
        self.last: dict[int, object] = {}                         # slot -> the autoscaler that held it last
        # the run's first replicas: the host's on the first slots, the next pool's on the next
        k = 0
        for s in scalers:
            s.swap = self
            for r in range(k, k + s.initial_count()):
                self.last[r] = s
            k += s.initial_count()
        lifecycle.changed.subscribe(self._changed)

    # ---- what the autoscalers ask ------------------------------------------------------
    def initial_off(self, scaler) -> set[int]:
        return {g for r, g in enumerate(scaler.groups) if self.last.get(r) is not scaler}

    def free(self, g: int) -> bool:
        """No model holds, or has claimed, the devices of group g."""
        r = self.slot_of[g]
        return r not in self.reserved and self._vacant(r)

    def _vacant(self, r: int) -> bool:
        """No replica of any model is on slot r's devices (starting, live or draining)."""
        return all(self.life.state[h] == OFF for h in self.slots[r])

    def reserved_for(self, scaler) -> int:
        return sum(self.owner[g] is scaler for g, _ in self.reserved.values())

    def claim(self, scaler, n: int) -> int:
        """Claim up to n slots for `scaler`'s pool from other models; returns how many."""
        got = 0
        while got < n:
            victim = self._victim(scaler)
            if victim is None:
                break
            r = self.slot_of[victim]
            swap = Swap(r, self.owner[victim].pool.name, scaler.pool.name, self.env.now)
            self.swaps.append(swap)
            self.reserved[r] = (self.slots[r][self.scalers.index(scaler)], swap)
            got += 1
            self.life.stop(victim)        # an idle one is off at once, and the claimant starts
            self.owner[victim].record()
        return got

    def cancel(self, scaler, n: int) -> int:
        """Give up to n of `scaler`'s claims not yet started; returns how many."""
        mine = [r for r, (g, _) in self.reserved.items() if self.owner[g] is scaler][:n]
        for r in mine:
            _, swap = self.reserved.pop(r)
            self.swaps.remove(swap)
        return len(mine)

    # ---- choosing and handing over -------------------------------------------------------
    def _victim(self, scaler) -> int | None:
        now = self.env.now
        starved = scaler.current() == 0 and scaler.waiting() > 0
        best = None
        for other in self.scalers:
            running = other.current()
            if other is scaler or running <= other.spec.min:
                continue
            surplus = other.surplus() > 0
            if not (surplus or starved):
                continue
            for g in other.groups:
                if self.life.state[g] != LIVE:
                    continue
                held = now - self._live_since(g)
                if not (surplus or running >= 2 or held >= other.spec.scale_down_window):
                    continue
                key = (not surplus, sum(rep.outstanding() for rep in self.life.groups[g]), -held, g)
                if best is None or key < best[0]:
                    best = (key, g)
        return None if best is None else best[1]

    def _live_since(self, g: int) -> float:
        return next(t for t, state in reversed(self.life.history[g]) if state == LIVE)

    def _changed(self, g: int, state: str) -> None:
        r = self.slot_of.get(g)
        if r is None:
            return
        if state == STARTING:
            previous, self.last[r] = self.last.get(r), self.owner[g]
            claimed = r in self.reserved          # a claim's start: its Swap is recorded already
            if previous is not None and previous is not self.owner[g] and not claimed:
                now = self.env.now        # the devices were free: a change of model, not a claim
                self.swaps.append(Swap(r, previous.pool.name, self.owner[g].pool.name, now, False, now,
                                       self.life.starts[-1]))
            return
        if state != OFF or r not in self.reserved or not self._vacant(r):
            return
        claimant, swap = self.reserved[r]
        swap.drained = self.env.now
        self.life.start(claimant, "swap")
        del self.reserved[r]
        swap.start = self.life.starts[-1]
