"""Fault injection knobs, changeable from any thread while the server runs.

Example::

    acs.faults.fail_rate = 0.1                # 10 % of sends answer 500/502/503 (nothing stored)
    acs.faults.latency_ms, acs.faults.jitter_ms = 100, 20
    acs.faults.stall_next(1)                  # next send is stored, its response never completes
    acs.faults.throttle_next(3, retry_after=2)
    acs.faults.status_404_first = True        # first status read of each operation answers 404
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FaultDecision", "Faults"]

_ALLOWED_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one send request, drawn once when it arrives."""

    delay_s: float = 0.0
    fail_status: int | None = None
    throttle_retry_after: int | None = None
    stall: bool = False


class Faults:
    """Probabilities and one-shot counters; every method is thread-safe."""

    def __init__(self, *, fail_rate: float = 0.0, latency_ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._fail_rate = 0.0
        self._fail_statuses: tuple[int, ...] = (500, 502, 503)
        self._latency_ms = 0.0
        self._jitter_ms = 0.0
        self._stall = 0
        self._throttle = 0
        self._throttle_retry_after = 2
        self._fail_next = 0
        self._fail_next_status = 503
        self.status_404_first = False
        self.fail_rate = fail_rate
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms

    @property
    def fail_rate(self) -> float:
        return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        self._fail_rate = float(value)

    @property
    def fail_statuses(self) -> tuple[int, ...]:
        return self._fail_statuses

    @fail_statuses.setter
    def fail_statuses(self, value: tuple[int, ...] | list[int]) -> None:
        statuses = tuple(int(v) for v in value)
        if not statuses or not set(statuses) <= _ALLOWED_STATUSES:
            raise ValueError(f"fail_statuses must be a non-empty subset of {sorted(_ALLOWED_STATUSES)}")
        self._fail_statuses = statuses

    @property
    def latency_ms(self) -> float:
        return self._latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        if float(value) < 0:
            raise ValueError("latency_ms must be >= 0")
        self._latency_ms = float(value)

    @property
    def jitter_ms(self) -> float:
        return self._jitter_ms

    @jitter_ms.setter
    def jitter_ms(self, value: float) -> None:
        if float(value) < 0:
            raise ValueError("jitter_ms must be >= 0")
        self._jitter_ms = float(value)

    def stall_next(self, n: int = 1) -> None:
        """Store the next ``n`` sends but never complete their responses (an ambiguous timeout)."""
        with self._lock:
            self._stall += max(0, int(n))

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer exactly the next ``n`` sends with ``status`` (nothing stored), unlike the random ``fail_rate``."""
        if status not in (500, 502, 503):
            raise ValueError(f"fail status must be 500, 502 or 503, got {status}")
        with self._lock:
            self._fail_next += max(0, int(n))
            self._fail_next_status = status

    def throttle_next(self, n: int = 1, retry_after: int = 2) -> None:
        """Answer the next ``n`` sends with 429 and ``Retry-After: retry_after`` regardless of quota.

        ``retry_after=0`` sends the 429 without a ``Retry-After`` header (the SDK then does not retry).
        """
        with self._lock:
            self._throttle += max(0, int(n))
            self._throttle_retry_after = max(0, int(retry_after))

    def delay_s(self) -> float:
        """Added latency for one request: fixed part plus uniform jitter."""
        if self._latency_ms <= 0 and self._jitter_ms <= 0:
            return 0.0
        with self._lock:
            jitter = self._rng.uniform(0.0, self._jitter_ms) if self._jitter_ms else 0.0
        return (self._latency_ms + jitter) / 1000.0

    def decide_send(self) -> FaultDecision:
        """Draw the faults for one send request (throttle wins over failure, failure over stall)."""
        delay = self.delay_s()
        if not (self._fail_rate or self._stall or self._throttle or self._fail_next):
            return FaultDecision(delay_s=delay)
        with self._lock:
            if self._throttle > 0:
                self._throttle -= 1
                return FaultDecision(delay_s=delay, throttle_retry_after=self._throttle_retry_after)
            if self._fail_next > 0:
                self._fail_next -= 1
                return FaultDecision(delay_s=delay, fail_status=self._fail_next_status)
            if self._fail_rate and self._rng.random() < self._fail_rate:
                return FaultDecision(delay_s=delay, fail_status=self._rng.choice(self._fail_statuses))
            if self._stall > 0:
                self._stall -= 1
                return FaultDecision(delay_s=delay, stall=True)
        return FaultDecision(delay_s=delay)

    def reset(self) -> None:
        with self._lock:
            self._fail_rate = 0.0
            self._fail_statuses = (500, 502, 503)
            self._latency_ms = self._jitter_ms = 0.0
            self._stall = self._throttle = self._fail_next = 0
            self.status_404_first = False

    def to_dict(self) -> dict[str, object]:
        with self._lock:
            return {
                "fail_rate": self._fail_rate,
                "fail_statuses": list(self._fail_statuses),
                "latency_ms": self._latency_ms,
                "jitter_ms": self._jitter_ms,
                "status_404_first": self.status_404_first,
                "stall_pending": self._stall,
                "throttle_pending": self._throttle,
                "throttle_retry_after": self._throttle_retry_after,
                "fail_pending": self._fail_next,
            }

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply a PATCH from ``/_emulator/faults``; raises ``ValueError`` on unknown or bad values."""
        known = {"fail_rate", "fail_statuses", "latency_ms", "jitter_ms", "status_404_first", "stall_next"}
        unknown = set(changes) - known - {"throttle_next", "throttle_retry_after"}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        try:
            for name, value in changes.items():
                if name == "stall_next":
                    self.stall_next(int(value))  # type: ignore[call-overload]
                elif name == "throttle_next":
                    retry_after = changes.get("throttle_retry_after", 2)
                    self.throttle_next(int(value), int(retry_after))  # type: ignore[call-overload]
                elif name == "status_404_first":
                    if not isinstance(value, bool):
                        raise ValueError("status_404_first must be a boolean")
                    self.status_404_first = value
                elif name != "throttle_retry_after":
                    setattr(self, name, value)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
