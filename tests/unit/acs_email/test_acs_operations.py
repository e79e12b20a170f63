"""Operation lifecycle and Operation-Id idempotency, with a fake clock."""

from __future__ import annotations

import pytest

from postbus.emulators.acs_email.errors import ApiError
from postbus.emulators.acs_email.operations import DEFAULT_FAILURE_RULES, OperationStore, as_failure_rules


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _create(
    store: OperationStore,
    op_id: str | None = "op-1",
    body: bytes = b"{}",
    to: str = "a@contoso.test",
    after: float = 2.0,
):
    return store.create(
        op_id=op_id, body=body, recipients=[to], succeed_after=after, rules=DEFAULT_FAILURE_RULES
    )


def test_running_until_the_delay_then_succeeded_with_retry_after_at_least_one() -> None:
    clock = FakeClock()
    store = OperationStore(clock=clock)
    op, created = _create(store)
    assert created
    assert op.to_json(clock.now) == {"id": "op-1", "status": "Running"}
    assert op.retry_after(clock.now) == 2
    clock.now += 1.9
    assert op.retry_after(clock.now) == 1
    clock.now += 0.1
    assert op.to_json(clock.now) == {"id": "op-1", "status": "Succeeded"}


@pytest.mark.parametrize(
    ("recipient", "code"),
    [("x@bounce.test", "EmailDropped"), ("X@SUPPRESSED.TEST", "EmailDroppedAllRecipientsSuppressed")],
)
def test_recipients_matching_a_rule_fail_with_its_code(recipient: str, code: str) -> None:
    clock = FakeClock()
    op, _ = _create(OperationStore(clock=clock), to=recipient, after=0)
    body = op.to_json(clock.now)
    assert body["status"] == "Failed"
    assert body["error"]["code"] == code  # type: ignore[index]


def test_a_replay_with_the_same_body_returns_the_original_operation() -> None:
    store = OperationStore(clock=FakeClock())
    first, _ = _create(store)
    again, created = _create(store)
    assert not created
    assert again is first
    assert len(store) == 1


def test_a_replay_with_another_body_is_a_conflict() -> None:
    store = OperationStore(clock=FakeClock())
    _create(store)
    with pytest.raises(ApiError) as info:
        _create(store, body=b'{"other": 1}')
    assert (info.value.status, info.value.code, info.value.target) == (409, "Conflict", "Operation-Id")


def test_without_an_operation_id_every_send_gets_a_new_uuid() -> None:
    store = OperationStore(clock=FakeClock())
    a, _ = _create(store, op_id=None)
    b, _ = _create(store, op_id=None)
    assert a.id != b.id
    assert len(a.id) == 36


def test_rules_can_be_given_as_tuples() -> None:
    [rule] = as_failure_rules([("*@x.test", "EmailDropped", "gone")])
    assert rule.matches("someone@x.test")
    assert not rule.matches("someone@y.test")
    with pytest.raises(ValueError, match="pattern, code, message"):
        as_failure_rules([("*@x.test", "EmailDropped")])


def test_an_operation_stuck_in_running_still_asks_for_a_poll_within_a_minute() -> None:
    clock = FakeClock()
    op, _ = _create(OperationStore(clock=clock), after=float("inf"))
    assert op.status(clock.now + 1e9) == "Running"
    assert op.retry_after(clock.now) == 60


def test_the_conflict_status_can_be_the_older_guidelines_400() -> None:
    store = OperationStore(clock=FakeClock())
    _create(store)
    with pytest.raises(ApiError) as info:
        store.create(
            op_id="op-1", body=b"[]", recipients=["a@x.test"], succeed_after=0, rules=(), conflict_status=400
        )
    assert (info.value.status, info.value.code) == (400, "BadRequest")
