"""The record ↔ row mapping of ``orchestrator.pgvector_layout`` over columns as Postgres describes them: every column to
a Pinecone metadata value and back, equal (NULLs, an empty or NULL ``metadata``, nested JSON, text forms), whatever the
columns; what cannot come back equal is refused by id."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nsmigrate.orchestrator import pgvector_rows
from nsmigrate.orchestrator.pgvector_layout import MappingError
from nsmigrate.orchestrator.pgvector_rows import INT_KEYS_KEY, JSON_KEYS_KEY, NULL_METADATA_KEY, TableColumn
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.verification.comparisons import compare_record

#: An application table with a column of the user's own (``tenant_ref``), as ``table_columns`` reads it.
COLUMNS = [
    TableColumn("id", "integer", not_null=True, has_default=True, serial=True),
    TableColumn("chunk_id", "character varying(512)", not_null=True),
    TableColumn("text", "text", not_null=True),
    TableColumn("embedding", "vector(2)", not_null=True),
    TableColumn("depth_level", "integer", has_default=True),
    TableColumn("confidence", "double precision", has_default=True),
    TableColumn("is_leaf", "boolean", has_default=True),
    TableColumn("domain_tags", "text[]"),
    TableColumn("metadata", "jsonb"),
    TableColumn("created_at", "timestamp without time zone", has_default=True),
    TableColumn("tenant_ref", "uuid"),
]


def row(**values: Any) -> dict[str, Any]:
    """A row as ``fetch`` reads it (text forms as text), every column NULL unless given."""
    base: dict[str, Any] = {c.name: None for c in COLUMNS if not c.serial}
    return {**base, "chunk_id": "c-1", "text": "hello", "embedding": [0.5, 0.25], **values}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"metadata": {}},
        {"metadata": {"source": "app", "page": 3, "tags": ["a"], "ok": True}},
        {"metadata": {"origin": {"file": "a.json"}, "scores": [0.5, 1], "none": None, "page": 2}},
        {"depth_level": 0, "confidence": 1.0, "is_leaf": False, "domain_tags": []},
        {"created_at": "2024-05-01 09:30:15.123456", "tenant_ref": "6f1c1b52-6c1e-4a53-9d5f-4c2a0a3b9b11"},
        {"metadata": {"n": 1, "zero": 0, "big": 2**53 + 1, "small": -(2**53), "float": 2.0}},
        {"domain_tags": ["a,b", None, 'say "hi"', "", "NULL"], "depth_level": 2**53 + 1},
        {"confidence": float("nan"), "is_leaf": True, "domain_tags": [None]},
        {"confidence": float("-inf"), "depth_level": -(2**53)},
    ],
)
def test_a_row_goes_to_pinecone_metadata_and_comes_back_equal(values: dict[str, Any]) -> None:
    original = row(**values)
    record = pgvector_rows.row_to_record(original, COLUMNS)
    assert all(isinstance(k, str) for k in record.metadata)
    assert not any(v is None or isinstance(v, dict) for v in record.metadata.values())  # what Pinecone holds
    kept = {k: float(v) if type(v) is int else v for k, v in record.metadata.items()}  # every number a float
    back = pgvector_rows.record_to_row(Record(record.id, record.values, kept), COLUMNS)
    assert json.dumps(back, sort_keys=True) == json.dumps(original, sort_keys=True)  # 1 is not 1.0 here


def test_a_null_metadata_and_nested_values_are_said_so() -> None:
    assert pgvector_rows.row_to_record(row(), COLUMNS).metadata == {"text": "hello", NULL_METADATA_KEY: True}
    nested = pgvector_rows.row_to_record(row(metadata={"origin": {"page": 1}, "flat": "x"}), COLUMNS)
    assert nested.metadata == {"text": "hello", "flat": "x", "origin": '{"page": 1}', JSON_KEYS_KEY: ["origin"]}


def test_a_record_leaves_what_it_does_not_mention_null_and_keeps_its_other_keys_in_metadata() -> None:
    written = pgvector_rows.record_to_row(
        Record("c-2", [0.1, 0.2], {"text": "t", "depth_level": 3.0, "twin": "x"}), COLUMNS
    )
    assert written["depth_level"] == 3 and written["metadata"] == {"twin": "x"}
    assert written["confidence"] is None and written["created_at"] is None and "id" not in written


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"metadata": {"text": "shadow"}}, "holds the key 'text', which is also a column"),
        ({"metadata": {NULL_METADATA_KEY: True}}, f"holds the key '{NULL_METADATA_KEY}'"),
        ({"metadata": ["not", "an", "object"]}, "not a JSON object"),
    ],
)
def test_a_row_whose_way_back_would_differ_is_refused_by_id(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(MappingError, match=reason) as refused:
        pgvector_rows.row_to_record(row(**values), COLUMNS)
    assert "c-1" in str(refused.value)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({}, "has no text"),
        ({"text": "t", "depth_level": 2.5}, "'depth_level' = 2.5 is not integer"),
        ({"text": "t", "is_leaf": "yes"}, "is not boolean"),
        ({"text": "t", "domain_tags": [1]}, r"is not text\[\]"),
        ({"text": "t", "origin": "{", JSON_KEYS_KEY: ["origin"]}, "is no JSON text"),
    ],
)
def test_a_record_that_does_not_map_is_refused_by_id(metadata: dict[str, Any], reason: str) -> None:
    with pytest.raises(MappingError, match=reason) as refused:
        pgvector_rows.record_to_row(Record("bad-1", [0.1, 0.2], metadata), COLUMNS)
    assert "bad-1" in str(refused.value)


def test_what_a_target_table_cannot_hold_is_named_column_by_column() -> None:
    target = [c for c in COLUMNS if c.name != "tenant_ref"]
    target = [TableColumn("created_at", "timestamp with time zone") if c.name == "created_at" else c for c in target]
    target = [TableColumn("depth_level", "text") if c.name == "depth_level" else c for c in target]
    assert pgvector_rows.carry_problems("embeddings_beta", COLUMNS, target) == [
        "table embeddings_beta column depth_level is text, the source's is integer",
        "table embeddings_beta has no column tenant_ref (uuid)",
    ]


def test_a_real_column_cannot_hold_a_double_column_as_it_is() -> None:
    # Both are floats, but a double rounded to a real is another number, and the copy's cast says nothing.
    doubles, reals = [TableColumn("confidence", "double precision")], [TableColumn("confidence", "real")]
    assert pgvector_rows.carry_problems("embeddings_beta", doubles, reals) == [
        "table embeddings_beta column confidence is real, the source's is double precision"
    ]
    assert pgvector_rows.carry_problems("embeddings_beta", reals, doubles) == []  # every real is a double
    zoned = [TableColumn("seen_at", "timestamp with time zone")]
    naive = [TableColumn("seen_at", "timestamp without time zone")]  # as Postgres's format_type() names them
    assert pgvector_rows.carry_problems("embeddings_beta", zoned, naive) == [
        "table embeddings_beta column seen_at is timestamp without time zone, the source's is timestamp with time zone"
    ]
    assert pgvector_rows.carry_problems("embeddings_beta", naive, zoned) == []
    padded, texts = [TableColumn("code", "character(4)")], [TableColumn("code", "text")]
    assert pgvector_rows.carry_problems("embeddings_beta", texts, padded) == [
        "table embeddings_beta column code is character(4), the source's is text"  # 'ab  ' came back 'ab'
    ]
    assert pgvector_rows.carry_problems("embeddings_beta", padded, texts) == []
    narrow, wide = [TableColumn("code", "character varying(8)")], [TableColumn("code", "character varying(64)")]
    assert pgvector_rows.carry_problems("embeddings_beta", wide, narrow) == [
        "table embeddings_beta column code is character varying(8), the source's is character varying(64)"
    ]
    assert pgvector_rows.carry_problems("embeddings_beta", texts, narrow) != []  # blanks past 8 are cut, silently
    assert pgvector_rows.carry_problems("embeddings_beta", narrow, wide) == []
    assert pgvector_rows.carry_problems("embeddings_beta", narrow, texts) == []
    raw, parsed = [TableColumn("extra", "json")], [TableColumn("extra", "jsonb")]
    assert pgvector_rows.carry_problems("embeddings_beta", raw, parsed) == [
        "table embeddings_beta column extra is jsonb, the source's is json"  # {"b":1,"a":2,"a":3} as {"a": 3, "b": 1}
    ]
    assert pgvector_rows.carry_problems("embeddings_beta", parsed, raw) == []
    six = [TableColumn("seen_at", "timestamp(6) without time zone")]  # a time's default precision: nothing rounds
    assert pgvector_rows.carry_problems("embeddings_beta", naive, six) == []
    assert pgvector_rows.carry_problems("embeddings_beta", six, naive) == []


def test_a_target_row_keeping_an_integer_equals_a_pinecone_source_that_could_not_say_so() -> None:
    # Pinecone keeps every number as a float; the application's table may keep it as an integer (a dual write, a
    # sync): equal. The other way, a row's integer that came back a float is a change the comparison names.
    kept_as_integer = pgvector_rows.row_to_record(row(metadata={"page": 3}), COLUMNS)
    from_pinecone = Record("c-1", [0.5, 0.25], {"text": "hello", "page": 3.0})
    assert compare_record(from_pinecone, kept_as_integer, from_pinecone.metadata, 0.0) is None
    reason = compare_record(kept_as_integer, from_pinecone, kept_as_integer.metadata, 0.0)
    assert reason is not None and INT_KEYS_KEY in reason
