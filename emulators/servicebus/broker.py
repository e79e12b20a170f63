"""The proton reactor handler: connections, links, transfers and settlements.

It maps AMQP frames onto :class:`~emulators.servicebus.queue.MessageQueue` calls. Everything here
runs on the one reactor thread; the queues are shared with the embedding API through ``lock``.

Pitfalls handled (what azure-servicebus expects of a broker): SASL ANONYMOUS; a 1 MiB max frame and no idle time-out;
unknown entities get null termini and a prompt ``amqp:not-found`` detach; rejections always carry
an error ``info`` map (else the SDK's send hangs); settlements are echoed with ``update(state)``
then ``settle()``; delivery tags are the lock token's ``bytes_le``; released is not a delivery
attempt; batches are unpacked (see ``codec``).
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from proton import (
    Condition,
    Connection,
    Delivery,
    Disposition,
    Endpoint,
    Handler,
    Link,
    Message,
    Terminus,
    symbol,
)

from postbus.emulators.servicebus.codec import CodecError, ParsedMessage, parse_message, split_batch
from postbus.emulators.servicebus.management import cbs_response, encode_stored, management_response
from postbus.emulators.servicebus.namespace import CBS_ADDRESS, Namespace, Route, entity_path
from postbus.emulators.servicebus.queue import LockLostError, MessageQueue, QueueFullError

SESSION_FILTER = "com.microsoft:session-filter"

__all__ = ["MAX_FRAME_SIZE", "MAX_MESSAGE_SIZE", "Broker", "FaultState"]

log = structlog.get_logger(__name__)

MAX_FRAME_SIZE = 1024 * 1024
MAX_MESSAGE_SIZE = 256 * 1024  # the official emulator's (and Azure Standard's) limit
TICK_SECONDS = 0.05
_CREDIT = 1000
_ACTIVE = Endpoint.LOCAL_ACTIVE


@dataclass(slots=True)
class FaultState:
    """Fault injection knobs; written by any thread, read by the reactor thread."""

    fail_sends: int = 0
    settle_delay: float = 0.0


@dataclass(eq=False, slots=True)
class _LinkState:
    kind: str  # "cbs" | "management" | "sender" (client sends to us) | "consumer"
    link: Link
    route: Route | None = None
    receive_and_delete: bool = False
    address: str = ""


@dataclass(slots=True)
class _Consumers:
    links: list[_LinkState] = field(default_factory=list)
    next: int = 0


def _guarded(method: Callable[[Broker, Any], None]) -> Callable[[Broker, Any], None]:
    """Keep the reactor alive when handling one event fails: log it and close that connection.

    An exception escaping a handler would leave the event on proton's queue and stop the broker.
    """

    @functools.wraps(method)
    def wrapper(self: Broker, event: Any) -> None:
        try:
            method(self, event)
        except Exception:
            log.exception("servicebus.handler_failed", handler=method.__name__)
            conn = getattr(event, "connection", None)
            if conn is not None and conn.state & _ACTIVE:
                description = "emulator error; see its log"
                conn.condition = Condition("amqp:internal-error", description, _tracking_info())
                conn.close()
                _log_closed(conn, "amqp:internal-error", description)

    return wrapper


def _log_closed(conn: Connection | None, reason: str, description: str | None) -> None:
    """The one line per connection the emulator closes, saying why."""
    log.warning("servicebus.connection_closed", reason=reason, description=description, **_who(conn))


def _who(conn: Connection | None) -> dict[str, str | None]:
    """The client's address and container id, for log lines about its connection."""
    if conn is None:
        return {"peer": None, "client": None}
    url = getattr(conn, "url", None)  # set by proton's acceptor to the client's address
    return {"peer": None if url is None else f"{url.host}:{url.port}", "client": conn.remote_container}


def _asks_for_a_session(link: Link) -> bool:
    """True when a receiver's source carries the session filter (a session receiver)."""
    data = link.remote_source.filter
    data.rewind()
    filters = data.get_object() if data.next() is not None else None
    return isinstance(filters, dict) and any(str(key) == SESSION_FILTER for key in filters)


def _tracking_info() -> Any:
    # The SDK indexes error info unconditionally: an error without it makes send_messages hang.
    return {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())}


