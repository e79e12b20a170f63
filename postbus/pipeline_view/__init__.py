"""The pipeline console: queue depths, send rate against the quota, 429s, dead letters by reason,
latency percentiles and the workers' readiness, live in the browser.

``postbus demo`` serves it for the spike it runs; ``postbus console`` serves it for any settings.
"""

from __future__ import annotations

from postbus.pipeline_view.server import ConsoleServer
from postbus.pipeline_view.snapshot import (
    History,
    LatencyPercentiles,
    PipelineSnapshot,
    QueueSample,
    WorkerSample,
)
from postbus.pipeline_view.sources import EmbeddedSource, PipelineSource, SettingsSource

__all__ = [
    "ConsoleServer",
    "EmbeddedSource",
    "History",
    "LatencyPercentiles",
    "PipelineSnapshot",
    "PipelineSource",
    "QueueSample",
    "SettingsSource",
    "WorkerSample",
]
