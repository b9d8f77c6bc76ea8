"""What can happen to a request, and who reacts: the lifecycle's vocabulary.

A request

1. arrives: at its time from the source (open loop), when its client's last request ended
   (closed loop, `demand.closed_loop`) or when the calls it depends on finished (sessions,
   `serving.session_runner`);
2. is admitted or shed at the front door (`ops.admission`), then routed to a replica or
   rejected with a reason (`serving.router`); it may wait at the router for a replica to
   start, or cross the fabric to the replica's host first (`serving.ingress`);
3. queues at its replica, is tokenized, and is taken into the running batch by the compiled
   scheduler (`serving.scheduler`): prefill chunk by chunk, its first token, then a token per
   iteration; it may be preempted when the KV cache is full, and resumed;
4. after its prefill on a prefill-role replica, is transferred with its KV cache to a decode
   replica (`serving.disagg`);
5. is lost when its replica goes down (`ops.failures`, `ops.lifecycle`): retried elsewhere or
   failed;
6. ends: completed, rejected, shed or failed. Every request that arrived ends exactly once or
   is still in flight when the run stops.

Steps 3's per-token events are columns of the request table (`core.metrics`), written by
compiled code that cannot call Python per token. The events below are those components act
on in simulated time. Each is a `Topic`: components subscribe a function, and the owner calls
every subscriber in the order they subscribed.

| topic | owner | called as | subscribers |
|---|---|---|---|
| `ended` | the request table | `(r, when)` | ingress (the reply's flow), session runner (release the calls that waited), closed-loop clients (send the next request) |
| `prefilled` | a prefill-role replica | `(replica, r, kv_blocks)` | disaggregation (hand the sequence to a decode replica) |
| `lost` | a replica | `(r)` | the router (retry the request elsewhere, or fail it) |
| `capacity_freed` | a replica | `(replica)` | the router (central dispatch: send it the next waiting request), the lifecycle (a draining replica that emptied stops) |
| `busy` | a replica | `(replica, computing)` | time slicing (`ops.device_share`: the engines sharing devices change speed) |
| `starved` | the router | `(model)` | autoscalers (wake a pool of the model that has nothing running) |
| `changed` | the lifecycle | `(group, state)` | model swaps (`ops.model_swap`) |
"""  # noqa: E501 -- the rows of a Markdown table cannot be wrapped
from __future__ import annotations


class Topic:
    """One kind of event: its subscribers, called in the order they subscribed. Hot paths
    loop over `subscribers` themselves, which saves a call."""

    __slots__ = ("name", "subscribers")

    def __init__(self, name: str):
        self.name = name
        self.subscribers: list = []

    def subscribe(self, fn) -> None:
        self.subscribers.append(fn)

    def __bool__(self) -> bool:
        return bool(self.subscribers)

    def __call__(self, *args) -> None:
        for fn in self.subscribers:
            fn(*args)

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, {len(self.subscribers)} subscribers)"