class Broker(Handler):
    """proton event handler for all connections of one emulator."""

    def __init__(self, namespace: Namespace, *, lock: threading.Lock, faults: FaultState) -> None:
        super().__init__()
        self.namespace = namespace
        self.lock = lock
        self.faults = faults
        self.connections: set[Connection] = set()
        self._consumers: dict[int, _Consumers] = {}
        self._links: dict[Link, _LinkState] = {}

    # ------------------------------------------------------------------ connection lifecycle

    @_guarded
    def on_connection_bound(self, event: Any) -> None:
        transport = event.transport
        transport.max_frame_size = MAX_FRAME_SIZE
        sasl = transport.sasl()
        sasl.allow_insecure_mechs = True
        sasl.allowed_mechs("ANONYMOUS")
        self.connections.add(event.connection)

    @_guarded
    def on_connection_remote_open(self, event: Any) -> None:
        conn = event.connection
        if conn.state & Endpoint.LOCAL_UNINIT:
            conn.container = "postbus-servicebus-emulator"
            conn.open()

    @_guarded
    def on_connection_remote_close(self, event: Any) -> None:
        conn = event.connection
        self._forget_connection(conn)
        if conn.state & _ACTIVE:
            conn.close()

    @_guarded
    def on_transport_error(self, event: Any) -> None:
        # proton found a protocol error (or lost the socket); it sends close(error) and hangs up.
        conn = event.connection
        if conn is not None and conn not in self.connections:
            return  # dropped on purpose, and logged then
        condition = event.transport.condition
        name = condition.name if condition is not None else "unknown"
        description = condition.description if condition is not None else None
        if description is not None and "connection aborted" in description:
            log.info("servicebus.connection_lost", **_who(conn))
        else:
            _log_closed(conn, name, description)

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        conn = event.connection
        if conn is not None:
            self._forget_connection(conn)
            conn.free()

    @_guarded
    def on_session_remote_open(self, event: Any) -> None:
        session = event.session
        if session.state & Endpoint.LOCAL_UNINIT:
            session.open()

    @_guarded
    def on_session_remote_close(self, event: Any) -> None:
        session = event.session
        for link_state in list(self._links.values()):
            if link_state.link.session == session:
                self._forget_link(link_state.link)
        if session.state & _ACTIVE:
            session.close()

    def _forget_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for link in [link for link in self._links if link.connection == conn]:
            self._forget_link(link)

    def drop_connections(self, reason: str = "dropped by fault injection") -> int:
        """Abruptly cut every client socket, as a network failure would; returns how many."""
        dropped = list(self.connections)
        for conn in dropped:
            self._forget_connection(conn)
            transport = conn.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()
            log.info("servicebus.connection_closed", reason=reason, **_who(conn))
        return len(dropped)

    # ------------------------------------------------------------------ links

    @_guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        if address == CBS_ADDRESS:
            self._open_link(link, _LinkState("cbs", link, address=address))
            return
        route = self.namespace.resolve(address)
        if route is None:
            self._refuse_link(link, address)
            return
        if route.management:
            self._open_link(link, _LinkState("management", link, route, address=entity_path(address)))
        elif link.is_receiver:
            link.max_message_size = MAX_MESSAGE_SIZE
            link.properties = {symbol("com.microsoft:max-message-batch-size"): MAX_MESSAGE_SIZE}
            self._open_link(link, _LinkState("sender", link, route, address=address))
        elif _asks_for_a_session(link):
            self._refuse_session_link(link, address)
        else:
            rad = link.remote_snd_settle_mode == Link.SND_SETTLED
            state = _LinkState("consumer", link, route, receive_and_delete=rad, address=address)
            self._open_link(link, state)
            self._consumers.setdefault(id(route.entity), _Consumers()).links.append(state)

    def _open_link(self, link: Link, state: _LinkState) -> None:
        link.source.address = cast(str, link.remote_source.address)
        link.target.address = cast(str, link.remote_target.address)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = Link.RCV_FIRST
        self._links[link] = state
        link.open()
        if link.is_receiver:
            link.flow(_CREDIT)

    def _refuse_link(self, link: Link, address: str | None) -> None:
        # Null termini + detach(not-found): the SDK raises MessagingEntityNotFoundError at once.
        link.source.type = Terminus.UNSPECIFIED
        link.target.type = Terminus.UNSPECIFIED
        link.open()
        name = entity_path(address) or "(none)"
        link.condition = Condition(
            "amqp:not-found",
            f"The messaging entity '{name}' could not be found. Known queues: "
            + ", ".join(sorted(q.name for q in self.namespace.queues.values())),
            _tracking_info(),
        )
        link.close()
        log.warning("servicebus.entity_not_found", address=address)

    def _refuse_session_link(self, link: Link, address: str | None) -> None:
        # A session receiver would otherwise get plain messages with no session: refuse it plainly.
        link.source.type = Terminus.UNSPECIFIED
        link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition(
            "amqp:not-implemented",
            f"Queue '{entity_path(address)}' does not require sessions, and the emulator does not "
            "emulate sessions: receive without a session id.",
            _tracking_info(),
        )
        link.close()
        log.warning("servicebus.session_receiver_refused", address=address)

    @_guarded
    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._forget_link(link)
        if link.state & _ACTIVE:
            link.close()

    def _forget_link(self, link: Link) -> None:
        state = self._links.pop(link, None)
        if state is not None and state.kind == "consumer" and state.route is not None:
            consumers = self._consumers.get(id(state.route.entity))
            if consumers is not None and state in consumers.links:
                consumers.links.remove(state)

    @_guarded
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        state = self._links.get(link)
        if state is None or state.kind != "consumer" or state.route is None:
            return
        with self.lock:
            self._dispatch(state.route.entity)
        if link.drain_mode and link.credit > 0:
            link.drained()

    # ------------------------------------------------------------------ deliveries

    @_guarded
    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        state = self._links.get(link)
        if link.is_sender:
            if state is not None and state.kind == "consumer" and delivery.updated:
                self._on_settlement(state, delivery)
            elif delivery.settled:
                delivery.settle()
            return
        if delivery.partial or not delivery.readable:
            return
        data = link.recv(delivery.pending)
        link.advance()
        if link.credit < _CREDIT // 2:
            link.flow(_CREDIT - link.credit)
        if state is None:  # transfer on a link we refused: the client does not wait for our attach
            self._reject(delivery, "amqp:not-found", "the link is not attached to an entity")
        elif state.kind == "sender":
            self._on_send(state, delivery, data)
        else:
            self._on_request(state, delivery, data)

    def _on_send(self, state: _LinkState, delivery: Delivery, data: bytes) -> None:
        assert state.route is not None
        if self.faults.fail_sends > 0:
            self.faults.fail_sends -= 1
            self._reject(delivery, "com.microsoft:server-busy", "The server is busy (fault injection).")
            return
        if len(data) > MAX_MESSAGE_SIZE:
            self._reject(
                delivery,
                "amqp:link:message-size-exceeded",
                f"The received message (size {len(data)} bytes) exceeds the limit ({MAX_MESSAGE_SIZE} bytes)"
                f" on entity '{state.route.queue.name}'.",
            )
            return
        try:
            parsed = parse_message(data)
            messages = split_batch(parsed) or [parsed]
        except CodecError as exc:
            self._reject(delivery, "amqp:decode-error", str(exc))
            return
        entity = state.route.entity
        try:
            with self.lock:
                for message in messages:
                    self._enqueue(entity, message)
                self._dispatch(entity)
        except QueueFullError as exc:
            self._reject(delivery, "amqp:resource-limit-exceeded", str(exc))
            return
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()

    @staticmethod
    def _enqueue(entity: MessageQueue, message: ParsedMessage) -> None:
        scheduled = message.scheduled_enqueue_ms
        entity.enqueue(
            message.body,
            message_id=message.message_id,
            ttl=None if message.ttl_ms is None else message.ttl_ms / 1000,
            scheduled_at=None if scheduled is None else scheduled / 1000,
            annotations=message.annotations,
        )

    def _reject(self, delivery: Delivery, condition: str, description: str) -> None:
        delivery.local.condition = Condition(condition, description, _tracking_info())
        delivery.update(Disposition.REJECTED)
        delivery.settle()

    def _on_request(self, state: _LinkState, delivery: Delivery, data: bytes) -> None:
        request = Message()
        try:
            request.decode(data)
        except Exception as exc:
            self._reject(delivery, "amqp:decode-error", f"cannot decode request: {exc}")
            return
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        if state.kind == "cbs":
            response = cbs_response(request)
        else:
            assert state.route is not None
            with self.lock:
                response = management_response(state.route.entity, request)
                self._dispatch(state.route.entity)
        self._reply(state, response)

    def _reply(self, state: _LinkState, response: Message) -> None:
        # Every client uses the same reply-to, so route by pairing links of one session instead.
        session = state.link.session
        for reply_link, other in self._links.items():
            if other.kind == state.kind and other.link.is_sender and reply_link.session == session:
                if other.address.lower() != state.address.lower():
                    continue
                reply = reply_link.delivery(cast(str, uuid.uuid4().bytes))
                reply_link.send(response.encode())
                reply_link.advance()
                reply.settle()
                return
        log.warning("servicebus.no_reply_link", address=state.address)

    # ------------------------------------------------------------------ receivers

    def _dispatch(self, entity: MessageQueue) -> None:
        """Push available messages to consumers with credit, round-robin; call with ``lock`` held."""
        consumers = self._consumers.get(id(entity))
        if consumers is None or not consumers.links:
            return
        links = consumers.links
        idle_passes = 0
        while entity.has_available and idle_passes < len(links):
            consumers.next %= len(links)
            state = links[consumers.next]
            consumers.next += 1
            link = state.link
            if link.credit <= 0 or not link.state & _ACTIVE:
                idle_passes += 1
                continue
            idle_passes = 0
            msg = entity.lock_next(receive_and_delete=state.receive_and_delete)
            if msg is None:
                return
            tag = msg.lock_token.bytes_le if msg.lock_token is not None else uuid.uuid4().bytes_le
            delivery = link.delivery(cast(str, tag))  # proton accepts bytes; its stub says str
            # proton 0.40 decodes Delivery.tag as UTF-8, so keep the token on the delivery record.
            delivery.sb_lock_token = msg.lock_token
            link.send(encode_stored(msg, locked=not state.receive_and_delete))
            link.advance()
            if state.receive_and_delete:
                delivery.settle()

    def _on_settlement(self, state: _LinkState, delivery: Delivery) -> None:
        if getattr(delivery, "sb_pending", False):
            return
        delay = self.faults.settle_delay
        if delay > 0 and not delivery.settled:
            delivery.sb_pending = True
            self.schedule(delay, lambda: self._settle_later(state, delivery))
        else:
            self._settle(state, delivery)

    def _settle_later(self, state: _LinkState, delivery: Delivery) -> None:
        if state.link in self._links:  # the link (and its deliveries) may be gone by now
            self._settle(state, delivery)

    def _settle(self, state: _LinkState, delivery: Delivery) -> None:
        assert state.route is not None
        entity = state.route.entity
        remote = delivery.remote
        outcome = delivery.remote_state
        token = getattr(delivery, "sb_lock_token", None)
        if token is None:  # a RECEIVE_AND_DELETE delivery: nothing to settle
            delivery.settle()
            return
        try:
            with self.lock:
                if outcome == Disposition.ACCEPTED:
                    entity.complete(token)
                elif outcome == Disposition.MODIFIED and remote.undeliverable:
                    entity.defer(token)
                elif outcome == Disposition.MODIFIED and remote.failed:
                    entity.abandon(token)
                elif outcome == Disposition.REJECTED:
                    info: Any = (remote.condition.info if remote.condition else None) or {}
                    entity.dead_letter(
                        token, info.get("DeadLetterReason"), info.get("DeadLetterErrorDescription")
                    )
                else:  # released, or modified without delivery-failed: not a delivery attempt
                    entity.release(token)
                self._dispatch(entity)
        except LockLostError as exc:
            if not delivery.settled:
                delivery.local.condition = Condition(
                    "com.microsoft:message-lock-lost", str(exc), _tracking_info()
                )
                delivery.update(Disposition.REJECTED)
            delivery.settle()
            return
        if not delivery.settled:
            # The SDK waits for an echo of the same outcome type, settled, and without an error.
            if outcome == Disposition.MODIFIED:
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
            delivery.update(outcome)
        delivery.settle()

    # ------------------------------------------------------------------ timers

    schedule: Callable[[float, Callable[[], None]], object]

    def tick(self) -> None:
        """Fire due queue timers and deliver what they made available."""
        with self.lock:
            for entity in self.namespace.tick():
                self._dispatch(entity)
