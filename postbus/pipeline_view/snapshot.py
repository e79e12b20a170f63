"""One sample of the pipeline, the shape the console page and its tests read.

A :class:`PipelineSnapshot` is what a source (:mod:`postbus.pipeline_view.sources`) sees at one moment:
queue depths, emails accepted by ACS so far, the quota, 429 answers, dead letters by reason, the
latency percentiles and the workers' readiness. :class:`History` keeps the last samples and derives
the send rate from successive ``sent`` counts, so the chart shows the spike draining against the
quota.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

__all__ = ["History", "LatencyPercentiles", "PipelineSnapshot", "QueueSample", "WorkerSample", "percentiles"]

#: The send rate is averaged over this window so a 1 s sample does not jump with each batch.
RATE_WINDOW_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One queue (or lane) right now."""

    name: str
    active: int
    scheduled: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """One worker's ``/readyz`` answer; ``ready`` is false when it did not answer."""

    name: str
    url: str
    ready: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LatencyPercentiles:
    """Percentiles in seconds over ``count`` emails."""

    count: int
    p50: float
    p95: float
    p99: float


def percentiles(values: Sequence[float]) -> LatencyPercentiles | None:
    """Nearest-rank p50/p95/p99 of ``values``; ``None`` when there are none."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    return LatencyPercentiles(count=len(ordered), p50=rank(50), p95=rank(95), p99=rank(99))


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    """What the pipeline looks like at ``at`` (epoch seconds).

    ``sent`` and ``throttled`` are totals since the source started; ``send_rate_per_minute`` is
    filled in by :class:`History` from successive samples. ``published`` is known only to the demo.
    """

    at: float
    queues: tuple[QueueSample, ...] = ()
    sent: int = 0
    throttled: int = 0
    quota_per_minute: int | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)
    accepted_latency: LatencyPercentiles | None = None
    delivered_latency: LatencyPercentiles | None = None
    delivery: dict[str, int] = field(default_factory=dict)
    workers: tuple[WorkerSample, ...] = ()
    published: int | None = None
    send_rate_per_minute: float | None = None
    problems: tuple[str, ...] = ()

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["dead_lettered"] = self.dead_lettered
        return document


class History:
    """The last ``size`` snapshots, each with its send rate filled in."""

    def __init__(self, size: int = 900) -> None:
        self._samples: deque[PipelineSnapshot] = deque(maxlen=size)

    def add(self, snapshot: PipelineSnapshot) -> PipelineSnapshot:
        """Store ``snapshot`` with the send rate over the last :data:`RATE_WINDOW_S`; returns it."""
        earlier = next(
            (s for s in self._samples if snapshot.at - s.at <= RATE_WINDOW_S and s.at < snapshot.at), None
        )
        rate = None
        if earlier is not None:
            rate = max(0.0, (snapshot.sent - earlier.sent) / (snapshot.at - earlier.at) * 60)
        stored = replace(snapshot, send_rate_per_minute=rate)
        self._samples.append(stored)
        return stored

    @property
    def latest(self) -> PipelineSnapshot | None:
        return self._samples[-1] if self._samples else None

    def __iter__(self) -> Iterator[PipelineSnapshot]:
        return iter(tuple(self._samples))

    def __len__(self) -> int:
        return len(self._samples)
