"""The ingest API over real sockets: uvicorn, httpx, the Service Bus emulator, a local JWKS endpoint."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient

from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.producers.api import hash_key
from postbus.records import DeliveryRecord, Outcome, record_store, sent
from postbus.settings import load_settings
from postbus.worker.rendering import TemplateRenderer
from tests.contract.api.conftest import (
    AUDIENCE,
    CLIENTS,
    NEW_KEY,
    OLD_KEY,
    QUEUE,
    SLOW_KEY,
    STRANGER_APP,
    TENANT,
    Api,
    Entra,
    start_api,
)

PROBLEM = "application/problem+json"
RENDERER = TemplateRenderer()


def order(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "order.confirmation",
        "tenant": "shop",
        "to": ["Jane Doe <jane@example.com>"],
        "sender": "orders",
        "data": RENDERER.sample_data("order.confirmation"),
    } | overrides


def permit(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "permit.approved",
        "tenant": "city",
        "to": ["applicant@example.net"],
        "sender": "permits",
        "data": RENDERER.sample_data("permit.approved"),
    } | overrides


def assert_problem(
    response: httpx.Response, status: int, kind: str, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:postbus:problem:{kind}"
    assert body["status"] == status
    assert body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


async def queued_ids(api: Api, count: int) -> list[str]:
    """Receive and delete ``count`` messages; returns their message ids."""
    ids: list[str] = []
    async with ServiceBusClient.from_connection_string(api.emulator.connection_string) as client:
        receiver = client.get_queue_receiver(QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
        async with receiver:
            while len(ids) < count:
                batch = await receiver.receive_messages(max_message_count=count - len(ids), max_wait_time=5)
                if not batch:
                    break
                ids.extend(str(m.message_id) for m in batch)
    return ids


# -- single events and API keys ------------------------------------------------------------------


async def test_an_event_is_queued_once_with_its_id_and_a_location(api: Api) -> None:
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        response = await http.post("/v1/notifications", json=order("order-1"))
    assert response.status_code == 202, response.text
    assert response.json() == {"id": "order-1", "status": "accepted", "location": "/v1/notifications/order-1"}
    assert response.headers["location"] == "/v1/notifications/order-1"
    assert await queued_ids(api, 1) == ["order-1"]


async def test_both_keys_of_a_rollover_work_and_an_unknown_key_does_not(api: Api) -> None:
    async with api.client() as http:
        old = await http.post("/v1/notifications", json=order("o-old"), headers={"X-API-Key": OLD_KEY})
        new = await http.post("/v1/notifications", json=order("o-new"), headers={"X-API-Key": NEW_KEY})
        wrong = await http.post("/v1/notifications", json=order("o-x"), headers={"X-API-Key": "pb_nope"})
        none = await http.post("/v1/notifications", json=order("o-y"))
    assert (old.status_code, new.status_code) == (202, 202)
    body = assert_problem(wrong, 401, "unauthenticated", "Authorization")
    assert "pb_nope" not in json.dumps(body)
    assert_problem(none, 401, "unauthenticated")
    assert "WWW-Authenticate" in none.headers
    assert sorted(await queued_ids(api, 3)) == ["o-new", "o-old"]


async def test_a_key_removed_from_the_registry_stops_working(tmp_path: Path, entra: Entra) -> None:
    # Given a registry where the rollover is complete: only the new key is left
    shop = CLIENTS["clients"][0] | {"api_keys": [hash_key(NEW_KEY)]}
    clients = {"clients": [shop, *CLIENTS["clients"][1:]]}
    async with await start_api(tmp_path, entra, api_clients=json.dumps(clients)) as api, api.client() as http:
        old = await http.post("/v1/notifications", json=order("o-1"), headers={"X-API-Key": OLD_KEY})
        new = await http.post("/v1/notifications", json=order("o-2"), headers={"X-API-Key": NEW_KEY})
    assert_problem(old, 401, "unauthenticated")
    assert new.status_code == 202


# -- Entra tokens ----------------------------------------------------------------------------------


async def test_a_vendor_token_is_accepted_and_names_the_client(api: Api, entra: Entra) -> None:
    async with api.client(Authorization=f"Bearer {entra.token()}") as http:
        response = await http.post("/v1/notifications", json=permit("permit-1"))
        v1 = await http.post(
            "/v1/notifications",
            json=permit("permit-2"),
            headers={
                "Authorization": "Bearer " + entra.token(issuer=f"{entra.authority}/{TENANT}/", claim="appid")
            },
        )
    assert response.status_code == 202, response.text
    assert v1.status_code == 202, v1.text
    assert sorted(await queued_ids(api, 2)) == ["permit-1", "permit-2"]


@pytest.mark.parametrize(
    ("token_args", "status", "says"),
    [
        ({"expires_in": -600}, 401, "expired"),
        ({"audience": "api://someone-else"}, 401, "audience"),
        ({"issuer": "https://login.microsoftonline.com/another-tenant/v2.0"}, 401, "tenant"),
        ({"kid": "unknown"}, 401, "does not publish"),
        ({"app_id": STRANGER_APP}, 403, "not a registered client"),
    ],
)
async def test_bad_tokens_are_refused_with_a_problem(
    api: Api, entra: Entra, token_args: dict[str, Any], status: int, says: str
) -> None:
    if token_args.get("kid") == "unknown":
        entra.add_key("unknown", publish=False)
    token = entra.token(**token_args)
    async with api.client(Authorization=f"Bearer {token}") as http:
        response = await http.post("/v1/notifications", json=permit("p-bad"))
    body = assert_problem(
        response, status, "unauthenticated" if status == 401 else "forbidden", "Authorization"
    )
    assert says in body["detail"]
    assert token not in response.text
    assert api.on_queue() == 0


async def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(api: Api, entra: Entra) -> None:
    entra.add_key("forger", publish=False)
    token = entra.token(kid="k1", signing_kid="forger")
    async with api.client(Authorization=f"Bearer {token}") as http:
        response = await http.post("/v1/notifications", json=permit("p-forged"))
    body = assert_problem(response, 401, "unauthenticated")
    assert "signature" in body["detail"]


async def test_a_rolled_over_signing_key_is_fetched_when_a_token_names_it(api: Api, entra: Entra) -> None:
    async with api.client() as http:
        first = await http.post(
            "/v1/notifications", json=permit("p-1"), headers={"Authorization": f"Bearer {entra.token()}"}
        )
        fetches = entra.fetches
        # The tenant publishes a new key and starts signing with it.
        entra.add_key("k2")
        second = await http.post(
            "/v1/notifications",
            json=permit("p-2"),
            headers={"Authorization": f"Bearer {entra.token(kid='k2')}"},
        )
        third = await http.post(
            "/v1/notifications",
            json=permit("p-3"),
            headers={"Authorization": f"Bearer {entra.token(kid='k2')}"},
        )
    assert (first.status_code, second.status_code, third.status_code) == (202, 202, 202)
    assert entra.fetches == fetches + 1  # fetched once for the new key, then cached


# -- policy and bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "kind", "field"),
    [
        ({"type": "permit.approved", "sender": "orders"}, 403, "forbidden", "type"),
        ({"sender": "permits"}, 403, "forbidden", "sender"),
        ({"tenant": "city"}, 403, "forbidden", "tenant"),
        (
            {"to": ["a@example.com", "b@example.com"], "cc": ["c@example.com", "d@example.com"]},
            403,
            "forbidden",
            "to",
        ),
        ({"colour": "blue"}, 422, "invalid-event", "colour"),
        ({"to": ["not-an-address"]}, 422, "invalid-event", "to.0.address"),
        ({"data": {"brand": {}}}, 422, "template-error", "data"),
        ({"not_after": "2020-01-01T00:00:00Z"}, 422, "invalid-event", "not_after"),
    ],
)
async def test_events_outside_the_contract_or_the_policy_are_refused_and_not_queued(
    api: Api, change: dict[str, Any], status: int, kind: str, field: str
) -> None:
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        response = await http.post("/v1/notifications", json=order("o-refused") | change)
    assert_problem(response, status, kind, field)
    assert api.on_queue() == 0


async def test_recipient_domains_are_checked_for_clients_that_list_them(api: Api, entra: Entra) -> None:
    async with api.client(Authorization=f"Bearer {entra.token()}") as http:
        outside = await http.post("/v1/notifications", json=permit("p-1", bcc=["x@example.com"]))
        wildcard = await http.post("/v1/notifications", json=permit("p-2", cc=["y@mail.example.org"]))
    body = assert_problem(outside, 403, "forbidden", "bcc.0.address")
    assert "x@example.com" not in body["detail"]
    assert wildcard.status_code == 202


async def test_malformed_bodies_are_4xx_problems(api: Api) -> None:
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        broken = await http.post(
            "/v1/notifications", content=b'{"id": "x",', headers={"Content-Type": "application/json"}
        )
        text = await http.post("/v1/notifications", content=b"hello", headers={"Content-Type": "text/plain"})
        huge = await http.post(
            "/v1/notifications",
            content=b'{"id": "' + b"x" * (17 * 1024 * 1024) + b'"}',
            headers={"Content-Type": "application/json"},
        )
        wrong_type = await http.post("/v1/notifications", json=order("o-1") | {"to": "jane@example.com"})
        not_object = await http.post("/v1/notifications", json=[1, 2])
    assert_problem(broken, 400, "malformed-json")
    assert_problem(text, 415, "unsupported-media-type", "Content-Type")
    assert_problem(huge, 413, "too-large")
    assert_problem(wrong_type, 422, "invalid-event", "to")
    assert_problem(not_object, 422, "invalid-event")
    assert api.on_queue() == 0


# -- idempotency -----------------------------------------------------------------------------------


async def test_concurrent_retries_put_exactly_one_message_on_the_queue(tmp_path: Path, entra: Entra) -> None:
    # Duplicate detection is off, so only the API stands between a retry and a second message.
    async with await start_api(tmp_path, entra, duplicate_detection=False) as api:
        async with api.client(**{"X-API-Key": OLD_KEY, "Idempotency-Key": "checkout-77"}) as http:
            responses = await asyncio.gather(
                *(http.post("/v1/notifications", json=order("order-77")) for _ in range(20))
            )
            conflict = await http.post("/v1/notifications", json=order("order-77", sender="returns"))
        assert {r.status_code for r in responses} == {202}
        assert {r.json()["id"] for r in responses} == {"order-77"}
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
        assert_problem(conflict, 409, "idempotency-conflict", "Idempotency-Key")
        # Every answer came after the one publish had completed: the count is final.
        assert api.emulator.counts(QUEUE).active == 1


async def test_a_retry_without_a_key_replays_by_event_id(tmp_path: Path, entra: Entra) -> None:
    async with await start_api(tmp_path, entra, duplicate_detection=False) as api:
        async with api.client(**{"X-API-Key": OLD_KEY}) as http:
            first = await http.post("/v1/notifications", json=order("order-9"))
            again = await http.post("/v1/notifications", json=order("order-9"))
            changed = await http.post("/v1/notifications", json=order("order-9", sender="returns"))
        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json() == first.json()
        assert_problem(changed, 409, "idempotency-conflict", "id")
        assert api.emulator.counts(QUEUE).active == 1


# -- batches ----------------------------------------------------------------------------------------


async def test_a_batch_queues_the_good_items_and_explains_the_others(api: Api) -> None:
    events = [
        order("b-1"),
        order("b-2", to=["nobody"]),
        order("b-3", sender="permits"),
        order("b-4"),
        order("b-1"),  # the same event again in the same batch: replayed, not queued twice
    ]
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        response = await http.post("/v1/notifications/batch", json={"events": events})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 2)
    statuses = [(r["index"], r["id"], r["status"]) for r in body["results"]]
    assert statuses == [
        (0, "b-1", "accepted"),
        (1, "b-2", "rejected"),
        (2, "b-3", "rejected"),
        (3, "b-4", "accepted"),
        (4, "b-1", "accepted"),
    ]
    assert body["results"][1]["problem"]["field"] == "to.0.address"
    assert body["results"][1]["problem"]["detail"].startswith("events[1]: ")
    assert body["results"][2]["problem"]["status"] == 403
    assert sorted(await queued_ids(api, 3)) == ["b-1", "b-4"]


async def test_a_batch_must_hold_1_to_500_events(api: Api) -> None:
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        empty = await http.post("/v1/notifications/batch", json={"events": []})
        too_many = await http.post(
            "/v1/notifications/batch", json={"events": [order(f"e-{i}") for i in range(501)]}
        )
        shape = await http.post("/v1/notifications/batch", json=[order("e-1")])
    assert_problem(empty, 422, "invalid-request", "events")
    assert_problem(too_many, 422, "invalid-request", "events")
    assert_problem(shape, 422, "invalid-request", "events")


# -- rate limits -------------------------------------------------------------------------------------


async def test_a_client_over_its_rate_gets_429_with_retry_after(api: Api) -> None:
    async with api.client(**{"X-API-Key": SLOW_KEY}) as http:
        answers = [await http.post("/v1/notifications", json=order(f"slow-{i}")) for i in range(3)]
    assert [a.status_code for a in answers[:2]] == [202, 202]
    assert_problem(answers[2], 429, "rate-limited")
    assert int(answers[2].headers["retry-after"]) >= 1


# -- status ------------------------------------------------------------------------------------------


async def test_status_tells_the_records_story_to_the_tenant_that_sent_it(api: Api, entra: Entra) -> None:
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        await http.post("/v1/notifications", json=order("order-5"))
        queued = await http.get("/v1/notifications/order-5")
        assert queued.json() == {"id": "order-5", "status": "queued", "generations": []}
        # The worker sends it and ACS reports delivery.
        now = datetime.now(UTC)
        async with record_store(api.settings) as store:
            await store.write(
                sent(
                    operation_id="op-5",
                    event_id="order-5",
                    generation=0,
                    tenant="shop",
                    type="order.confirmation",
                    recipient_domains=["example.com"],
                    first_enqueued=now,
                    attempts=1,
                    accepted_at=now,
                )
            )
            await store.write(
                DeliveryRecord(
                    operation_id="op-5",
                    outcome=Outcome.DELIVERED,
                    outcome_at=now,
                    created_at=now,
                    updated_at=now,
                    delivered_at=now,
                )
            )
        delivered = await http.get("/v1/notifications/order-5")
        unknown = await http.get("/v1/notifications/never-sent")
    assert delivered.status_code == 200, delivered.text
    body = delivered.json()
    assert body["status"] == "delivered"
    [generation] = body["generations"]
    assert generation["operation_id"] == "op-5"
    assert generation["recipient_domains"] == ["example.com"]
    assert_problem(unknown, 404, "not-found")
    # Another client's tenants do not see it.
    async with api.client(Authorization=f"Bearer {entra.token()}") as http:
        other = await http.get("/v1/notifications/order-5")
    assert_problem(other, 404, "not-found")


# -- templates ---------------------------------------------------------------------------------------


async def test_templates_lists_what_the_client_may_send_and_previews_without_sending(api: Api) -> None:
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        listing = await http.get("/v1/templates")
        preview = await http.post(
            "/v1/templates/order.confirmation/preview",
            json={"data": RENDERER.sample_data("order.confirmation"), "locale": "de-AT"},
        )
        bad = await http.post("/v1/templates/order.confirmation/preview", json={"data": {}})
        forbidden = await http.post("/v1/templates/permit.approved/preview", json={"data": {}})
    assert listing.status_code == 200
    assert [t["type"] for t in listing.json()["templates"]] == ["order.confirmation", "return.label"]
    assert preview.status_code == 200, preview.text
    assert preview.json()["locale"] == "de"
    assert "CO-2026-104583" in preview.json()["subject"]
    assert_problem(bad, 422, "template-error", "data")
    assert_problem(forbidden, 403, "forbidden", "type")
    assert api.on_queue() == 0


async def test_health_and_readiness(api: Api) -> None:
    async with api.client() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200


# -- Service Bus failures and logging ----------------------------------------------------------------


async def test_a_queue_that_refuses_is_a_503_and_the_retry_publishes_once(
    tmp_path: Path, entra: Entra
) -> None:
    from postbus.producers.api import build_app
    from postbus.producers.api.server import authenticator_from_settings, registry_from_settings
    from postbus.producers.publisher import Publisher
    from tests.contract.api.conftest import config, serving

    fast = {"retry_total": 1, "retry_backoff_factor": 0.05, "retry_backoff_max": 0.1}
    async with ServiceBusEmulator(config=config(duplicate_detection=False)) as emulator:
        settings = load_settings(
            None,
            servicebus_connection_string=emulator.connection_string,
            queue=QUEUE,
            record_url=f"sqlite:///{tmp_path / 'records.db'}",
            api_clients=json.dumps(CLIENTS),
            api_entra_tenant_id=TENANT,
            api_audiences=[AUDIENCE],
            api_authority=entra.authority,
        )
        registry = registry_from_settings(settings)
        publisher = Publisher.from_settings(settings, client_options=fast)
        app = build_app(
            settings,
            templates=RENDERER,
            registry=registry,
            publisher=publisher,
            authenticator=authenticator_from_settings(settings, registry),
        )
        try:
            async with (
                serving(app) as url,
                httpx.AsyncClient(base_url=url, headers={"X-API-Key": OLD_KEY}) as http,
            ):
                emulator.faults.fail_next_sends(10)
                refused = await http.post("/v1/notifications", json=order("o-busy"))
                batch = await http.post(
                    "/v1/notifications/batch", json={"events": [order("o-b1"), order("o-b2")]}
                )
                emulator.faults.fail_next_sends(0)
                retried = await http.post("/v1/notifications", json=order("o-busy"))
        finally:
            await publisher.close()
        body = assert_problem(refused, 503, "unavailable")
        assert refused.headers["retry-after"] == "5"
        assert "not queued" in body["detail"]
        assert batch.status_code == 200
        assert [r["problem"]["status"] for r in batch.json()["results"]] == [503, 503]
        assert retried.status_code == 202
        assert "idempotent-replayed" not in retried.headers
        assert emulator.counts(QUEUE).active == 1


async def test_each_request_logs_one_line_with_the_client_and_no_secret_or_address(api: Api) -> None:
    from postbus.logs import capture_lines

    with capture_lines("postbus.producers.api") as lines:
        async with api.client(**{"X-API-Key": OLD_KEY}) as http:
            await http.post(
                "/v1/notifications", json=order("o-log", to=["Secret Person <secret.person@example.com>"])
            )
            await http.get("/v1/notifications/o-log")
            await http.post("/v1/notifications", json=order("o-log2", sender="nope"))
    requests = [line for line in lines if line["event"] == "api request"]
    assert [(r["route"], r["status"], r["client"]) for r in requests] == [
        ("/v1/notifications", 202, "shop"),
        ("/v1/notifications/{event_id}", 200, "shop"),
        ("/v1/notifications", 403, "shop"),
    ]
    assert requests[2]["problem"] == "forbidden"
    text = json.dumps(lines)
    assert OLD_KEY not in text
    assert "secret.person" not in text
    assert "o-log" not in text  # routes are templates: event ids stay out of the log


async def test_two_replicas_that_each_accept_a_retry_leave_one_message_through_duplicate_detection(
    tmp_path: Path, entra: Entra
) -> None:
    # Each replica keeps its own keys; the queue's duplicate detection on the event id is the backstop.
    from postbus.producers.api import build_app
    from tests.contract.api.conftest import config, serving

    async with ServiceBusEmulator(config=config(duplicate_detection=True)) as emulator:
        settings = load_settings(
            None,
            servicebus_connection_string=emulator.connection_string,
            queue=QUEUE,
            record_url=f"sqlite:///{tmp_path / 'records.db'}",
            api_clients=json.dumps({"clients": [CLIENTS["clients"][0]]}),
        )
        async with (
            serving(build_app(settings, templates=RENDERER)) as first,
            serving(build_app(settings, templates=RENDERER)) as second,
        ):
            answers = []
            for url in (first, second):
                async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": OLD_KEY}) as http:
                    answers.append(await http.post("/v1/notifications", json=order("order-twice")))
        assert [a.status_code for a in answers] == [202, 202]
        assert emulator.counts(QUEUE).active == 1


async def test_an_unreachable_key_endpoint_is_a_503_not_a_401(tmp_path: Path, entra: Entra) -> None:
    async with (
        await start_api(tmp_path, entra, api_authority="http://127.0.0.1:9") as api,
        api.client(Authorization=f"Bearer {entra.token()}") as http,
    ):
        response = await http.post("/v1/notifications", json=permit("p-1"))
        assert api.on_queue() == 0
    body = assert_problem(response, 503, "unavailable")
    assert "signing keys" in body["detail"]


async def test_an_attachment_too_large_for_the_queue_goes_through_the_claim_check(api: Api) -> None:
    # A return label over the queue's 256 KB: accepted, its bytes in the attachment store, a
    # reference on the queue.
    label = b"%PDF-1.7\n" + secrets.token_bytes(300 * 1024)
    event = order("o-label") | {
        "attachments": [
            {
                "name": "label.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(label).decode(),
            }
        ]
    }
    async with api.client(**{"X-API-Key": OLD_KEY}) as http:
        response = await http.post("/v1/notifications", json=event)
    assert response.status_code == 202, response.text
    assert api.on_queue() == 1
    store = Path(api.settings.attachment_store_url.removeprefix("file://"))
    assert (store / "sha256" / hashlib.sha256(label).hexdigest()).read_bytes() == label
