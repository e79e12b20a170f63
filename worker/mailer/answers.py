"""What an ACS answer means for the message: one table, keyed on status, error code and target.

ACS answers a refused request with ``{"error": {"code", "message", "target"}}`` (and the code in
``x-ms-error-code``). The worker classifies by what is structured first: the HTTP status, then
the error ``code``, then the ``target`` property (read from the message's "See property '...'"
when ACS leaves ``target`` null, as it does in production). Words of the message decide only
when nothing structured did. So a recipient refused with "domain" in its address stays a
rejected recipient and never opens the circuit breaker for the whole replica.

:data:`ACS_ANSWERS` is the table, first matching row wins; :func:`classify` applies it::

    error = classify(AcsAnswer(400, "InvalidEmailAddress", "recipients.to[0].address", "..."))
    isinstance(error, RecipientRejected)    # True
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Final

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

__all__ = ["ACS_ANSWERS", "DEFAULT_RETRY_AFTER", "AcsAnswer", "AnswerRule", "classify", "retry_after_seconds"]

#: When ACS throttles without saying for how long, wait this long (its windows are a minute wide).
DEFAULT_RETRY_AFTER: Final = 60.0
#: How ACS names the offending property in a validation message when ``target`` is null.
_SEE_PROPERTY: Final = re.compile(r"See property '([^']+)'")
_SERVER_ERRORS: Final = range(500, 600)


@dataclass(frozen=True, slots=True)
class AcsAnswer:
    """An ACS error answer, as far as the worker reads it."""

    status: int
    code: str = ""
    target: str = ""
    message: str = ""
    retry_after: float = DEFAULT_RETRY_AFTER

    @property
    def offending(self) -> str:
        """The offending property: ``target``, or the one a validation message names."""
        if self.target:
            return self.target
        found = _SEE_PROPERTY.search(self.message)
        return found.group(1) if found else ""

    @property
    def text(self) -> str:
        """``code: message (target ...)`` for humans."""
        text = f"{self.code}: {self.message}".strip(": ")
        return text + (f" (target {self.target})" if self.target else "")


@dataclass(frozen=True, slots=True)
class AnswerRule:
    """One row of :data:`ACS_ANSWERS`: the answers it matches and the error the worker acts on.

    ``summary`` is the error's first words (``{status}`` is the HTTP status). ``props`` match the
    offending property or any property under one (``recipients`` matches
    ``recipients.to[0].address``); ``phrase`` is a case-insensitive part of the message, the last
    resort. Unset fields match anything.
    """

    statuses: Container[int]
    error: type[ProcessingError]
    summary: str
    code: str = ""
    props: tuple[str, ...] = ()
    phrase: str = ""

    def matches(self, answer: AcsAnswer) -> bool:
        if answer.status not in self.statuses:
            return False
        if self.code and answer.code != self.code:
            return False
        if self.props and not any(_under(answer.offending, prop) for prop in self.props):
            return False
        return not self.phrase or self.phrase in answer.message.lower()

    def build(self, answer: AcsAnswer) -> ProcessingError:
        text = f"{self.summary.format(status=answer.status)}: {answer.text}"
        if self.error is ThrottledError:
            return ThrottledError(text, retry_after=answer.retry_after)
        return self.error(text)


_400: Final = (400,)
_API_VERSION: Final = "ACS does not serve this API version ({status})"
_SENDER: Final = "ACS refused the sender ({status})"
_RECIPIENTS: Final = "ACS refused the recipients ({status})"
_EMAIL: Final = "ACS refused the email ({status})"
_TOO_LARGE: Final = "ACS refused the email as too large ({status})"

#: Every ACS error answer the worker tells apart, most specific first. Codes ACS is known to send:
#: ``BadRequest`` (validation, naming the property), ``InvalidEmailAddress``, the api-version
#: codes, ``Denied`` (401), ``TooManyRequests`` (429); a 413 or 400 for an oversized request.
ACS_ANSWERS: Final[tuple[AnswerRule, ...]] = (
    AnswerRule(_400, SystemicError, _API_VERSION, code="MissingApiVersionParameter"),
    AnswerRule(_400, SystemicError, _API_VERSION, code="UnsupportedApiVersion"),
    AnswerRule(_400, SystemicError, _SENDER, code="InvalidEmailAddress", props=("senderAddress",)),
    AnswerRule(
        _400,
        InvalidMessage,
        "ACS refused the reply-to address ({status})",
        code="InvalidEmailAddress",
        props=("replyTo",),
    ),
    AnswerRule(_400, RecipientRejected, _RECIPIENTS, code="InvalidEmailAddress"),
    AnswerRule(_400, SystemicError, _SENDER, props=("senderAddress",)),
    AnswerRule(_400, RecipientRejected, _RECIPIENTS, props=("recipients",)),
    AnswerRule(_400, MessageTooLarge, _TOO_LARGE, props=("body",), phrase="limit"),
    AnswerRule(_400, InvalidMessage, _EMAIL, props=("content", "attachments", "headers", "replyTo", "body")),
    # Last resort, words of the message: a sender domain is the deployment's, never a message's fault.
    AnswerRule(_400, SystemicError, _SENDER, phrase="sender domain"),
    AnswerRule(_400, RecipientRejected, _RECIPIENTS, phrase="recipient"),
    AnswerRule(_400, InvalidMessage, _EMAIL),
    AnswerRule((401,), SystemicError, "ACS rejected the credentials ({status})"),
    AnswerRule((403,), SystemicError, "ACS refused access ({status})"),
    AnswerRule((404,), SystemicError, "ACS endpoint has no email API ({status})"),
    AnswerRule((413,), MessageTooLarge, _TOO_LARGE),
    AnswerRule((429,), ThrottledError, "ACS throttled the send ({status})"),
    AnswerRule(_SERVER_ERRORS, AmbiguousSend, "ACS answered {status} to the send"),
)


def _under(found: str, prop: str) -> bool:
    return found == prop or found.startswith((f"{prop}.", f"{prop}["))


def classify(answer: AcsAnswer) -> ProcessingError:
    """The worker's error for an ACS error answer (first matching row of :data:`ACS_ANSWERS`)."""
    for rule in ACS_ANSWERS:
        if rule.matches(answer):
            return rule.build(answer)
    return TransientError(f"ACS answered {answer.status}: {answer.text}")


def retry_after_seconds(headers: Mapping[str, str]) -> float:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001)):
        if name in lowered:
            try:
                return max(0.0, float(lowered[name]) * scale)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return DEFAULT_RETRY_AFTER
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else DEFAULT_RETRY_AFTER
