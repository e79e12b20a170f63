"""Per-client rate limits: a token bucket per client, answered with 429 and ``Retry-After``.

A single event costs 1, a batch costs its number of events (at most the bucket's ``burst``, so a
full batch can always pass once the bucket is full), other calls cost 1. The buckets live in this
process: with N replicas a client may reach N times its rate, which the queue absorbs; the limit
protects the API and the ACS quota's fairness between clients, not the quota itself (the workers'
send gate does that).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from postbus.producers.api.clients import Client
from postbus.producers.api.problems import Problem

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets by client name; :meth:`take` raises a 429 :class:`Problem` when one is empty."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, client: Client, cost: int = 1) -> None:
        """Spend ``cost`` tokens of ``client``'s bucket, or refuse with the seconds until they exist."""
        limit = client.rate_limit
        cost = max(1, min(cost, limit.burst))
        now = self._clock()
        tokens, at = self._buckets.get(client.name, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - at) * limit.per_second)
        if tokens >= cost:
            self._buckets[client.name] = (tokens - cost, now)
            return
        self._buckets[client.name] = (tokens, now)
        wait = max(1, math.ceil((cost - tokens) / limit.per_second))
        raise Problem(
            "rate-limited",
            f"client {client.name!r} may send {limit.per_second:g} events/s (bursts of {limit.burst}); "
            f"retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
