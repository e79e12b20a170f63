"""The client registry, per-client policy, rate buckets and idempotency keys, without a server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from postbus.errors import SettingsError
from postbus.events import parse_event
from postbus.producers.api.clients import Client, hash_key, load_registry, new_key, policy_violation
from postbus.producers.api.idempotency import IdempotencyStore
from postbus.producers.api.problems import Problem
from postbus.producers.api.ratelimit import RateLimiter

KEY = "pb_unit-test-key-0123456789abcdefghijklmnopqrstu"


def client(**overrides: object) -> Client:
    document = {
        "name": "shop",
        "api_keys": [hash_key(KEY)],
        "types": ["order.confirmation"],
        "senders": ["orders"],
        "tenants": ["shop"],
        "recipient_domains": ["example.com", "*.example.org"],
        "max_recipients": 2,
        "rate_limit": {"per_second": 2, "burst": 3},
    } | overrides
    return Client.model_validate(document)


def test_a_registry_reads_json_text_or_a_file_and_finds_clients_by_key_hash(tmp_path: Path) -> None:
    document = {"clients": [client().model_dump()]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(document))
    for source in (json.dumps(document), str(path)):
        registry = load_registry(source)
        assert registry.by_key(KEY) is not None
        assert registry.by_key(KEY + "x") is None


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ("{", "not valid JSON"),
        (
            '{"clients": [{"name": "a", "types": ["x"], "senders": ["s"], "tenants": ["t"]}]}',
            "needs entra_app_ids or api_keys",
        ),
        (
            '{"clients": [{"name": "a", "api_keys": ["pb_plain-key"], "types": ["x"], "senders": ["s"], "tenants": ["t"]}]}',
            "sha256:",
        ),
        (
            '{"clients": [{"name": "a", "entra_app_ids": ["nope"], "types": ["x"], "senders": ["s"], "tenants": ["t"]}]}',
            "GUID",
        ),
        ('{"clients": [], "extra": 1}', "unknown field"),
        ("/no/such/file.json", "cannot read"),
    ],
)
def test_a_bad_registry_is_one_line_naming_the_setting(document: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_registry(document)
    message = str(caught.value)
    assert message.startswith("POSTBUS_API_CLIENTS")
    assert says in message
    assert "\n" not in message
    assert "pb_plain-key" not in message


def test_two_clients_may_not_share_a_key() -> None:
    twice = {"clients": [client().model_dump(), client(name="other").model_dump()]}
    with pytest.raises(SettingsError, match="share a key"):
        load_registry(json.dumps(twice))


def test_new_keys_are_random_and_their_hash_is_what_the_registry_stores() -> None:
    (key1, stored1), (key2, _) = new_key(), new_key()
    assert key1 != key2
    assert stored1 == hash_key(key1)
    assert key1 not in stored1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({}, None),
        ({"type": "permit.approved"}, "type"),
        ({"sender": "permits"}, "sender"),
        ({"tenant": "city"}, "tenant"),
        ({"to": ["a@example.com", "b@example.com", "c@example.com"]}, "to"),
        ({"cc": ["a@example.net"]}, "cc.0.address"),
        ({"bcc": ["a@deep.sub.example.org"]}, None),
        ({"to": ["a@example.org"]}, "to.0.address"),  # *.example.org covers subdomains only
    ],
)
def test_policy_names_the_first_field_a_client_may_not_use(
    change: dict[str, object], field: str | None
) -> None:
    event = parse_event(
        {
            "id": "e-1",
            "type": "order.confirmation",
            "tenant": "shop",
            "to": ["j@example.com"],
            "sender": "orders",
        }
        | change
    )
    violation = policy_violation(client(), event)
    assert (violation[0] if violation else None) == field


def test_the_bucket_refuses_with_the_seconds_until_enough_tokens_exist() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    shop = client()
    for _ in range(3):
        limiter.take(shop)
    with pytest.raises(Problem) as caught:
        limiter.take(shop)
    assert caught.value.status == 429
    assert caught.value.headers == {"Retry-After": "1"}
    now[0] = 0.5  # one token back at 2/s
    limiter.take(shop)
    # A batch larger than the burst costs the whole burst, so it can pass once the bucket is full.
    now[0] = 10.0
    limiter.take(shop, cost=500)


async def test_concurrent_claims_of_a_key_publish_once_and_share_the_answer() -> None:
    store: IdempotencyStore[str] = IdempotencyStore()
    calls = 0
    release = asyncio.Event()

    async def publish() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "answer"

    runs = [asyncio.ensure_future(store.run("shop", "k", "digest", publish)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*runs)
    assert calls == 1
    assert sorted(replayed for _, replayed in results) == [False] + [True] * 9
    with pytest.raises(Problem) as conflict:
        await store.run("shop", "k", "another digest", publish)
    assert conflict.value.status == 409


async def test_a_failed_publish_forgets_the_key_so_the_retry_publishes() -> None:
    store: IdempotencyStore[str] = IdempotencyStore()
    attempts = 0

    async def publish() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Problem("unavailable", "queue busy")
        return "answer"

    with pytest.raises(Problem):
        await store.run("shop", "k", "d", publish)
    assert await store.run("shop", "k", "d", publish) == ("answer", False)
    assert attempts == 2


async def test_keys_expire_after_their_ttl() -> None:
    now = [0.0]
    store: IdempotencyStore[str] = IdempotencyStore(ttl=60, clock=lambda: now[0])

    async def publish() -> str:
        return "answer"

    await store.run("shop", "k", "d", publish)
    assert store.answered("shop", "k") == "answer"
    now[0] = 61
    assert store.answered("shop", "k") is None
    assert await store.run("shop", "k", "other", publish) == ("answer", False)


async def test_the_oldest_settled_keys_go_first_when_the_store_is_full() -> None:
    store: IdempotencyStore[str] = IdempotencyStore(max_entries=2)

    async def publish() -> str:
        return "answer"

    for key in ("a", "b", "c"):
        await store.run("shop", key, "d", publish)
    assert len(store) == 2
    assert store.answered("shop", "a") is None
    assert store.answered("shop", "c") == "answer"
