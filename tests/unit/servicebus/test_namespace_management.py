"""Address resolution and the ``$management`` / ``$cbs`` operations, without a network."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from proton import Array, Data, Message

import postbus.emulators.servicebus as package
from postbus.emulators.servicebus import EmulatorConfig
from postbus.emulators.servicebus.codec import parse_message
from postbus.emulators.servicebus.management import cbs_response, management_response
from postbus.emulators.servicebus.namespace import Namespace
from postbus.emulators.servicebus.queue import MessageQueue


class FakeClock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def namespace() -> Namespace:
    config = EmulatorConfig.from_queues({"Orders": {"LockDuration": "PT30S"}})
    return Namespace(config, clock=FakeClock())


def test_package_exports() -> None:
    assert set(package.__all__) == {
        "EmulatorConfig",
        "Faults",
        "QueueCounts",
        "QueueProperties",
        "ServiceBusEmulator",
        "load_config",
    }


@pytest.mark.parametrize(
    ("address", "dead_letter", "management"),
    [
        ("amqps://localhost:5672/orders", False, False),
        ("orders", False, False),
        ("ORDERS", False, False),
        ("amqps://h/orders/$DeadLetterQueue", True, False),
        ("orders/$management", False, True),
        ("orders/$deadletterqueue/$management", True, True),
    ],
)
def test_addresses_resolve_case_insensitively(
    namespace: Namespace, address: str, dead_letter: bool, management: bool
) -> None:
    route = namespace.resolve(address)
    assert route is not None
    assert route.queue.name == "Orders"
    assert route.entity.is_dead_letter is dead_letter
    assert route.management is management


@pytest.mark.parametrize("address", ["amqps://localhost/nope", "", None, "orders/sub", "$cbs"])
def test_unknown_addresses_do_not_resolve(namespace: Namespace, address: str | None) -> None:
    assert namespace.resolve(address) is None


def _request(operation: str, body: dict[str, Any]) -> Message:
    return Message(id=uuid.uuid4(), properties={"operation": operation, "type": "entity-mgmt"}, body=body)


def _queue(namespace: Namespace) -> MessageQueue:
    return namespace.queues["orders"]


def test_cbs_accepts_any_token_and_keeps_the_correlation_type() -> None:
    request = Message(id=uuid.uuid4(), properties={"operation": "put-token", "type": "jwt"}, body="token")
    response = cbs_response(request)
    assert response.correlation_id == request.id
    assert response.properties["status-code"] == 202


def test_schedule_peek_cancel_round_trip(namespace: Namespace) -> None:
    q = _queue(namespace)
    inner = Message(id="m1", body=b"x", annotations={"x-opt-scheduled-enqueue-time": 2_000_000_000_000})
    request = _request(
        "com.microsoft:schedule-message", {"messages": [{"message-id": "m1", "message": inner.encode()}]}
    )
    response = management_response(q, request)
    assert response.correlation_id == request.id
    assert response.properties["statusCode"] == 200
    (seq,) = response.body["sequence-numbers"].elements
    assert q.counts().scheduled == 1
    peek = management_response(
        q, _request("com.microsoft:peek-message", {"from-sequence-number": 1, "message-count": 5})
    )
    assert peek.properties["statusCode"] == 200
    (item,) = peek.body["messages"]
    assert parse_message(bytes(item["message"])).message_id == "m1"
    cancel = management_response(
        q,
        _request("com.microsoft:cancel-scheduled-message", {"sequence-numbers": Array(None, Data.LONG, seq)}),
    )
    assert cancel.properties["statusCode"] == 200
    assert q.counts().total == 0
    empty = management_response(
        q, _request("com.microsoft:peek-message", {"from-sequence-number": 1, "message-count": 5})
    )
    assert empty.properties["statusCode"] == 204


def test_renew_update_disposition_and_lock_lost(namespace: Namespace) -> None:
    q = _queue(namespace)
    q.enqueue(b"\x00Su\xa0\x01x")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    tokens = Array(None, Data.UUID, msg.lock_token)
    renew = management_response(q, _request("com.microsoft:renew-lock", {"lock-tokens": tokens}))
    assert renew.properties["statusCode"] == 200
    assert len(renew.body["expirations"].elements) == 1
    done = management_response(
        q,
        _request(
            "com.microsoft:update-disposition", {"disposition-status": "completed", "lock-tokens": tokens}
        ),
    )
    assert done.properties["statusCode"] == 200
    lost = management_response(
        q,
        _request(
            "com.microsoft:update-disposition", {"disposition-status": "completed", "lock-tokens": tokens}
        ),
    )
    assert lost.properties["statusCode"] == 410
    assert lost.properties["errorCondition"] == "com.microsoft:message-lock-lost"


def test_defer_receive_by_sequence_and_dead_letter_via_management(namespace: Namespace) -> None:
    q = _queue(namespace)
    q.enqueue(b"\x00Su\xa0\x01x")
    msg = q.lock_next()
    assert msg is not None
    assert msg.lock_token is not None
    defer = management_response(
        q,
        _request(
            "com.microsoft:update-disposition",
            {"disposition-status": "defered", "lock-tokens": Array(None, Data.UUID, msg.lock_token)},
        ),
    )
    assert defer.properties["statusCode"] == 200
    got = management_response(
        q,
        _request(
            "com.microsoft:receive-by-sequence-number",
            {"sequence-numbers": Array(None, Data.LONG, msg.seq), "receiver-settle-mode": 1},
        ),
    )
    assert got.properties["statusCode"] == 200
    (item,) = got.body["messages"]
    token = item["lock-token"]
    dead = management_response(
        q,
        _request(
            "com.microsoft:update-disposition",
            {
                "disposition-status": "suspended",
                "lock-tokens": Array(None, Data.UUID, token),
                "deadletter-reason": "r",
                "deadletter-description": "d",
            },
        ),
    )
    assert dead.properties["statusCode"] == 200
    assert q.counts().dead_lettered == 1
    missing = management_response(
        q,
        _request(
            "com.microsoft:receive-by-sequence-number", {"sequence-numbers": Array(None, Data.LONG, 99)}
        ),
    )
    assert missing.properties["errorCondition"] == "com.microsoft:message-not-found"


def test_unknown_operations_and_bad_requests_carry_an_error_condition(namespace: Namespace) -> None:
    q = _queue(namespace)
    unknown = management_response(q, _request("com.microsoft:get-session-state", {"session-id": "s"}))
    assert unknown.properties["errorCondition"] == "amqp:not-implemented"
    bad = management_response(
        q, _request("com.microsoft:update-disposition", {"disposition-status": "maybe", "lock-tokens": []})
    )
    assert bad.properties["statusCode"] == 200  # no tokens: nothing to do
    broken = management_response(
        q, _request("com.microsoft:schedule-message", {"messages": [{"message": b"\x01"}]})
    )
    assert broken.properties["errorCondition"] == "com.microsoft:argument-error"
