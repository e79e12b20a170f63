"""Request validation per the 2025-09-01 schema: each rule names the offending property."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from postbus.emulators.acs_email.errors import ApiError
from postbus.emulators.acs_email.validation import MAX_REQUEST_BYTES, check_api_version, parse_email_request

VALID: dict[str, Any] = {
    "senderAddress": "DoNotReply@contoso.test",
    "content": {"subject": "Order 42", "plainText": "Thanks", "html": "<p>Thanks</p>"},
    "recipients": {
        "to": [{"address": "ann@contoso.test", "displayName": "Ann"}],
        "cc": [{"address": "bob@contoso.test"}],
        "bcc": [{"address": "eve@contoso.test"}],
    },
    "replyTo": [{"address": "help@contoso.test"}],
    "headers": {"x-priority": "1"},
    "attachments": [
        {"name": "a.txt", "contentType": "text/plain", "contentInBase64": base64.b64encode(b"hi").decode()},
    ],
    "userEngagementTrackingDisabled": True,
}


def _parse(doc: object, api_version: str = "2025-09-01") -> Any:
    return parse_email_request(json.dumps(doc).encode(), api_version=api_version)


def _without(path: str) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[part]
    del node[last]
    return doc


def _with(path: str, value: object) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return doc


def test_a_complete_message_parses() -> None:
    email = _parse(VALID)
    assert email.sender == "DoNotReply@contoso.test"
    assert [a.address for a in email.recipients] == [
        "ann@contoso.test",
        "bob@contoso.test",
        "eve@contoso.test",
    ]
    assert email.attachments[0].content == b"hi"
    assert email.headers == {"x-priority": "1"}


BAD_CASES = [
    ("missing senderAddress", _without("senderAddress"), "senderAddress", "BadRequest"),
    (
        "display name in sender",
        _with("senderAddress", "Shop <a@contoso.test>"),
        "senderAddress",
        "BadRequest",
    ),
    ("missing content", _without("content"), "content", "BadRequest"),
    ("missing subject", _without("content.subject"), "content.subject", "BadRequest"),
    ("subject not a string", _with("content.subject", 5), "content.subject", "BadRequest"),
    ("missing recipients", _without("recipients"), "recipients", "BadRequest"),
    ("missing to", _without("recipients.to"), "recipients.to", "BadRequest"),
    ("empty to", _with("recipients.to", []), "recipients.to", "BadRequest"),
    ("recipient without address", _with("recipients.cc", [{}]), "recipients.cc[0].address", "BadRequest"),
    (
        "invalid recipient",
        _with("recipients.bcc", [{"address": "not-an-address"}]),
        "recipients.bcc[0].address",
        "InvalidEmailAddress",
    ),
    (
        "51 recipients",
        _with("recipients.cc", [{"address": f"u{i}@contoso.test"} for i in range(49)]),
        "recipients",
        "BadRequest",
    ),
    (
        "bad base64",
        _with("attachments", [{"name": "a", "contentType": "text/plain", "contentInBase64": "***"}]),
        "attachments[0].contentInBase64",
        "BadRequest",
    ),
    (
        "attachment without name",
        _with("attachments", [{"contentType": "text/plain", "contentInBase64": "aGk="}]),
        "attachments[0].name",
        "BadRequest",
    ),
    (
        "duplicate contentId",
        _with(
            "attachments",
            [
                {"name": "a", "contentType": "image/png", "contentInBase64": "aGk=", "contentId": "logo"},
                {"name": "b", "contentType": "image/png", "contentInBase64": "aGk=", "contentId": "logo"},
            ],
        ),
        "attachments[1].contentId",
        "BadRequest",
    ),
    ("header not a string", _with("headers", {"x-priority": 1}), "headers.x-priority", "BadRequest"),
    ("replyTo not a list", _with("replyTo", "help@contoso.test"), "replyTo", "BadRequest"),
    (
        "tracking flag not a bool",
        _with("userEngagementTrackingDisabled", "yes"),
        "userEngagementTrackingDisabled",
        "BadRequest",
    ),
]


@pytest.mark.parametrize(("doc", "target", "code"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_each_rule_names_the_property(doc: dict[str, Any], target: str, code: str) -> None:
    with pytest.raises(ApiError) as info:
        _parse(doc)
    assert info.value.status == 400
    assert info.value.code == code
    assert info.value.target == target
    assert f"See property '{target}'" in info.value.message


def test_duplicate_content_ids_pass_with_the_ignore_header() -> None:
    doc = _with(
        "attachments",
        [
            {"name": "a", "contentType": "image/png", "contentInBase64": "aGk=", "contentId": "logo"},
            {"name": "b", "contentType": "image/png", "contentInBase64": "aGk=", "contentId": "logo"},
        ],
    )
    doc["headers"] = {"x-ms-acsemail-ignore-duplicate-content-id": "true"}
    assert len(_parse(doc).attachments) == 2


def test_content_id_is_refused_before_2024_07_01_preview() -> None:
    doc = _with(
        "attachments",
        [{"name": "a", "contentType": "image/png", "contentInBase64": "aGk=", "contentId": "x"}],
    )
    assert _parse(doc, "2024-07-01-preview").attachments[0].content_id == "x"
    with pytest.raises(ApiError) as info:
        _parse(doc, "2023-03-31")
    assert info.value.target == "attachments[0].contentId"


def test_a_body_over_ten_megabytes_is_refused() -> None:
    with pytest.raises(ApiError) as info:
        parse_email_request(b" " * (MAX_REQUEST_BYTES + 1), api_version="2025-09-01")
    assert info.value.status == 400
    assert info.value.target == "body"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(ApiError) as info:
        parse_email_request(body, api_version="2025-09-01")
    assert info.value.target == "body"


def test_unknown_properties_are_ignored_like_the_service() -> None:
    assert _parse({**VALID, "futureField": 1}).subject == "Order 42"


@pytest.mark.parametrize("version", ["2023-03-31", "2024-07-01-preview", "2025-09-01"])
def test_the_three_sdk_api_versions_are_served(version: str) -> None:
    assert check_api_version(version) == version


@pytest.mark.parametrize(
    ("version", "code"),
    [(None, "MissingApiVersionParameter"), ("2021-10-01-preview", "UnsupportedApiVersion")],
)
def test_other_api_versions_are_refused(version: str | None, code: str) -> None:
    with pytest.raises(ApiError) as info:
        check_api_version(version)
    assert (info.value.status, info.value.code) == (400, code)
