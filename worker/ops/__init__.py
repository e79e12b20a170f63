"""Operations tooling: dead-letter list/replay/purge, ACS status lookups and the preflight doctor.

The CLI (``dlq_cli``, ``status_cli``, ``doctor_cli``) is a thin layer over these modules, which
tests and other tools can call directly::

    from postbus.worker.ops import DeadLetterQueue, ReplayOptions, Selection, replay

    async with DeadLetterQueue(settings) as dlq, AcsStatusClient.from_settings(settings) as acs:
        summary = await replay(dlq, acs, options=ReplayOptions(selection=Selection.parse(
            reasons=["RetriesExhausted"]), rate=5.0), namespace=settings.operation_namespace)
"""

from __future__ import annotations

from postbus.worker.ops.acs import AcsRefused, AcsStatusClient, OperationInfo, OperationLookup
from postbus.worker.ops.deadletters import DeadLetterEntry, DeadLetterPort, DeadLetterQueue, entry_from, sweep
from postbus.worker.ops.doctor import Check, DoctorOptions, run_doctor
from postbus.worker.ops.errors import BadInput, OpsError
from postbus.worker.ops.filters import Selection, parse_instant, parse_rate
from postbus.worker.ops.purge import PurgeSummary, purge
from postbus.worker.ops.replay import (
    ReplayItem,
    ReplayOptions,
    ReplaySummary,
    replay,
    replay_message_id,
    replay_wire,
)
from postbus.worker.ops.status import StatusRow, event_status, operation_status

__all__ = [
    "AcsRefused",
    "AcsStatusClient",
    "BadInput",
    "Check",
    "DeadLetterEntry",
    "DeadLetterPort",
    "DeadLetterQueue",
    "DoctorOptions",
    "OperationInfo",
    "OperationLookup",
    "OpsError",
    "PurgeSummary",
    "ReplayItem",
    "ReplayOptions",
    "ReplaySummary",
    "Selection",
    "StatusRow",
    "entry_from",
    "event_status",
    "operation_status",
    "parse_instant",
    "parse_rate",
    "purge",
    "replay",
    "replay_message_id",
    "replay_wire",
    "run_doctor",
    "sweep",
]
