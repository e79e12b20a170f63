"""Sliding-window rate limits for sends and status reads, like ACS Email's per-subscription quotas.

Each bucket (``send``, ``status``) has a per-minute and a per-hour window. A request is admitted when
every window has a free slot; otherwise the caller gets the whole seconds until the oldest entry
of the fullest window expires (>= 1), which the server returns as ``Retry-After``. Windows slide
(a log of admission times), which is the strictest reading of the undocumented real behaviour.

Example::

    limiter = QuotaLimiter(QuotaConfig.parse("azure-default"), clock=fake_clock)
    wait = limiter.try_acquire("send")   # None when admitted, else seconds to wait
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["PRESETS", "Bucket", "QuotaConfig", "QuotaLimiter"]

Bucket = Literal["send", "status"]

_MINUTE = 60.0
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Limits per window; ``None`` means unlimited.

    ``QuotaConfig.parse("azure-default")``, ``QuotaConfig.parse("30,100")`` (status limits default to
    twice the send limits, the ratio of both Azure tables) or ``"30,100,60,200"``.
    """

    sends_per_minute: int | None = None
    sends_per_hour: int | None = None
    status_per_minute: int | None = None
    status_per_hour: int | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        for value in (
            self.sends_per_minute,
            self.sends_per_hour,
            self.status_per_minute,
            self.status_per_hour,
        ):
            if value is not None and value < 1:
                raise ValueError("quota limits must be positive integers")

    @classmethod
    def parse(cls, text: str) -> QuotaConfig:
        """A preset name or ``SENDS_PER_MIN,SENDS_PER_HOUR[,STATUS_PER_MIN,STATUS_PER_HOUR]``."""
        key = text.strip().lower()
        if key in PRESETS:
            return PRESETS[key]
        parts = [p.strip() for p in key.split(",")]
        if len(parts) not in (2, 4) or not all(p.isdigit() for p in parts):
            raise ValueError(
                f"invalid quota {text!r}: use one of {', '.join(PRESETS)} "
                "or SENDS_PER_MIN,SENDS_PER_HOUR[,STATUS_PER_MIN,STATUS_PER_HOUR]"
            )
        nums = [int(p) for p in parts]
        if len(nums) == 2:
            nums += [2 * nums[0], 2 * nums[1]]
        return cls(
            sends_per_minute=nums[0],
            sends_per_hour=nums[1],
            status_per_minute=nums[2],
            status_per_hour=nums[3],
            name=text.strip(),
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def limits(self, bucket: Bucket) -> tuple[int | None, int | None]:
        if bucket == "send":
            return self.sends_per_minute, self.sends_per_hour
        return self.status_per_minute, self.status_per_hour


PRESETS: dict[str, QuotaConfig] = {
    "unlimited": QuotaConfig(name="unlimited"),
    "azure-default": QuotaConfig(30, 100, 60, 200, name="azure-default"),
    "azure-managed": QuotaConfig(5, 10, 10, 20, name="azure-managed"),
}


class QuotaLimiter:
    """Thread-safe sliding windows over an injected monotonic clock (seconds)."""

    def __init__(self, config: QuotaConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._log: dict[Bucket, deque[float]] = {"send": deque(), "status": deque()}

    @property
    def config(self) -> QuotaConfig:
        return self._config

    def set_config(self, config: QuotaConfig) -> None:
        """Swap limits while running; admissions already logged keep counting against the new limits."""
        with self._lock:
            self._config = config

    def try_acquire(self, bucket: Bucket) -> int | None:
        """Admit one request (``None``) or return the whole seconds until a slot frees (>= 1)."""
        per_minute, per_hour = self._config.limits(bucket)
        if per_minute is None and per_hour is None:
            return None
        with self._lock:
            now = self._clock()
            log = self._log[bucket]
            while log and log[0] <= now - _HOUR:
                log.popleft()
            wait = 0.0
            for limit, window in ((per_minute, _MINUTE), (per_hour, _HOUR)):
                if limit is None:
                    continue
                in_window = self._count_since(log, now - window)
                if in_window >= limit:
                    # The slot frees when the entry that puts us at the limit leaves the window.
                    oldest_blocking = log[len(log) - limit]
                    wait = max(wait, oldest_blocking + window - now)
            if wait > 0:
                return max(1, math.ceil(wait))
            log.append(now)
            return None

    def in_window(self, bucket: Bucket, window_s: float = _MINUTE) -> int:
        with self._lock:
            return self._count_since(self._log[bucket], self._clock() - window_s)

    @staticmethod
    def _count_since(log: deque[float], start: float) -> int:
        # Entries are in time order; count from the right until one falls out of the window.
        count = 0
        for stamp in reversed(log):
            if stamp <= start:
                break
            count += 1
        return count
