"""An AMQP 1.0 broker with Service Bus queue semantics, for the unmodified azure-servicebus SDK.

Example::

    from postbus.emulators.servicebus import ServiceBusEmulator

    async with ServiceBusEmulator() as sb:
        print(sb.connection_string, sb.counts("notifications"))
"""

from __future__ import annotations

from postbus.emulators.servicebus.config import EmulatorConfig, QueueProperties, load_config
from postbus.emulators.servicebus.emulator import Faults, ServiceBusEmulator
from postbus.emulators.servicebus.queue import QueueCounts

__all__ = ["EmulatorConfig", "Faults", "QueueCounts", "QueueProperties", "ServiceBusEmulator", "load_config"]
