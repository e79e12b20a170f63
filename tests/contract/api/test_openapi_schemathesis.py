"""Schemathesis over the whole OpenAPI document of a running API: no 5xx, every answer as documented.

The API runs in a thread with its own event loop (uvicorn, the publisher and the Service Bus
emulator), because schemathesis calls it synchronously with ``requests`` over a real socket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.producers.api import build_app
from postbus.settings import load_settings
from postbus.worker.rendering import TemplateRenderer
from tests.contract.api.conftest import CLIENTS, OLD_KEY, QUEUE, config, serving

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("api")
    ready: list[str] = []
    started = threading.Event()
    failed: list[BaseException] = []
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with ServiceBusEmulator(config=config(duplicate_detection=True)) as emulator:
            keys_only = {"clients": [c for c in CLIENTS["clients"] if "api_keys" in c]}
            app_settings = load_settings(
                None,
                servicebus_connection_string=emulator.connection_string,
                queue=QUEUE,
                record_url=f"sqlite:///{tmp / 'records.db'}",
                api_clients=json.dumps(keys_only),
            )
            app = build_app(app_settings, templates=TemplateRenderer())
            async with serving(app) as url:
                ready.append(url)
                started.set()
                await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failed.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="api-under-test", daemon=True)
    thread.start()
    started.wait(timeout=60)
    if failed or not ready:
        raise RuntimeError(f"the API did not start: {failed}")
    try:
        yield ready[0]
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


# Examples per operation: enough to reach every branch of the validation, small enough for < 60 s.
EXAMPLES = 25


def test_every_operation_answers_as_documented_and_never_with_a_5xx(api_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    tested = []
    statuses: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        if mode is schemathesis.GenerationMode.NEGATIVE and not operation.path.startswith("/v1/"):
            continue  # the probes take no input there is to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        def answers_as_documented(case: Any) -> None:
            response = case.call_and_validate(base_url=api_url, headers={"X-API-Key": OLD_KEY}, checks=CHECKS)
            statuses[f"{case.operation.label} {response.status_code}"] += 1

        answers_as_documented()
        tested.append(operation.label)
    assert len(set(tested)) == 7, tested
    # The run got past authentication into validation and policy, not only to 401s.
    assert any(k.startswith("POST /v1/notifications ") and not k.endswith(" 401") for k in statuses), statuses
