"""``postbus api``: a wrong registry or missing setting is one line and exit code 2, before anything listens."""

from __future__ import annotations

import pytest

from postbus.cli import main
from postbus.producers.api import hash_key

SB = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"


@pytest.mark.parametrize(
    ("environment", "says"),
    [
        ({}, "POSTBUS_API_CLIENTS must hold or name the client registry"),
        ({"POSTBUS_API_CLIENTS": "{not json"}, "POSTBUS_API_CLIENTS: not valid JSON"),
        ({"POSTBUS_API_CLIENTS": "/nowhere/clients.json"}, "cannot read /nowhere/clients.json"),
        (
            {
                "POSTBUS_API_CLIENTS": '{"clients": [{"name": "v", "entra_app_ids": ["11111111-2222-3333-4444-555555555555"],'
                ' "types": ["order.confirmation"], "senders": ["orders"], "tenants": ["t"]}]}'
            },
            "POSTBUS_API_ENTRA_TENANT_ID must be set",
        ),
        ({"POSTBUS_API_ENTRA_TENANT_ID": "contoso.onmicrosoft.com"}, "POSTBUS_API_AUDIENCES"),
    ],
)
def test_a_misconfigured_api_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    says: str,
) -> None:
    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", SB)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["api"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("postbus: error: ")
    assert says in err[0]


def test_new_key_prints_a_key_and_the_hash_the_registry_stores(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api", "new-key"]) == 0
    key_line, hash_line = capsys.readouterr().out.splitlines()
    assert key_line.split()[0] == "key:"
    assert hash_line.split() == ["hash:", hash_key(key_line.split()[1])]
