"""The embeddable emulator: a proton reactor on one background thread, a thread-safe API around it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast

import structlog
from proton import Handler
from proton.reactor import ApplicationEvent, Container, EventInjector

from postbus.emulators.errors import AMQP, SB_ADMIN, ListenError
from postbus.emulators.servicebus.broker import MAX_FRAME_SIZE, TICK_SECONDS, Broker, FaultState
from postbus.emulators.servicebus.config import EmulatorConfig, load_config
from postbus.emulators.servicebus.namespace import Namespace
from postbus.emulators.servicebus.queue import QueueCounts
from postbus.emulators.servicebus.sockets import RewritingIO

__all__ = ["Faults", "ServiceBusEmulator"]

log = structlog.get_logger(__name__)


class _PeerGone(logging.Filter):
    """Drop proton's error line for a client that hung up mid-write: normal when a client exits."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Couldn't send")
            and ("ConnectionResetError" in message or "BrokenPipeError" in message)
        )


logging.getLogger("proton").addFilter(_PeerGone())
T = TypeVar("T")

_START_TIMEOUT = 10.0


def _resolve(future: asyncio.Future[T], value: T) -> None:
    """Set a waiter's result on its own loop, unless it finished (timed out) meanwhile."""
    if not future.done():
        future.set_result(value)


