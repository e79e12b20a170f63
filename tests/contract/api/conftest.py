"""A real ingest API: uvicorn on 127.0.0.1, the Service Bus emulator behind it, a local Entra stand-in.

``entra`` serves a tenant's JWKS over HTTP on a free port and signs tokens with RSA keys made
here, so every token check (signature, key id, rollover, issuer, audience, expiry) runs the
real PyJWT code against a real HTTP key endpoint. ``api`` starts the app with its real publisher
(azure-servicebus over AMQP to the emulator) and a SQLite record store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.emulators.servicebus.config import parse_config
from postbus.producers.api import build_app, hash_key
from postbus.producers.api.server import authenticator_from_settings, registry_from_settings
from postbus.settings import Settings, load_settings
from postbus.worker.rendering import TemplateRenderer
from tests.support import eventually

QUEUE = "notifications"
TENANT = "11111111-0000-4000-8000-000000000001"
AUDIENCE = "api://postbus-ingest"
VENDOR_APP = "22222222-0000-4000-8000-000000000002"
STRANGER_APP = "33333333-0000-4000-8000-000000000003"
OLD_KEY = "pb_old-key-for-tests-0123456789abcdefghijklmnop"
NEW_KEY = "pb_new-key-for-tests-0123456789abcdefghijklmnop"
SLOW_KEY = "pb_slow-key-for-tests-0123456789abcdefghijklmno"

CLIENTS = {
    "clients": [
        {
            "name": "shop",
            "api_keys": [hash_key(OLD_KEY), hash_key(NEW_KEY)],
            "types": ["order.confirmation", "return.label"],
            "senders": ["orders", "returns"],
            "tenants": ["shop"],
            "max_recipients": 3,
            "rate_limit": {"per_second": 1000, "burst": 2000},
        },
        {
            "name": "vendor",
            "entra_app_ids": [VENDOR_APP],
            "types": ["permit.approved"],
            "senders": ["permits"],
            "tenants": ["city"],
            "recipient_domains": ["example.net", "*.example.org"],
        },
        {
            "name": "slow",
            "api_keys": [hash_key(SLOW_KEY)],
            "types": ["order.confirmation"],
            "senders": ["orders"],
            "tenants": ["shop"],
            "rate_limit": {"per_second": 0.01, "burst": 2},
        },
    ]
}


def config(*, duplicate_detection: bool) -> Any:
    """The emulator's queue; without duplicate detection only the API keeps a retry off the queue."""
    return parse_config(
        {
            "UserConfig": {
                "Namespaces": [
                    {
                        "Name": "sbemulatorns",
                        "Queues": [
                            {
                                "Name": QUEUE,
                                "Properties": {
                                    "RequiresDuplicateDetection": duplicate_detection,
                                    "DuplicateDetectionHistoryTimeWindow": "PT10M",
                                },
                            }
                        ],
                    }
                ],
                "Logging": {"Type": "Console"},
            }
        }
    )


@dataclass
class Entra:
    """A tenant's key endpoint and token issuer."""

    authority: str
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)
    fetches: int = 0

    def add_key(self, kid: str, *, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.add(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in sorted(self.published):
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append(jwk | {"kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    @property
    def issuer(self) -> str:
        return f"{self.authority}/{TENANT}/v2.0"

    def token(
        self,
        *,
        kid: str = "k1",
        app_id: str = VENDOR_APP,
        audience: str = AUDIENCE,
        issuer: str | None = None,
        expires_in: float = 3600,
        signing_kid: str | None = None,
        claim: str = "azp",
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + int(expires_in),
            "tid": TENANT,
            "sub": str(uuid.uuid4()),
            claim: app_id,
        }
        key = self.keys[signing_kid or kid]
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
async def entra() -> AsyncIterator[Entra]:
    state = Entra(authority="")

    async def keys(_: web.Request) -> web.Response:
        state.fetches += 1
        return web.json_response(state.jwks())

    web_app = web.Application()
    web_app.router.add_get(f"/{TENANT}/discovery/v2.0/keys", keys)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.authority = f"http://127.0.0.1:{port}"
    state.add_key("k1")
    try:
        yield state
    finally:
        await runner.cleanup()


@dataclass
class Api:
    """The running API and what it talks to."""

    url: str
    emulator: ServiceBusEmulator
    settings: Settings
    app: FastAPI
    entra: Entra

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    def on_queue(self) -> int:
        counts = self.emulator.counts(QUEUE)
        return counts.active + counts.scheduled


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        # uvicorn announces start-up only through this flag.
        await eventually(lambda: server.started or task.done(), within=20)
        if task.done():
            task.result()
            raise AssertionError("uvicorn stopped during start-up")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def start_api(
    tmp_path: Path, entra: Entra, *, duplicate_detection: bool = True, **overrides: Any
) -> contextlib.AbstractAsyncContextManager[Api]:
    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[Api]:
        async with ServiceBusEmulator(config=config(duplicate_detection=duplicate_detection)) as emulator:
            values: dict[str, Any] = {
                "servicebus_connection_string": emulator.connection_string,
                "queue": QUEUE,
                "record_url": f"sqlite:///{tmp_path / 'records.db'}",
                "attachment_store_url": f"file://{tmp_path / 'attachments'}",
                "api_clients": json.dumps(CLIENTS),
                "api_entra_tenant_id": TENANT,
                "api_audiences": [AUDIENCE],
                "api_authority": entra.authority,
            }
            settings = load_settings(None, **(values | overrides))
            registry = registry_from_settings(settings)
            app = build_app(
                settings,
                templates=TemplateRenderer(),
                registry=registry,
                # No cool-down between key refreshes, so a rollover test needs no waiting.
                authenticator=authenticator_from_settings(settings, registry, refresh_cooldown_seconds=0),
            )
            async with serving(app) as url:
                yield Api(url=url, emulator=emulator, settings=settings, app=app, entra=entra)

    return running()


@pytest.fixture
async def api(tmp_path: Path, entra: Entra) -> AsyncIterator[Api]:
    async with await start_api(tmp_path, entra) as running:
        yield running


StartApi = Callable[..., Awaitable[contextlib.AbstractAsyncContextManager[Api]]]
