"""Counters for ``/_emulator/stats``: accepted, rejected by reason, throttled, rate and latency.

Only the server's event loop writes; readers on other threads take a snapshot under the lock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

__all__ = ["Stats"]

_LATENCY_SAMPLES = 50_000


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100.0 * len(sorted_values)) - 1))
    return sorted_values[index]


class Stats:
    """What the emulator has done since start (or the last :meth:`reset`)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._accepted = 0
            self._replayed = 0
            self._status_reads = 0
            self._throttled = 0
            self._rejected: Counter[str] = Counter()
            self._recent: deque[float] = deque()
            self._latency: dict[str, deque[float]] = {
                "send": deque(maxlen=_LATENCY_SAMPLES),
                "status": deque(maxlen=_LATENCY_SAMPLES),
            }

    def accepted(self, *, replay: bool) -> None:
        with self._lock:
            if replay:
                self._replayed += 1
                return
            self._accepted += 1
            now = self._clock()
            self._recent.append(now)
            while self._recent and self._recent[0] <= now - 60.0:
                self._recent.popleft()

    def rejected(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] += 1
            if reason == "quota":
                self._throttled += 1

    def status_read(self) -> None:
        with self._lock:
            self._status_reads += 1

    def latency(self, route: str, seconds: float) -> None:
        with self._lock:
            self._latency[route].append(seconds)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            now = self._clock()
            per_minute = sum(1 for t in self._recent if t > now - 60.0)
            latency: dict[str, dict[str, float | int]] = {}
            for route, samples in self._latency.items():
                ordered = sorted(samples)
                latency[route] = {
                    "count": len(ordered),
                    "p50_ms": round(_percentile(ordered, 50) * 1000, 3),
                    "p99_ms": round(_percentile(ordered, 99) * 1000, 3),
                    "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 3),
                }
            return {
                "accepted": self._accepted,
                "replayed": self._replayed,
                "rejected": dict(self._rejected),
                "throttled": self._throttled,
                "status_reads": self._status_reads,
                "per_minute_rate": per_minute,
                "latency": latency,
            }
