"""Records as documents of a Pinecone document index (``orchestrator.records.documents``): where each part goes,
which metadata keys a document refuses, and the way back."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.records.documents import (
    DocumentFields,
    document_problems,
    from_document,
    refused_keys,
    to_document,
)
from nsmigrate.orchestrator.records.vectors import Record, SparseValues

SCHEMA = {
    "embedding": {"type": "dense_vector", "dimension": 2, "metric": "cosine", "description": None},
    "keywords": {"type": "sparse_vector"},
    "chunk_text": {"type": "string", "full_text_search": {"language": "en"}},
    "genre": {"type": "string", "filterable": True},  # metadata reported in the schema: not a full-text field
}
FIELDS = DocumentFields.from_schema(SCHEMA)


def test_fields_from_a_described_schema() -> None:
    assert DocumentFields("embedding", "keywords", frozenset({"chunk_text"})) == FIELDS
    assert DocumentFields.from_schema({"body": {"type": "string", "full_text_search": {}}}).dense is None


@pytest.mark.parametrize(
    "fields", [{}, {"_values": {"type": "dense_vector"}, "_sparse_values": {"type": "sparse_vector"}}]
)
def test_a_classic_index_is_not_a_document_index(fields: dict[str, dict[str, str]]) -> None:
    with pytest.raises(StoreError, match="not a document index"):
        DocumentFields.from_schema(fields, index="idx")


def test_a_record_becomes_a_document_and_comes_back_equal() -> None:
    record = Record(
        "rec-1",
        [0.5, -1.0],
        {"chunk_text": "some words", "genre": "news", "n": 3.0, "tags": ["a"]},
        SparseValues((4, 9), (0.25, 2.0)),
    )
    assert document_problems(record, FIELDS) == []
    document = to_document(record, FIELDS, list(record.values))
    assert document == {
        "_id": "rec-1",
        "embedding": [0.5, -1.0],
        "keywords": {"indices": [4, 9], "values": [0.25, 2.0]},
        "chunk_text": "some words",
        "genre": "news",
        "n": 3.0,
        "tags": ["a"],
    }
    assert from_document(document, FIELDS) == record


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (Record("r", [1, 2], {"_private": 1, "$op": 2, "ok": 3}), "metadata keys ['_private', '$op']"),
        (Record("r", [1, 2], {"embedding": "x", "keywords": "y"}), "metadata keys ['embedding', 'keywords']"),
        (Record("é", [1, 2]), "not 1-512 ASCII characters"),
        (Record("r" * 513, [1, 2]), "not 1-512 ASCII characters"),
        (Record("r", [1, 2], {"chunk_text": 7}), "['chunk_text'] would fill full-text fields but are not text"),
    ],
)
def test_what_a_document_refuses_is_named(record: Record, problem: str) -> None:
    assert any(problem in p for p in document_problems(record, FIELDS)), document_problems(record, FIELDS)


def test_values_or_sparse_values_with_no_field_to_go_to_are_refused_not_dropped() -> None:
    text_only = DocumentFields(None, None, frozenset({"body"}))
    record = Record("r", [1.0], {"body": "x"}, SparseValues((1,), (1.0,)))
    problems = document_problems(record, text_only)
    assert "the index has no dense_vector field for its values" in problems
    assert "the index has no sparse_vector field for its sparse values" in problems
    assert refused_keys({"_a": 1, "b": 2, "$c": 3}, text_only) == ["_a", "$c"]
