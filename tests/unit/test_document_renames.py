"""A spec's document mapping (``target.documents``): renamed keys written under their new name and read back under
their own, the keys a document refuses named with the ``rename`` that fixes them, and the spec's own checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import PlanError, SpecError
from nsmigrate.orchestrator.records.documents import (
    DocumentFields,
    document_problems,
    from_document,
    key_problems,
    refuse_keys,
    suggested_rename,
    to_document,
)
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.stores import DocumentMapping

FIELDS = DocumentFields("embedding", "keywords", frozenset({"chunk_text"}))


def test_a_mapping_names_the_fields_records_go_to() -> None:
    mapping = DocumentMapping(text_fields=["chunk_text"], rename={"text": "chunk_text"})

    assert DocumentFields.of(mapping) == DocumentFields(
        "embedding", None, frozenset({"chunk_text"}), (("text", "chunk_text"),)
    )


def test_renamed_keys_are_written_under_their_new_name_and_read_back_under_their_own() -> None:
    fields = DocumentFields.of(DocumentMapping(rename={"_source": "source", "embedding": "embedding_note"}))
    record = Record("r1", [1.0], {"_source": "web", "embedding": "ada-002", "page": 2.0})

    document = to_document(record, fields, [1.0])

    assert document == {"_id": "r1", "embedding": [1.0], "source": "web", "embedding_note": "ada-002", "page": 2.0}
    assert not key_problems(record.metadata, fields)
    assert from_document(document, fields) == record


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("_source", "field names starting with '_' are reserved"),
        ("$weight", "field names starting with '$' are reserved"),
        ("embedding", "'embedding' is the index's dense_vector field"),
        ("keywords", "'keywords' is the index's sparse_vector field"),
    ],
)
def test_a_key_a_document_refuses_is_named_with_why(key: str, why: str) -> None:
    assert key_problems([key, "fine"], FIELDS) == {key: why}


def test_a_rename_onto_a_key_that_is_kept_is_refused_for_both() -> None:
    fields = DocumentFields.of(DocumentMapping(rename={"_source": "source"}))

    problems = key_problems(["_source", "source"], fields)

    assert set(problems) == {"_source", "source"}
    assert "would all be written as field 'source'" in problems["source"]


def test_a_key_named_as_another_keys_rename_is_refused_where_it_is_alone() -> None:
    # Written as field 'source', it would be read back as '_source': verification, a cleanup's proof and a rollback
    # would see another record. Refused in each record that holds it, not only where a sample holds both keys.
    fields = DocumentFields.of(DocumentMapping(rename={"_source": "source"}))
    record = Record("r1", [1.0], {"source": "web"})

    assert from_document(to_document(record, fields, [1.0]), fields).metadata == {"_source": "web"}  # the loss
    assert key_problems(["source"], fields) == {
        "source": "field 'source' is where '_source' is renamed to: it would come back as that"
    }
    assert "'source': field 'source' is where '_source' is renamed to" in document_problems(record, fields)[0]
    assert key_problems(["_source"], fields) == {}


def test_the_plan_refusal_names_every_key_and_the_rename_that_fixes_them() -> None:
    with pytest.raises(PlanError) as info:
        refuse_keys({"_source", "$rank", "embedding", "title"}, FIELDS, target="docs")

    message, hint = str(info.value), info.value.hint or ""
    assert "3 metadata key(s) cannot be document fields, and nothing is dropped" in message
    for key in ("'_source'", "'$rank'", "'embedding'"):
        assert key in message
    assert "target.documents.rename" in hint
    assert "'_source': 'source'" in hint and "'$rank': 'rank'" in hint and "'embedding': 'embedding_field'" in hint
    renamed = (("$rank", "rank"), ("_source", "source"), ("embedding", "embedding_field"))
    refuse_keys({"_source", "$rank", "embedding", "title"}, DocumentFields("embedding", "keywords", renames=renamed))


@given(st.text(min_size=1, max_size=20), st.sets(st.text(max_size=20), max_size=5))
def test_a_suggested_rename_is_a_field_name_not_taken(key: str, taken: set[str]) -> None:
    name = suggested_rename(key, taken)

    assert name not in taken and not name.startswith(("_", "$")) and name != key


def spec_with(documents: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "docs",
        "source": {"kind": "pinecone", "index": "legacy"},
        "target": {"kind": "pinecone", "index": "docs", "documents": documents},
    }


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ({"dense_field": "_values"}, "cannot name a document field"),
        ({"text_fields": ["$text"]}, "cannot name a document field"),
        ({"rename": {"_source": "_src"}}, "cannot name a document field"),
        ({"dense_field": "v", "sparse_field": "v"}, "two different fields"),
        ({"text_fields": ["embedding"]}, "cannot be a text field and a vector field"),
        ({"rename": {"a": "x", "b": "x"}}, "the same name: ['x']"),
        ({"rename": {"a": "embedding"}}, "the same name: ['embedding']"),
    ],
)
def test_a_spec_with_a_bad_document_mapping_is_refused_with_its_path(documents: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_with(documents))

    assert "target.documents" in str(info.value) and message in str(info.value)


def test_a_document_target_writes_documents_not_text_records() -> None:
    raw = spec_with({})
    raw["target"]["records"] = {"text_from": "text"}

    with pytest.raises(SpecError, match="a document index"):
        parse_spec(raw)
    assert parse_spec(spec_with({})).target.documents == DocumentMapping()
