"""The app in-process (httpx's ASGI transport) with fakes: what only a broken seam can show."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx

from postbus.lanes import LaneNotAllowed
from postbus.producers.api import Authenticator, ClientRegistry, Ingest, create_app, hash_key
from postbus.producers.outgoing import EventLike

KEY = "pb_unit-app-key-0123456789abcdefghijklmnopqrstuv"
REGISTRY = ClientRegistry.model_validate(
    {
        "clients": [
            {
                "name": "shop",
                "api_keys": [hash_key(KEY)],
                "types": ["order.confirmation"],
                "senders": ["orders"],
                "tenants": ["shop"],
            }
        ]
    }
)
EVENT = {
    "id": "o-1",
    "type": "order.confirmation",
    "tenant": "shop",
    "to": ["a@example.com"],
    "sender": "orders",
}


class BrokenPublisher:
    async def publish_many(
        self, events: Iterable[EventLike], *, send_at: datetime | None = None
    ) -> list[str]:
        raise RuntimeError("a bug in a seam")


async def test_a_bug_is_a_500_problem_without_its_detail() -> None:
    app = create_app(Ingest(publisher=BrokenPublisher()), Authenticator(REGISTRY))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.post("/v1/notifications", json=EVENT, headers={"X-API-Key": KEY})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == "urn:postbus:problem:internal"
    assert "seam" not in json.dumps(body)


class LanePolicyPublisher:
    """Refuses what the real publisher's lane policy refuses: a lane above the type's default."""

    async def publish_many(
        self, events: Iterable[EventLike], *, send_at: datetime | None = None
    ) -> list[str]:
        raise LaneNotAllowed(
            "events[0]: event 'o-1': lane 'critical' is above the 'normal' lane", field="lane"
        )


async def test_a_lane_the_client_may_not_use_is_a_4xx_problem_naming_the_field() -> None:
    app = create_app(Ingest(publisher=LanePolicyPublisher()), Authenticator(REGISTRY))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.post(
            "/v1/notifications", json={**EVENT, "lane": "critical"}, headers={"X-API-Key": KEY}
        )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert "lane 'critical'" in body["detail"]


async def test_the_openapi_document_carries_the_contract_schema() -> None:
    app = create_app(Ingest(publisher=BrokenPublisher()), Authenticator(REGISTRY))
    schemas = app.openapi()["components"]["schemas"]
    event = schemas["NotificationEvent"]
    assert event["additionalProperties"] is False
    assert event["properties"]["id"]["pattern"].startswith("^")
    assert {"ProblemBody", "BatchRequest", "Address", "PreviewRequest"} <= set(schemas)
    post = app.openapi()["paths"]["/v1/notifications"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/NotificationEvent")
    assert "application/problem+json" in post["responses"]["422"]["content"]
