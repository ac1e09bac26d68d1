"""Records as documents of a Pinecone document index (API 2026-07). Pure, no I/O.

A record becomes a document as Pinecone's guide to the Documents API maps it: its id is the document's ``_id``, its
dense values go into the index's dense field, its sparse values into the sparse field, and each metadata key becomes
a top-level field. A document refuses some keys a vector's metadata may have: a name starting with ``_`` or ``$``,
and the dense or sparse field's own name. Such a record is refused by id with the keys named, never written without
them; a metadata key named like a full-text field of the schema fills that field (its value must be text).

Back from the index, every field but ``_id`` and the two vector fields is metadata again, so a record that went in
comes out equal (numbers come back as floats, as Pinecone keeps them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import RECORD_ID_MAX_CHARS  # a document's _id too
from nsmigrate.orchestrator.records.vectors import Record, SparseValues

ID_FIELD = "_id"
#: The reserved names a classic (vectors API) index reports for its vectors: such an index is no document index.
CLASSIC_FIELDS = frozenset({"_values", "_sparse_values"})


@dataclass(frozen=True)
class DocumentFields:
    """The fields of a document index's schema that a record's parts go to: ``dense`` (its values), ``sparse`` (its
    sparse values), ``text`` (full-text fields, which metadata keys of those names fill)."""

    dense: str | None
    sparse: str | None = None
    text: frozenset[str] = frozenset()

    @property
    def vector_fields(self) -> frozenset[str]:
        return frozenset(name for name in (self.dense, self.sparse) if name is not None)

    @classmethod
    def from_schema(cls, fields: Mapping[str, Mapping[str, Any]], *, index: str = "the index") -> DocumentFields:
        """The fields of ``schema.fields`` as ``describe_index`` answers them (2026-07 ``IndexSchema``)."""
        if not fields or set(fields) <= CLASSIC_FIELDS:
            raise StoreError(
                f"{index} is not a document index: its schema is {sorted(fields)}",
                hint="a document target needs an index created from a schema with a dense_vector field of its own",
            )
        by_type: dict[str, list[str]] = {}
        for name, config in fields.items():
            by_type.setdefault(str(config.get("type")), []).append(name)
        dense, sparse = by_type.get("dense_vector", []), by_type.get("sparse_vector", [])
        text = [n for n in by_type.get("string", []) if fields[n].get("full_text_search") is not None]
        return cls(dense[0] if dense else None, sparse[0] if sparse else None, frozenset(text))


def refused_keys(metadata: Mapping[str, Any], fields: DocumentFields) -> list[str]:
    """The metadata keys a document cannot carry as top-level fields, in order."""
    return [k for k in metadata if k.startswith(("_", "$")) or k in fields.vector_fields]


def document_problems(record: Record, fields: DocumentFields) -> list[str]:
    """Why the document index would refuse ``record`` as a document, or lose part of it (empty: it would not)."""
    problems = []
    if not record.id.isascii() or not 1 <= len(record.id) <= RECORD_ID_MAX_CHARS:
        problems.append(f"its id is not 1-{RECORD_ID_MAX_CHARS} ASCII characters")
    keys = refused_keys(record.metadata, fields)
    if keys:
        problems.append(f"metadata keys {keys} cannot be document fields (reserved: '_…', '$…', the vector fields)")
    if fields.dense is None and len(record.values):
        problems.append("the index has no dense_vector field for its values")
    if record.sparse_values is not None and fields.sparse is None:
        problems.append("the index has no sparse_vector field for its sparse values")
    not_text = sorted(k for k in fields.text & set(record.metadata) if not isinstance(record.metadata[k], str))
    if not_text:
        problems.append(f"metadata {not_text} would fill full-text fields but are not text")
    return problems


def to_document(record: Record, fields: DocumentFields, values: Any) -> dict[str, Any]:
    """``record`` as a document; ``values``: its dense values as they go on the wire. Check ``document_problems``
    first."""
    document: dict[str, Any] = {ID_FIELD: record.id}
    if fields.dense is not None:
        document[fields.dense] = values
    if record.sparse_values is not None and fields.sparse is not None:
        document[fields.sparse] = record.sparse_values.to_json()
    document.update(record.metadata)
    return document


def from_document(document: Mapping[str, Any], fields: DocumentFields) -> Record:
    """A fetched document as the record it holds."""
    sparse = document.get(fields.sparse) if fields.sparse is not None else None
    sparse_values = None
    if isinstance(sparse, Mapping) and sparse.get("indices"):
        sparse_values = SparseValues(
            tuple(int(i) for i in sparse["indices"]), tuple(float(v) for v in sparse["values"])
        )
    values: Sequence[float] = document.get(fields.dense, []) if fields.dense is not None else []
    skipped = {ID_FIELD, *fields.vector_fields}
    metadata = {k: v for k, v in document.items() if k not in skipped}
    return Record(id=str(document[ID_FIELD]), values=values, metadata=metadata, sparse_values=sparse_values)
