"""The set of queues the emulator serves and how link addresses name them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from postbus.emulators.servicebus.config import EmulatorConfig
from postbus.emulators.servicebus.queue import Clock, MessageQueue, QueueCounts

__all__ = ["CBS_ADDRESS", "Namespace", "Route"]

CBS_ADDRESS = "$cbs"
_DEAD_LETTER = "$deadletterqueue"
_MANAGEMENT = "$management"


@dataclass(frozen=True, slots=True)
class Route:
    """What an attach address resolves to: an entity (queue or its DLQ), maybe its management node."""

    queue: MessageQueue
    entity: MessageQueue
    management: bool


def entity_path(address: str | None) -> str:
    """``amqps://host:port/q1/$DeadLetterQueue`` -> ``q1/$DeadLetterQueue`` (bare paths pass through)."""
    if not address:
        return ""
    if "://" in address:
        address = urlsplit(address).path
    return address.strip("/")


class Namespace:
    """Queues by case-insensitive name; each owns its dead-letter queue."""

    def __init__(self, config: EmulatorConfig, *, clock: Clock) -> None:
        self.config = config
        self.queues: dict[str, MessageQueue] = {}
        for name, props in config.queues.items():
            self.queues[name.lower()] = MessageQueue(name, props.to_settings(), clock=clock)

    def resolve(self, address: str | None) -> Route | None:
        """Route for a link address, or ``None`` for an unknown entity."""
        parts = entity_path(address).split("/")
        management = bool(parts) and parts[-1].lower() == _MANAGEMENT
        if management:
            parts = parts[:-1]
        dead_letter = bool(parts) and parts[-1].lower() == _DEAD_LETTER
        if dead_letter:
            parts = parts[:-1]
        queue = self.queues.get("/".join(parts).lower())
        if queue is None:
            return None
        entity = queue.dead_letter_queue if dead_letter and queue.dead_letter_queue is not None else queue
        return Route(queue=queue, entity=entity, management=management)

    def tick(self) -> list[MessageQueue]:
        """Fire timers everywhere; returns the entities that gained available messages."""
        woken: list[MessageQueue] = []
        for queue in self.queues.values():
            if queue.tick():
                woken.append(queue)
                if queue.dead_letter_queue is not None:
                    woken.append(queue.dead_letter_queue)
        return woken

    def counts(self) -> dict[str, QueueCounts]:
        return {queue.name: queue.counts() for queue in self.queues.values()}
