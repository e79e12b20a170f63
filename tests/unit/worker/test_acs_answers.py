"""What each ACS error answer means for the message: one example per row of the table, code before text."""

from __future__ import annotations

import pytest

from postbus.worker.errors import (
    AmbiguousSend,
    InvalidMessage,
    MessageTooLarge,
    ProcessingError,
    RecipientRejected,
    SystemicError,
    ThrottledError,
    TransientError,
)
from postbus.worker.mailer import ACS_ANSWERS, AcsAnswer, classify

_VALIDATION = "Request body validation error. See property '{}'."

#: One answer per row of ACS_ANSWERS, in the table's order, and the error the worker must act on.
EXAMPLES: list[tuple[AcsAnswer, type[ProcessingError]]] = [
    (
        AcsAnswer(
            400, "MissingApiVersionParameter", "api-version", "The api-version query parameter is required."
        ),
        SystemicError,
    ),
    (
        AcsAnswer(
            400, "UnsupportedApiVersion", "api-version", "does not support the API version '2099-01-01'."
        ),
        SystemicError,
    ),
    (
        AcsAnswer(400, "InvalidEmailAddress", "senderAddress", "'x' is not a valid email address."),
        SystemicError,
    ),
    (
        AcsAnswer(400, "InvalidEmailAddress", "replyTo[0].address", "'x' is not a valid email address."),
        InvalidMessage,
    ),
    (
        AcsAnswer(
            400,
            "InvalidEmailAddress",
            "recipients.to[0].address",
            "'x@mydomain' is not a valid email address.",
        ),
        RecipientRejected,
    ),
    (AcsAnswer(400, "BadRequest", "", _VALIDATION.format("senderAddress")), SystemicError),
    (AcsAnswer(400, "BadRequest", "recipients.to", "At least one recipient is required."), RecipientRejected),
    (
        AcsAnswer(400, "BadRequest", "body", "The request is 11534336 bytes; the limit is 10485760 bytes."),
        MessageTooLarge,
    ),
    (
        AcsAnswer(400, "BadRequest", "attachments[0].contentInBase64", "The value is not valid base64."),
        InvalidMessage,
    ),
    (AcsAnswer(400, "", "", "The specified sender domain has not been linked."), SystemicError),
    (AcsAnswer(400, "", "", "Too many recipients."), RecipientRejected),
    (
        AcsAnswer(400, "BadRequest", "Operation-Id", "The Operation-Id header is not a valid id."),
        InvalidMessage,
    ),
    (AcsAnswer(401, "Denied", "", "Denied by the resource provider."), SystemicError),
    (AcsAnswer(403, "Forbidden", "", "The identity lacks the role."), SystemicError),
    (AcsAnswer(404, "NotFound", "", "Resource not found."), SystemicError),
    (AcsAnswer(413, "", "", "Request Entity Too Large"), MessageTooLarge),
    (
        AcsAnswer(429, "TooManyRequests", "", "The send email rate limit has been exceeded.", retry_after=7),
        ThrottledError,
    ),
    (AcsAnswer(503, "ServiceUnavailable", "", "Injected fault."), AmbiguousSend),
]


def test_every_row_of_the_table_has_its_example() -> None:
    first_rows = [
        next(i for i, rule in enumerate(ACS_ANSWERS) if rule.matches(answer)) for answer, _ in EXAMPLES
    ]
    assert first_rows == list(range(len(ACS_ANSWERS)))


@pytest.mark.parametrize(
    ("answer", "error"), EXAMPLES, ids=[f"{a.status}-{a.code or a.message[:20]}" for a, _ in EXAMPLES]
)
def test_each_answer_becomes_the_error_its_row_names(answer: AcsAnswer, error: type[ProcessingError]) -> None:
    classified = classify(answer)
    assert type(classified) is error
    assert str(answer.status) in str(classified)


@pytest.mark.parametrize(
    "address", ["jane@domain.example", "domain-admin@contoso.com", "ops@sender-domain.test"]
)
def test_a_rejected_recipient_never_opens_the_breaker_whatever_its_address_says(address: str) -> None:
    # The old substring test read "domain" in the text as a systemic sender-domain failure.
    answer = AcsAnswer(
        400, "InvalidEmailAddress", "recipients.to[0].address", f"'{address}' is not a valid email address."
    )
    assert isinstance(classify(answer), RecipientRejected)


def test_the_property_is_read_from_the_message_when_acs_leaves_the_target_null() -> None:
    answer = AcsAnswer(
        400, "BadRequest", "", _VALIDATION.format("recipients.cc[2].address") + " sender domain"
    )
    assert answer.offending == "recipients.cc[2].address"
    assert isinstance(classify(answer), RecipientRejected)


def test_throttling_keeps_its_retry_after() -> None:
    error = classify(AcsAnswer(429, "TooManyRequests", retry_after=12.5))
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 12.5


def test_an_answer_no_row_knows_is_transient() -> None:
    assert type(classify(AcsAnswer(418, "Teapot"))) is TransientError