class _WatchedLock:
    """The lock every change to the queues is made under; releasing it runs the watchers.

    So a caller awaiting a condition on the queues (:meth:`ServiceBusEmulator.wait_for`) is woken
    by the emulator's own state changes instead of polling. Readers that change nothing take
    :attr:`quiet`, the same lock without the watchers.
    """

    def __init__(self) -> None:
        self.quiet = threading.Lock()
        self._watchers: list[Callable[[], None]] = []

    def __enter__(self) -> bool:
        return self.quiet.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.quiet.release()
        for watcher in tuple(self._watchers):
            watcher()

    def watch(self, watcher: Callable[[], None]) -> None:
        self._watchers.append(watcher)

    def unwatch(self, watcher: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(watcher)


class Faults:
    """Fault injection, callable from any thread.

    Example::

        sb.faults.fail_next_sends(2)     # the next two transfers are rejected with server-busy
        sb.faults.settle_delay = 0.5     # every settlement echo waits half a second
        sb.faults.drop_connections()     # cut every client socket now; the SDK reconnects
    """

    def __init__(self, emulator: ServiceBusEmulator, state: FaultState) -> None:
        self._emulator = emulator
        self._state = state

    def drop_connections(self) -> int:
        """Abruptly close every client connection; returns how many were dropped."""
        return self._emulator._call(lambda broker: broker.drop_connections())

    def fail_next_sends(self, n: int) -> None:
        """Reject the next ``n`` message transfers with ``com.microsoft:server-busy``."""
        self._state.fail_sends = max(0, n)  # an int store is atomic; also works before start()

    @property
    def settle_delay(self) -> float:
        return self._state.settle_delay

    @settle_delay.setter
    def settle_delay(self, seconds: float) -> None:
        self._state.settle_delay = max(0.0, float(seconds))


class _ReactorHandler(Broker):
    """The broker plus the reactor-level plumbing (listening, ticking, calls from other threads)."""

    def __init__(self, emulator: ServiceBusEmulator, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._emulator = emulator
        self.container: Container | None = None

    def on_reactor_init(self, event: Any) -> None:
        self._emulator._on_reactor_init(event.container, self)

    def on_timer_task(self, event: Any) -> None:
        # Only the periodic tick uses the broker itself as timer handler.
        self.tick()
        if self.container is not None and not self._emulator._stopping:
            self.container.schedule(TICK_SECONDS, self)

    def on_run_calls(self, _event: Any) -> None:
        self._emulator._run_calls()


def _check_bindable(host: str, port: int) -> None:
    """Bind a throw-away socket as proton's listener will: proton leaks its socket when bind fails."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


class _Callback(Handler):
    def __init__(self, func: Callable[[], None]) -> None:
        super().__init__()
        self._func = func

    def on_timer_task(self, _event: Any) -> None:
        self._func()


class ServiceBusEmulator:
    """An AMQP 1.0 broker with Service Bus queue semantics, for the unmodified azure-servicebus SDK.

    Example::

        async with ServiceBusEmulator() as sb:             # packaged Config.json, free port
            async with ServiceBusClient.from_connection_string(sb.connection_string) as client:
                ...
            sb.counts("notifications").active

    Also usable synchronously: ``sb.start()`` ... ``sb.stop()``.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_port: int | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config if config is not None else load_config()
        self.host = host
        self._requested_port = port
        self._admin_port = admin_port
        self._lock = _WatchedLock()
        self._fault_state = FaultState()
        self.faults = Faults(self, self._fault_state)
        self.namespace = Namespace(self.config, clock=clock)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._injector: EventInjector | None = None
        self._calls: queue.SimpleQueue[tuple[Callable[[Broker], Any], list[Any], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._handler: _ReactorHandler | None = None
        self._stopping = False
        self._admin: Any = None
        self.port = 0
        self.admin_url: str | None = None
        self._announced = False

    # ------------------------------------------------------------------ public API

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
        )

    def counts(self, queue_name: str) -> QueueCounts:
        """Runtime counts of one queue (``KeyError`` for an unknown queue)."""
        with self._lock.quiet:
            return self.namespace.queues[queue_name.lower()].counts()

    def all_counts(self) -> dict[str, QueueCounts]:
        with self._lock.quiet:
            return self.namespace.counts()

    def dead_letter_reasons(self, queue_name: str) -> dict[str, int]:
        """How many messages sit in the queue's dead-letter subqueue, per ``DeadLetterReason``
        (``KeyError`` for an unknown queue)."""
        with self._lock.quiet:
            dead = self.namespace.queues[queue_name.lower()].dead_letter_queue
            held = dead.peek(0, len(dead)) if dead is not None else []
            return dict(Counter(message.dead_letter_reason or "(no reason)" for message in held))

    async def wait_for(
        self,
        queue_name: str,
        condition: Callable[[QueueCounts], bool],
        *,
        timeout: float,  # noqa: ASYNC109 - a test's deadline
    ) -> QueueCounts:
        """Wait until ``condition(counts)`` holds for the queue; ``TimeoutError`` after ``timeout`` s.

        Checked whenever the emulator changes its queues (including timers firing), never polled::

            await sb.wait_for("notifications", lambda counts: counts.scheduled == 1, timeout=15)
        """
        self.counts(queue_name)  # KeyError now for an unknown queue, not on the reactor thread
        loop = asyncio.get_running_loop()
        done: asyncio.Future[QueueCounts] = loop.create_future()

        def check() -> None:
            counts = self.counts(queue_name)
            if condition(counts):
                loop.call_soon_threadsafe(_resolve, done, counts)

        self._lock.watch(check)
        try:
            check()
            async with asyncio.timeout(timeout):
                return await done
        finally:
            self._lock.unwatch(check)

    async def wait_until_empty(self, queue_name: str, *, timeout: float) -> None:  # noqa: ASYNC109 - as above
        """Wait until the queue holds nothing: no active, scheduled, locked, deferred or dead-lettered message."""
        await self.wait_for(queue_name, lambda counts: counts.total == 0, timeout=timeout)

    def start(self) -> ServiceBusEmulator:
        """Start listening; returns once connections are accepted.

        Raises :class:`~emulators.errors.ListenError` (an ``OSError``) naming the listener (AMQP
        or admin) that could not be opened; nothing is left running then.
        """
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._ready.clear()
        self._stopping = False
        # The broker only enters and leaves the lock; the watched one wakes callers of wait_for.
        lock = cast(threading.Lock, self._lock)
        handler = _ReactorHandler(self, namespace=self.namespace, lock=lock, faults=self._fault_state)
        self._handler = handler
        self._thread = threading.Thread(
            target=self._run, args=(handler,), name="servicebus-emulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("Service Bus emulator did not start")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            if isinstance(self._error, OSError):
                raise ListenError(AMQP, self.host, self._requested_port, self._error) from self._error
            raise self._error
        if self._admin_port is not None:
            from postbus.emulators.servicebus.admin import AdminServer

            try:
                self._admin = AdminServer(self, host=self.host, port=self._admin_port)
            except OSError as exc:
                self.stop()
                raise ListenError(SB_ADMIN, self.host, self._admin_port, exc) from exc
            self.admin_url = self._admin.start()
        log.info("servicebus.started", host=self.host, port=self.port, admin_url=self.admin_url)
        self._announced = True
        return self

    def stop(self) -> None:
        """Close every connection and stop the reactor thread (idempotent)."""
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        if thread.is_alive():
            try:
                self._call(lambda broker: self._shutdown(broker), timeout=5.0)
            except (TimeoutError, RuntimeError):
                log.warning("servicebus.stop_timeout")
            thread.join(5.0)
        self._thread = None
        if self._announced:  # a start that failed says so itself, not with a "stopped" line
            log.info("servicebus.stopped", port=self.port)
            self._announced = False

    def __enter__(self) -> ServiceBusEmulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ServiceBusEmulator:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # ------------------------------------------------------------------ reactor thread

    def _run(self, handler: _ReactorHandler) -> None:
        self._error = None  # from a previous start(); read by start() only after _ready is set
        try:
            container = Container(handler)
            # Rewrites frames proton would reject but Azure accepts (see frames.py).
            container.global_handler = RewritingIO(max_frame_size=MAX_FRAME_SIZE)
            handler.container = container
            handler.schedule = lambda delay, func: container.schedule(delay, _Callback(func))
            container.run()
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("servicebus.reactor_failed")
        finally:
            self._drain_calls()

    def _on_reactor_init(self, container: Container, handler: _ReactorHandler) -> None:
        try:
            _check_bindable(self.host, self._requested_port)
            acceptor = container.listen(f"{self.host}:{self._requested_port}")
            sock: Any = acceptor._selectable._delegate
            sock.listen(512)  # proton's backlog of 10 is too small for bursts of SDK handlers
            self.port = int(sock.getsockname()[1])
            self._acceptor = acceptor
            self._injector = EventInjector()
            container.selectable(self._injector)
            container.schedule(TICK_SECONDS, handler)
        except BaseException as exc:
            self._error = exc
            container.stop()
        finally:
            self._ready.set()

    def _shutdown(self, broker: Broker) -> None:
        self._acceptor.close()
        broker.drop_connections(reason="emulator stopping")
        if self._injector is not None:
            self._injector.close()
        if self._handler is not None and self._handler.container is not None:
            self._handler.container.stop()

    def _call(self, func: Callable[[Broker], T], timeout: float = 10.0) -> T:
        """Run ``func(broker)`` on the reactor thread and wait for its result."""
        if self._injector is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("Service Bus emulator is not running")
        done = threading.Event()
        result: list[Any] = []
        self._calls.put((func, result, done))
        self._injector.trigger(ApplicationEvent("run_calls"))
        if not done.wait(timeout):
            raise TimeoutError("Service Bus emulator did not answer")
        if len(result) == 2:
            raise result[1]
        return result[0]  # type: ignore[no-any-return]

    def _run_calls(self) -> None:
        assert self._handler is not None
        while True:
            try:
                func, result, done = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                result.append(func(self._handler))
            except Exception as exc:
                result.extend([None, exc])
            done.set()

    def _drain_calls(self) -> None:
        while True:
            try:
                _, result, done = self._calls.get_nowait()
            except queue.Empty:
                return
            result.extend([None, RuntimeError("Service Bus emulator stopped")])
            done.set()
