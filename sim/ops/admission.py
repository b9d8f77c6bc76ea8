"""Admission at the front door: per-tenant rate limits and load shedding by class.

Before the router picks a replica, each new request passes two gates:

- **Rate limits.** A tenant's token buckets (as API providers limit requests and tokens per
  minute): a bucket of `burst` requests refilled at `requests_per_s`, and optionally one of
  `token_burst` tokens (prompt + output) refilled at `tokens_per_s`. A request that finds
  either bucket short is rejected (`rate_limited`) and takes nothing from them.
- **Load shedding.** While the model's replicas hold, on average, at least
  `shed.waiting_per_replica[class]` requests waiting each, new requests of that class are
  shed (`overload`). Lower classes get lower thresholds, so they go first as load builds;
  a class with no threshold is never shed.

Requests turned away here end in their own states: rejected (a limit said no) or shed (the
fleet was overloaded), apart from failed (they were admitted and could not be served).
"""
from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from ..spec.base import PerSecond, Spec


class RateLimit(Spec):
    tenant: str = Field(description="the tenant it limits (a stream's tenant, by default its name)")
    requests_per_s: PerSecond | None = Field(default=None, gt=0, description="requests per second refilling the "
                                                                             "requests bucket")
    burst: float | None = Field(default=None, ge=1, description="requests the bucket holds (default: 1 s worth, "
                                                                "at least 1)")
    tokens_per_s: PerSecond | None = Field(default=None, gt=0, description="prompt + output tokens per second")
    token_burst: float | None = Field(default=None, ge=1, description="tokens the bucket holds (default: 60 s worth)")

    @model_validator(mode="after")
    def _some_limit(self):
        if self.requests_per_s is None and self.tokens_per_s is None:
            raise ValueError("a rate limit needs requests_per_s, tokens_per_s or both")
        if self.burst is not None and self.requests_per_s is None:
            raise ValueError("burst sizes the requests bucket: give requests_per_s")
        if self.token_burst is not None and self.tokens_per_s is None:
            raise ValueError("token_burst sizes the tokens bucket: give tokens_per_s")
        return self


class Shedding(Spec):
    waiting_per_replica: dict[int, float] = Field(
        description="class (priority) -> waiting requests per replica of its model at which its new requests are shed")

    @model_validator(mode="after")
    def _ordered(self):
        if any(v < 0 for v in self.waiting_per_replica.values()):
            raise ValueError("waiting_per_replica thresholds must be >= 0")
        ranked = sorted(self.waiting_per_replica.items())
        for (lo, a), (hi, b) in zip(ranked, ranked[1:], strict=False):
            if a > b:
                raise ValueError(f"class {lo} would be kept longer than class {hi} ({a:g} > {b:g} waiting per "
                                 f"replica): give higher classes higher thresholds")
        return self


class AdmissionSpec(Spec):
    rate_limits: list[RateLimit] = Field(default_factory=list, description="per-tenant token buckets of requests "
                                                                          "and tokens")
    shed: Shedding | None = Field(default=None, description="load shedding by class while the fleet is overloaded")


class TokenBucket:
    """Holds up to `capacity`, refilled continuously at `rate` per second; starts full."""

    def __init__(self, rate: float, capacity: float):
        self.rate, self.capacity = rate, capacity
        self.level, self.last = capacity, 0.0

    def refill(self, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.last) * self.rate)
        self.last = now
        return self.level


class Admission:
    """The gates, at run time. `waiting_per_replica(model)` is read from the router only when
    a shedding threshold applies to the request's class."""

    def __init__(self, spec: AdmissionSpec, table, tenant_of_stream: list[str]):
        self.table = table
        tenants = sorted(set(tenant_of_stream))
        self.tenant_id = np.array([tenants.index(t) for t in tenant_of_stream], np.int64)
        self.requests: dict[int, TokenBucket] = {}
        self.tokens: dict[int, TokenBucket] = {}
        for limit in spec.rate_limits:
            t = tenants.index(limit.tenant)
            if limit.requests_per_s is not None:
                burst = limit.burst if limit.burst is not None else max(1.0, limit.requests_per_s)
                self.requests[t] = TokenBucket(limit.requests_per_s, burst)
            if limit.tokens_per_s is not None:
                burst = limit.token_burst if limit.token_burst is not None else 60.0 * limit.tokens_per_s
                self.tokens[t] = TokenBucket(limit.tokens_per_s, burst)
        self.shed_at = dict(spec.shed.waiting_per_replica) if spec.shed else {}

    def verdict(self, r: int, now: float, waiting_per_replica) -> tuple[str, str] | None:
        """('rejected', reason) or ('shed', reason) for request r arriving now; None: admitted."""
        t = int(self.tenant_id[self.table.stream[r]])
        req, tok = self.requests.get(t), self.tokens.get(t)
        size = float(self.table.prompt[r] + self.table.output[r])
        if req is not None and req.refill(now) < 1.0:
            return "rejected", "rate_limited"
        if tok is not None and tok.refill(now) < size:
            return "rejected", "rate_limited"
        limit = self.shed_at.get(int(self.table.priority[r]))
        if limit is not None and waiting_per_replica() >= limit:
            return "shed", "overload"
        if req is not None:
            req.level -= 1.0
        if tok is not None:
            tok.level -= size
        return None
