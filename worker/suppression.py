"""The suppression list (optional): recipients not to send to again after a hard bounce or ``Suppressed``.

ACS limits senders whose bounce rate is high, so repeating a send to an address that bounced hurts
every other email of the domain. With ``POSTBUS_SUPPRESS_DAYS`` > 0, the report consumer adds the
recipient of every ``Suppressed`` report and every hard (5.x.x) bounce to this list, and the
pipeline dead-letters a later event with such a recipient as ``RecipientSuppressed`` instead of
sending it.

Addresses are never kept: an entry is an HMAC-SHA256 of the lower-cased address under a random
key made when the process starts, so a memory dump does not reveal them and cannot be matched
against a list of guessed addresses. The list lives in the worker process and entries expire after
the TTL. Each worker learns from the reports it consumes, and Service Bus spreads the reports over
the replicas, so with several replicas a recipient may still get a few more sends before each
replica has seen one of its reports; the list reduces repeat bounces, it does not promise zero.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SuppressionList"]


class SuppressionList:
    """Keyed hashes of suppressed recipients with a time to live.

    Example::

        suppressed = SuppressionList(ttl_seconds=30 * 86400)
        suppressed.add("jane@example.com")
        suppressed.first_of(["ann@example.com", "Jane@Example.com"])   # "Jane@Example.com"
    """

    def __init__(
        self, ttl_seconds: float, *, key: bytes | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_seconds
        self._key = key or secrets.token_bytes(32)
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def _hash(self, address: str) -> str:
        return hmac.new(self._key, address.strip().lower().encode(), hashlib.sha256).hexdigest()

    def add(self, address: str) -> None:
        """Suppress ``address`` for the TTL from now."""
        with self._lock:
            self._until[self._hash(address)] = self._clock() + self._ttl

    def add_from_body(self, body: bytes) -> bool:
        """Suppress the ``data.recipient`` of a report's raw body; ``False`` if it has none."""
        try:
            document: Any = json.loads(body)
        except ValueError:
            return False
        if isinstance(document, list) and len(document) == 1:
            document = document[0]
        data = document.get("data") if isinstance(document, dict) else None
        recipient = data.get("recipient") if isinstance(data, dict) else None
        if not isinstance(recipient, str) or "@" not in recipient:
            return False
        self.add(recipient)
        return True

    def first_of(self, addresses: Iterable[str]) -> str | None:
        """The first of ``addresses`` that is suppressed now, or ``None``."""
        now = self._clock()
        with self._lock:
            for address in addresses:
                until = self._until.get(self._hash(address))
                if until is None:
                    continue
                if until > now:
                    return address
                del self._until[self._hash(address)]
        return None

    def __len__(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for until in self._until.values() if until > now)
