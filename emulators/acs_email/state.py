"""Everything one running emulator knows, shared by the HTTP handlers and the embedding API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from postbus.emulators.acs_email.auth import HmacVerifier
from postbus.emulators.acs_email.faults import Faults
from postbus.emulators.acs_email.mailbox import Mailbox
from postbus.emulators.acs_email.operations import (
    DEFAULT_FAILURE_RULES,
    FailureRule,
    OperationStore,
    as_failure_rules,
)
from postbus.emulators.acs_email.quota import QuotaLimiter
from postbus.emulators.acs_email.reports import Reporter
from postbus.emulators.acs_email.stats import Stats

__all__ = ["EmulatorState"]


@dataclass(slots=True)
class EmulatorState:
    """Mutable state of one emulator; knobs are safe to change from another thread."""

    verifier: HmacVerifier
    quota: QuotaLimiter
    mailbox: Mailbox
    faults: Faults = field(default_factory=Faults)
    operations: OperationStore = field(default_factory=OperationStore)
    stats: Stats = field(default_factory=Stats)
    succeed_after: float = 0.0
    failure_rules: tuple[FailureRule, ...] = DEFAULT_FAILURE_RULES
    # Status for a reused Operation-Id with another body; undocumented for ACS (see operations.py).
    conflict_status: int = 409
    # Delivery reports of accepted sends, when the emulator has somewhere to send them.
    reporter: Reporter | None = None
    # Set when the server stops, so stalled responses can finish and shutdown is prompt.
    stopping: asyncio.Event | None = None

    def set_failure_rules(self, rules: Iterable[FailureRule | Sequence[str]]) -> None:
        self.failure_rules = as_failure_rules(rules)
