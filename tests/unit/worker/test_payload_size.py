"""The size check of a rendered email: a cheap bound first, the exact encoding only near the limit."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from postbus.worker.mailer import oversize

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(payload=st.dictionaries(st.text(max_size=8), _values, max_size=6), limit=st.integers(0, 400))
def test_oversize_is_the_exact_encoded_size_whenever_it_exceeds_the_limit(
    payload: dict[str, Any], limit: int
) -> None:
    size = len(json.dumps(payload))
    assert oversize(payload, limit) == (size if size > limit else None)


def test_an_email_far_below_the_limit_is_not_encoded_to_be_measured(monkeypatch: Any) -> None:
    def no_dumps(*_args: Any, **_kwargs: Any) -> str:
        raise AssertionError("encoded just to measure it")

    monkeypatch.setattr("postbus.worker.mailer.payload.json.dumps", no_dumps)
    payload = {"content": {"subject": "Your order", "html": "<p>é</p>" * 1000}, "recipients": {"to": []}}
    assert oversize(payload, 10 * 1024 * 1024) is None
