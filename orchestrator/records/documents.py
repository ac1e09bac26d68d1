"""Records as documents of a Pinecone document index (API 2026-07). Pure, no I/O.

A record becomes a document as Pinecone's guide to the Documents API maps it: its id is the document's ``_id``, its
dense values go into the index's dense field, its sparse values into the sparse field, and each metadata key becomes
a top-level field. A document refuses some keys a vector's metadata may have: a name starting with ``_`` or ``$``,
and the dense or sparse field's own name. Such a record is refused by id with the keys named, never written without
them; a metadata key named like a full-text field of the schema fills that field (its value must be text). A spec's
``documents.rename`` writes a key under another field name, and reads it back under its own; the plan refuses the keys
a sample holds with the rename that fixes them (``refuse_keys``), before anything is written.

Back from the index, every field but ``_id`` and the two vector fields is metadata again, so a record that went in
comes out equal (numbers come back as floats, as Pinecone keeps them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nsmigrate.orchestrator.errors import PlanError, StoreError
from nsmigrate.orchestrator.limits import DOCUMENT_RESERVED_PREFIXES, RECORD_ID_MAX_CHARS  # a document's _id too
from nsmigrate.orchestrator.records.vectors import Record, SparseValues

ID_FIELD = "_id"
#: The reserved names a classic (vectors API) index reports for its vectors: such an index is no document index.
CLASSIC_FIELDS = frozenset({"_values", "_sparse_values"})


class Mapped(Protocol):
    """A spec's ``documents`` mapping (``orchestrator.spec.stores.DocumentMapping``), as read here."""

    # Read-only: the spec's models are frozen, so a settable protocol member would not match them.
    @property
    def dense_field(self) -> str: ...
    @property
    def sparse_field(self) -> str | None: ...
    @property
    def text_fields(self) -> Sequence[str]: ...
    @property
    def rename(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class DocumentFields:
    """The fields of a document index's schema that a record's parts go to: ``dense`` (its values), ``sparse`` (its
    sparse values), ``text`` (full-text fields, which metadata keys of those names fill)."""

    dense: str | None
    sparse: str | None = None
    text: frozenset[str] = frozenset()
    #: (metadata key, field name) pairs: a key written under another name (``documents.rename``).
    renames: tuple[tuple[str, str], ...] = ()

    @property
    def vector_fields(self) -> frozenset[str]:
        return frozenset(name for name in (self.dense, self.sparse) if name is not None)

    @classmethod
    def of(cls, mapping: Mapped) -> DocumentFields:
        """The fields a spec's ``documents`` mapping names."""
        renames = tuple(sorted(mapping.rename.items()))
        return cls(mapping.dense_field, mapping.sparse_field, frozenset(mapping.text_fields), renames)

    def field_of(self, key: str) -> str:
        """The field a metadata key is written as."""
        return dict(self.renames).get(key, key)

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


def refused_keys(metadata: Iterable[str], fields: DocumentFields) -> list[str]:
    """The metadata keys a document cannot carry as top-level fields (under their rename), in order."""
    problems = key_problems(metadata, fields)
    return [k for k in metadata if k in problems]


def key_problems(keys: Iterable[str], fields: DocumentFields) -> dict[str, str]:
    """Metadata key → why a document refuses it (empty: every key is written as a field). ``keys`` are found
    together (one record's, or a sample's), so a rename onto a key that is also kept is caught."""
    keys = list(dict.fromkeys(keys))
    written: dict[str, list[str]] = {}
    for key in keys:
        written.setdefault(fields.field_of(key), []).append(key)
    problems: dict[str, str] = {}
    renamed_onto = {name: key for key, name in fields.renames if name != key}
    for key in keys:
        name = fields.field_of(key)
        if name.startswith(DOCUMENT_RESERVED_PREFIXES):
            problems[key] = f"field names starting with {name[0]!r} are reserved"
        elif name in fields.vector_fields:
            kind = "dense_vector" if name == fields.dense else "sparse_vector"
            problems[key] = f"{name!r} is the index's {kind} field"
        elif len(written[name]) > 1:
            problems[key] = f"{sorted(written[name])} would all be written as field {name!r}"
        elif name == key and key in renamed_onto:  # read back, the field is taken for the renamed key
            problems[key] = f"field {key!r} is where {renamed_onto[key]!r} is renamed to: it would come back as that"
    return problems


#: How many refused keys a message names (the rest are counted).
SHOWN_KEYS = 10


def suggested_rename(key: str, taken: Iterable[str]) -> str:
    """A field name a refused key could take: without its reserved prefix, else with ``_field`` added."""
    taken = set(taken)
    base = key.lstrip("".join(DOCUMENT_RESERVED_PREFIXES)) or "field"
    name = base if base != key and base not in taken else f"{base}_field"
    while name in taken:
        name += "_"
    return name


def refuse_keys(keys: Iterable[str], fields: DocumentFields, **ids: Any) -> None:
    """Raise a ``PlanError`` naming every key of ``keys`` a document refuses, why, and the ``rename`` that fixes
    them all; nothing to do when there is none."""
    keys = set(keys)
    problems = key_problems(sorted(keys), fields)
    if not problems:
        return
    refused = sorted(problems)
    taken = keys | fields.vector_fields | {name for _, name in fields.renames}
    fixes = dict(fields.renames)
    for key in refused:
        fixes[key] = suggested_rename(key, taken)
        taken.add(fixes[key])
    shown = "; ".join(f"{k!r}: {problems[k]}" for k in refused[:SHOWN_KEYS])
    more = f"; … {len(refused) - SHOWN_KEYS} more" if len(refused) > SHOWN_KEYS else ""
    rename = ", ".join(f"{k!r}: {v!r}" for k, v in fixes.items())
    raise PlanError(
        f"{len(refused)} metadata key(s) cannot be document fields, and nothing is dropped: {shown}{more}",
        hint=f"give them other names in target.documents.rename, e.g. rename: {{{rename}}}",
        **ids,
    )


def document_problems(record: Record, fields: DocumentFields) -> list[str]:
    """Why the document index would refuse ``record`` as a document, or lose part of it (empty: it would not)."""
    problems = []
    if not record.id.isascii() or not 1 <= len(record.id) <= RECORD_ID_MAX_CHARS:
        problems.append(f"its id is not 1-{RECORD_ID_MAX_CHARS} ASCII characters")
    refused = key_problems(record.metadata, fields)
    if refused:
        why = "; ".join(f"{k!r}: {reason}" for k, reason in refused.items())
        problems.append(f"metadata keys {list(refused)} cannot be document fields ({why})")
    if fields.dense is None and len(record.values):
        problems.append("the index has no dense_vector field for its values")
    if record.sparse_values is not None and fields.sparse is None:
        problems.append("the index has no sparse_vector field for its sparse values")
    not_text = sorted(
        k for k, v in record.metadata.items() if fields.field_of(k) in fields.text and not isinstance(v, str)
    )
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
    for key, value in record.metadata.items():
        document[fields.field_of(key)] = value
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
    keys = {name: key for key, name in fields.renames}
    metadata = {keys.get(k, k): v for k, v in document.items() if k not in skipped}
    return Record(id=str(document[ID_FIELD]), values=values, metadata=metadata, sparse_values=sparse_values)
