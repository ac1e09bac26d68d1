"""How reports speak of a differing metadata value (``orchestrator.records.report_values``): by its size, never
its words; and the values older reports quoted, found in their text and described the same way (the job table's
upgrade to schema 9 rewrites stored reports with ``described``)."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.orchestrator.records.report_values import described
from nsmigrate.orchestrator.verification.comparisons import compare_metadata


def quoted(value: Any) -> str:
    """A value as reports quoted it before: its repr, cut to 60 characters with "…"."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


@pytest.mark.parametrize(
    ("old", "now"),
    [
        (
            f"metadata key 'text': expected {quoted('Hello, got you')}, got {quoted('Hell')}",
            "metadata key 'text': expected a text of 14 characters, got a text of 4 characters",
        ),
        (
            f"metadata key 'text': expected {quoted('words ' * 40)}, got None",
            "metadata key 'text': expected a long text, got None",
        ),
        (
            f"metadata key 'tags': not expected, got {quoted(['a, got b', 'c'])}",
            "metadata key 'tags': not expected, got a list of 2 items",
        ),
        (
            f"metadata key 'd': expected {quoted({'a': 'private'})}, got 3.0",
            "metadata key 'd': expected an object of 1 key, got 3.0",
        ),
        (
            f"metadata key 'n': expected 3.0, got {quoted('three')}",
            "metadata key 'n': expected 3.0, got a text of 5 characters",
        ),
        (  # nsmigrate's own identifiers were and are shown
            f"metadata key 'creator_id': expected {quoted('a.1')}, got {quoted('a.2')}",
            "metadata key 'creator_id': expected 'a.1', got 'a.2'",
        ),
        (  # a report's reason line, its key holding a quote
            f"3 contents differ (e.g. 'id-1': metadata key \"it's\": expected {quoted('my address')}, got 'x')",
            "3 contents differ (e.g. 'id-1': metadata key \"it's\": expected a text of 10 characters, "
            "got a text of 1 character)",
        ),
        (  # a rollback's, with text after it
            f"2 originals differ (e.g. 'x': metadata key 'q': expected {quoted(list(range(40)))}, got []); 1 more",
            "2 originals differ (e.g. 'x': metadata key 'q': expected a long list, got a list of 0 items); 1 more",
        ),
    ],
)
def test_a_value_an_older_report_quoted_is_described_by_its_size(old: str, now: str) -> None:
    assert described(old) == now


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"text": "some words"}, {"text": "other words"}),
        ({"text": "x"}, {}),
        ({}, {"tags": ["a", "b"]}),
        ({"n": 3}, {"n": "3"}),
        ({"creator_id": "a.1"}, {"creator_id": "a.2"}),
        ({"flag": True}, {"flag": 1}),
    ],
)
def test_what_reports_say_now_is_left_as_it_is(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    reason = compare_metadata(expected, actual)

    assert reason is not None and described(reason) == reason
    assert "words" not in reason and "'x'" not in reason


def test_text_that_is_not_a_report_of_a_value_is_left_as_it_is() -> None:
    for text in ["", "metadata key 'text': expected", "metadata key 'k': expected 'unterminated, got", "ok"]:
        assert described(text) == text
