"""``/healthz`` and ``/readyz`` answer strict JSON: no NaN or Infinity can get out."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from postbus.worker.health import HealthServer, HealthStatus


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[HealthStatus], Any]]:
    servers: list[HealthServer] = []

    async def start(status: HealthStatus) -> str:
        server = HealthServer(port=0, status=lambda: status, host="127.0.0.1")
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop()


async def test_an_unlimited_send_rate_is_reported_as_null(serve: Callable[[HealthStatus], Any]) -> None:
    base = await serve(HealthStatus(live=True, ready=True, detail={"send_rate": None, "breaker": "closed"}))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/readyz") as response:
            assert response.status == 200
            body = _strict(await response.text())
        async with session.get(f"{base}/healthz") as response:
            assert _strict(await response.text()) == {"live": True}
    assert body == {"ready": True, "send_rate": None, "breaker": "closed"}


async def test_a_detail_that_is_not_json_fails_instead_of_answering_infinity(
    serve: Callable[[HealthStatus], Any],
) -> None:
    base = await serve(HealthStatus(live=True, ready=True, detail={"send_rate": math.inf}))
    async with aiohttp.ClientSession() as session, session.get(f"{base}/readyz") as response:
        assert response.status == 500
        assert "Infinity" not in await response.text()
