"""What every kind of replica shares (`ReplicaBase`: identity, engine limits, intake,
lifecycle, speed), and the load board the replicas post their load on for the router."""
from __future__ import annotations

import numpy as np
import simpy

from ..core.clock import at
from ..core.events import Topic
from ..core.metrics import BusyLog, RequestTable
from ..timing import kernels as K
from ..timing.deployment import Deployment
from . import event_log


class LoadBoard:
    """Each replica's outstanding requests, and until when that count holds without new
    input: what a router reads to pick the least-loaded replica without asking each one."""

    def __init__(self, replicas: int):
        self.outstanding = np.zeros(replicas, np.int64)
        self.until = np.full(replicas, np.inf)


class ReplicaBase:
    """What every kind of replica shares: its identity, engine limits, and intake."""

    def __init__(self, env: simpy.Environment, index: int, pool: str, deployment: Deployment, engine,
                 table: RequestTable, log: BusyLog, board: LoadBoard, role: str = "both"):
        self.env = env
        self.index = index
        self.pool = pool
        self.dep = deployment
        self.table = table
        self.log = log
        self.board = board
        self.bs = engine.block_size
        self.max_seqs = engine.max_batch_seqs
        self.max_tokens = engine.max_batch_tokens
        self.chunk_limit = engine.chunked_prefill or engine.max_batch_tokens
        self.chunked = engine.chunked_prefill is not None
        self.static = engine.batching == "static"
        # disaggregated serving: a prefill replica hands each sequence off after its prefill
        # (holding its KV until the transfer ends); a decode replica takes sequences whose KV
        # has arrived and only decodes them
        self.role = role
        self.prefilled = Topic("prefilled")   # prefill role: (replica, r, blocks) after a prefill (core.events)
        self.params = deployment.params
        self.total_blocks = deployment.total_blocks
        self.per_seq_blocks = deployment.per_seq_blocks
        self.kv_grows = deployment.kv_bytes_per_token > 0
        self.preemptions = 0
        self.busy_time = 0.0
        self.iterations = 0            # committed iterations (host work: iterations x overhead)
        self.clock = 1.0               # clock as a fraction of full speed (power capping)
        self.capacity_freed = Topic("capacity_freed")   # (replica) when sequences leave
        self.busy = Topic("busy")      # (replica, computing) after each plan
        # host CPU seconds to tokenize one prompt token (after the head node's slowdown)
        self.tokenize_per_token = engine.tokenize_per_token
        self.tokenized = 0             # prompt tokens its front end has tokenized (head-node CPU work)
        # gaps between consecutive tokens of a sequence from the window's start: a histogram
        # over event_log.itl_edges()
        self.itl = np.zeros(event_log.ITL_BINS, np.int64)
        self.ready = env.event()       # weights in place; succeeded at once when preloaded
        self.up = True                 # takes new requests (False while failed, stopped or starting again)
        self.life = 0                  # starts so far: callbacks of an earlier life are void
        self.lost = Topic("lost")      # (r) for a request that reaches it while down
        # A tensor-parallel group that spans scale-up domains runs each iteration's
        # all-reduces over the fabric (set by the simulation): a generator taking the
        # iteration's token count.
        self.collective = None
        # An engine whose iterations take more than its kernels' time steps one iteration at a
        # time: with collectives over the fabric, or as a pipeline's micro-batches (through
        # shared stages). Set by the simulation: a generator stepper(replica, kernel seconds,
        # tokens, sequences) that returns when the iteration has ended.
        self.stepper = None
        self.cache = None              # a PrefixCache when the engine caches prefixes
        # the engine's admission may keep out a request that fits the cache (`fits_alone`)
        self.strict_admission = False

    def submit(self, r: int) -> None:
        """A new request for this replica: its host tokenizes the prompt, then it queues."""
        if not self.up:      # went down while the request crossed the fabric to it
            self.lost(r)
            return
        self.table.replica[r] = self.index
        self.tokenized += int(self.table.prompt[r])
        if self.tokenize_per_token > 0:
            delay = float(self.table.prompt[r]) * self.tokenize_per_token
            at(self.env, self.env.now + delay).callbacks.append(lambda _: self._enqueue(r))
        else:
            self._enqueue(r)

    def activity(self) -> tuple[float, int]:
        """Seconds busy and iterations run so far, including work under way now."""
        return self.busy_time, self.iterations

    def set_params(self, params: np.ndarray, clock: float) -> None:
        """Run at a new speed (a power cap's clock) from the next batch on."""
        self.params, self.clock = params, clock

    def host_wait(self) -> float:
        """Host seconds per iteration during which the devices wait: none where the engine
        overlaps its host work with the device's previous iteration."""
        p = self.params
        return 0.0 if p[K.K_HOST_OVERLAP] > 0.0 else float(p[K.K_OVERHEAD] * p[K.K_HOST_SCALE])

    def latest_params(self) -> np.ndarray:
        """The cost vector the next iterations will run with (one switch may be pending): what
        a change of one factor (a power cap's clock, the head node's stretch) starts from."""
        return self.params

    def latest_clock(self) -> float:
        return self.clock

    def output_rate(self) -> float:
        """Output tokens per second it streams now (what its detokenizer keeps up with); an
        engine that streams no text (diffusion) reports none."""
        return 0.0

    def has_room(self) -> bool:
        """A free batch slot (for central dispatch)."""
        return self.outstanding() < self.max_seqs

    def _notify(self) -> None:
        for fn in self.capacity_freed.subscribers:
            fn(self)

    def fail(self) -> list[int]:
        """The replica goes down now: work in progress is lost. Returns the requests it held
        (running, waiting, preempted), reset to start again elsewhere; the iteration running
        now is lost, the ones that ended are kept. It takes no requests until `restart`."""
        self.up = False
        self.life += 1
        lost = self._drop_all()
        t = self.table
        t.replica[lost] = -1
        t.generated[lost] = 0
        t.admitted[lost] = np.nan       # the attempt that serves it sets these again
        t.first_token[lost] = np.nan
        t.kv_ready[lost] = False
        t.cached[lost] = 0
        t.keep_blocks[lost] = 0
        self.ready = self.env.event()
        self._publish()
        return lost

    def restart(self) -> simpy.Event:
        """It starts again after `fail`: the `ready` event to succeed once its weights are
        loaded (the router then puts it back in service)."""
        return self.ready

    def _drop_all(self) -> list[int]:
        raise NotImplementedError

    def _publish(self, until: float = np.inf) -> None:
        self.board.outstanding[self.index] = self.outstanding()
        self.board.until[self.index] = until

