"""The harness the demo, the chaos tests and the benchmarks share: worker processes and accounting.

It starts real ``postbus worker`` processes wired to embedded emulators (:func:`worker_env`,
:func:`start_workers`, :func:`stop_workers`), reads the dead-letter queue (:func:`dead_letters`)
and accounts for every published event (:func:`account`): each one sent exactly once or
dead-lettered with the reason the traffic generator expected. Like the demo, it wires producers,
worker and emulators together, so it imports them only inside its functions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postbus.emulators.acs_email import EmailEmulator
    from postbus.emulators.servicebus import ServiceBusEmulator

__all__ = [
    "SENDERS",
    "DemoReport",
    "account",
    "dead_letters",
    "start_workers",
    "stop_workers",
    "worker_env",
]

SENDERS = {
    "orders": "orders@shop.example.com",
    "returns": "returns@shop.example.com",
    "care": "care@clinic.example.org",
    "permits": "permits@city.example.net",
}


@dataclass
class DemoReport:
    """What the demo measured and whether every event is accounted for."""

    published: int = 0
    sent: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    #: The same latencies by lane (critical, normal, bulk) when the run used lanes.
    lane_latencies: dict[str, list[float]] = field(default_factory=dict)
    drain_seconds: float = 0.0
    throttled: int = 0
    mailbox_dir: Path | None = None
    inspection_url: str = ""
    #: Records by outcome once ACS's reports came in (``delivered``, ``bounced``, ...).
    outcomes: dict[str, int] = field(default_factory=dict)
    #: Records delivered within 5 minutes of first enqueue, over all records of the run.
    delivered_within_slo_share: float | None = None
    #: Attachments that arrived byte-identical, and how many of them travelled through the claim check.
    attachments_intact: int = 0
    attachments_claim_checked: int = 0
    #: The summary has been printed: what follows (waiting for Enter) is no part of the run.
    summarized: bool = False

    @property
    def ok(self) -> bool:
        """Every event accounted for."""
        return not self.problems


def worker_env(
    sb: ServiceBusEmulator, acs: EmailEmulator, *, quota: int, concurrency: int, **extra: str
) -> dict[str, str]:
    """Environment of a ``postbus worker`` process wired to the embedded emulators."""
    import json

    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTBUS_")}
    # Where the caller keeps delivery records (a test's own file) stays where it is.
    if "POSTBUS_RECORD_URL" in os.environ:
        env["POSTBUS_RECORD_URL"] = os.environ["POSTBUS_RECORD_URL"]
    env.update(
        {
            "POSTBUS_ENV_FILE": "",  # the user's ./.env is for their own setup, not the demo's workers
            "POSTBUS_SERVICEBUS_CONNECTION_STRING": sb.connection_string,
            "POSTBUS_ACS_ENDPOINT": acs.endpoint,
            "POSTBUS_ACS_ACCESS_KEY": acs.access_key,
            "POSTBUS_SENDERS": json.dumps(SENDERS),
            "POSTBUS_QUOTA_PER_MINUTE": str(quota),
            "POSTBUS_QUOTA_PER_HOUR": "0",
            "POSTBUS_CONCURRENCY": str(concurrency),
            "POSTBUS_HEALTH_PORT": "0",
            "POSTBUS_LOG_FORMAT": "json",
            "POSTBUS_RETRY_BACKOFF_BASE_SECONDS": "1",
            "POSTBUS_RETRY_BACKOFF_CAP_SECONDS": "10",
        }
    )
    env.update({f"POSTBUS_{name.upper()}": value for name, value in extra.items()})
    return env


async def dead_letters(sb: ServiceBusEmulator, queue: str = "notifications") -> list[tuple[str, str, str]]:
    """(message id, event id or "", reason) of every dead-lettered message, read with peek."""
    from postbus.bus import QueueLinks, ServiceBusConnection
    from postbus.events import identify
    from postbus.settings import load_settings

    settings = load_settings(None, servicebus_connection_string=sb.connection_string, queue=queue)
    found: list[tuple[str, str, str]] = []
    async with ServiceBusConnection.from_settings(settings, purpose="reading dead letters") as connection:
        links = await QueueLinks(connection, queue, dead_letters=True, send=False).open()
        try:
            next_seq = 0
            while page := await links.peek(250, from_sequence=next_seq):
                for delivery in page:
                    identity = identify(delivery.body)
                    event_id = identity.id if identity is not None else ""
                    found.append((delivery.message_id, event_id, delivery.dead_letter_reason or ""))
                    next_seq = max(next_seq, (delivery.sequence_number or 0) + 1)
        finally:
            await links.close()
    return found


def account(
    report: DemoReport,
    expected: dict[str, str],
    sent_ids: list[str],
    dead: list[tuple[str, str, str]],
) -> None:
    """Check every published event against what happened to it."""
    sent_counts = Counter(sent_ids)
    for event_id, count in sent_counts.items():
        if count > 1:
            report.problems.append(f"{event_id}: sent {count} times")
    dead_by_key: dict[str, str] = {}
    for message_id, event_id, reason in dead:
        key = event_id if event_id in expected else message_id.split("#", 1)[0]
        if key in dead_by_key:
            report.problems.append(f"{key}: dead-lettered twice")
        dead_by_key[key] = reason
        report.dead_lettered[reason] += 1
    for key, outcome in expected.items():
        if outcome == "sent":
            if sent_counts.get(key, 0) != 1:
                where = f"dead-lettered as {dead_by_key[key]}" if key in dead_by_key else "missing"
                report.problems.append(f"{key}: expected one email, {where}")
        elif dead_by_key.get(key) != outcome:
            actual = dead_by_key.get(key) or ("sent" if key in sent_counts else "missing")
            report.problems.append(f"{key}: expected dead-letter {outcome}, got {actual}")
    for key in set(sent_counts) | set(dead_by_key):
        if key not in expected:
            report.problems.append(f"{key}: not published by the demo")


def start_workers(
    count: int, env: dict[str, str], run_dir: Path, *, health_ports: list[int] | None = None
) -> tuple[list[subprocess.Popen[bytes]], list[Any]]:
    """Start ``count`` real ``postbus worker`` processes, each logging to its own file.

    With ``health_ports``, worker ``n`` serves ``/readyz`` on ``health_ports[n]`` (the console
    shows each worker's readiness); otherwise each picks a free port nobody is told about.
    """
    logs = [(run_dir / f"worker-{n}.log").open("wb") for n in range(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "postbus.cli", "worker"],
            env={**env, "POSTBUS_HEALTH_PORT": str(health_ports[n])} if health_ports else env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for n, log in enumerate(logs)
    ]
    return procs, logs


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (held open together while choosing)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stop_workers(procs: list[subprocess.Popen[bytes]], logs: list[Any]) -> None:
    """SIGTERM, then wait for the graceful shutdown (kill only if it hangs)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for log in logs:
        log.close()
