"""What `nsmigrate run` shows when a spec file differs from the one its unfinished job was started with
(``orchestrator.spec.differences``): field paths, old → new, nothing secret."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.orchestrator.spec.differences import spec_differences
from nsmigrate.orchestrator.spec.jobspec import parse_spec, spec_to_json


def stored(**overrides: Any) -> dict[str, Any]:
    spec = {
        "name": "edited",
        "source": {"kind": "pinecone", "host": "https://src-abc.svc.pinecone.io"},
        "target": {"kind": "pinecone", "host": "https://dst-abc.svc.pinecone.io"},
        "cleanup": {"mode": "auto"},
        **overrides,
    }
    return spec_to_json(parse_spec(spec))


def test_the_same_spec_has_no_differences() -> None:
    assert spec_differences(stored(), stored()) == []


def test_the_issue_edit_names_both_fields_old_and_new_in_field_order() -> None:
    edited = stored(cleanup={"mode": "never"}, target={"kind": "pinecone", "host": "https://new-abc.svc.pinecone.io"})

    assert spec_differences(stored(), edited) == [
        'target.host: "https://dst-abc.svc.pinecone.io" → "https://new-abc.svc.pinecone.io"',
        'cleanup.mode: "auto" → "never"',
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({"a": 1}, {"a": 2}, ["a: 1 → 2"]),
        ({"a": {"b": True}}, {"a": {"b": False}}, ["a.b: true → false"]),
        ({"a": None}, {"a": {"b": 1}}, ['a: null → {"b": 1}']),
        ({}, {"a": "x"}, ['a: (absent) → "x"']),
        ({"a": "x"}, {}, ['a: "x" → (absent)']),
        ({"a": ["x", "y"]}, {"a": ["x"]}, ['a: ["x", "y"] → ["x"]']),
        # numbers whose names read like secrets are numbers, shown
        (
            {"rate": {"embed_tokens_per_min": 1.0}},
            {"rate": {"embed_tokens_per_min": 2.0}},
            ["rate.embed_tokens_per_min: 1.0 → 2.0"],
        ),
        # names of variables, metadata keys and columns are names, shown
        (
            {"api_key_env": "PINECONE_API_KEY"},
            {"api_key_env": "PINECONE_API_KEY_EU"},
            ['api_key_env: "PINECONE_API_KEY" → "PINECONE_API_KEY_EU"'],
        ),
        ({"key_field": "source_id"}, {"key_field": "src"}, ['key_field: "source_id" → "src"']),
    ],
)
def test_each_kind_of_difference(old: dict[str, Any], new: dict[str, Any], expected: list[str]) -> None:
    assert spec_differences(old, new) == expected


def test_no_secret_is_shown() -> None:
    old = {
        "target": {"host": "https://dst.example.com?api_key=s3cret-old"},
        "enrich": {"constants": {"team": "search", "api_token": "tok-old"}},
        "url": "postgresql://app:pw-old@db/x",
    }
    new = {
        "target": {"host": "https://dst.example.com?api_key=s3cret-new"},
        "enrich": {"constants": {"team": "ads", "api_token": "tok-new"}},
        "url": "postgresql://app:pw-new@db/x",
    }

    shown = "\n".join(spec_differences(old, new))

    for secret in ("s3cret", "tok-", "pw-"):
        assert secret not in shown
    assert "target.host" in shown and "enrich.constants.team" in shown and "url" in shown
    assert "enrich.constants.api_token: *** → ***" in shown  # changed, and said so, but not shown


def test_a_long_value_is_cut() -> None:
    [line] = spec_differences({"description": "a" * 500}, {"description": "b"})

    assert len(line) < 120 and line.endswith('→ "b"')
