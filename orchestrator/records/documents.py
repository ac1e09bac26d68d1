"""Records as documents of a document index (API 2026-07), and back. Pure: no I/O.

A record's id becomes ``_id``, its values the dense field, its sparse values the sparse field, and each metadata key
a top-level field (under its ``rename``, when the spec gives one). Reading a document back undoes each of these, so a
document read from the target is the record it was written from: verification, the proof before a delete, sync and
rollback compare records whatever the store. A key a document refuses is never dropped: ``key_problems`` names it,
and the plan (or, for a key the plan's sample did not see, the batch) is refused with the ``rename`` that fixes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.records.vectors import Record, SparseValues
from nsmigrate.orchestrator.spec.jobspec import DOCUMENT_RESERVED_PREFIXES, DocumentFields

#: How many refused keys a message names (the rest are counted).
SHOWN_KEYS = 10


def field_of(key: str, fields: DocumentFields) -> str:
    """The document field a metadata key is written as."""
    return fields.rename.get(key, key)


def key_problems(keys: Iterable[str], fields: DocumentFields) -> dict[str, str]:
    """Metadata key → why a document refuses it (empty: every key is written as a field). ``keys`` are the keys
    found together (one record's, or every key of a sample), so a rename onto a key that is also kept is caught."""
    keys = set(keys)
    vectors = {fields.dense_field, fields.sparse_field} - {None}
    written: dict[str, list[str]] = {}
    for key in keys:
        written.setdefault(field_of(key, fields), []).append(key)
    problems: dict[str, str] = {}
    for key in sorted(keys):
        name = field_of(key, fields)
        if name.startswith(DOCUMENT_RESERVED_PREFIXES):
            problems[key] = f"field names starting with {name[0]!r} are reserved"
        elif name in vectors:
            problems[key] = f"{name!r} is the index's {_vector_kind(name, fields)} field"
        elif len(written[name]) > 1:
            problems[key] = f"{sorted(written[name])} would all be written as field {name!r}"
    return problems


def _vector_kind(name: str, fields: DocumentFields) -> str:
    return "dense_vector" if name == fields.dense_field else "sparse_vector"


def suggested_rename(key: str, taken: Iterable[str]) -> str:
    """A field name a refused key could take: without its reserved prefix, else with ``_field`` added."""
    taken = set(taken)
    base = key.lstrip("".join(DOCUMENT_RESERVED_PREFIXES)) or "field"
    name = base if base != key and base not in taken else f"{base}_field"
    while name in taken:
        name += "_"
    return name


def refusal_text(problems: Mapping[str, str], fields: DocumentFields, taken: Iterable[str]) -> tuple[str, str]:
    """The message and the hint of a refusal of ``problems`` (``key_problems``): each key and why, and the
    ``rename`` entries that fix them all."""
    keys = sorted(problems)
    taken = set(taken) | {fields.dense_field, fields.sparse_field or ""} | set(fields.rename.values())
    shown = "; ".join(f"{k!r}: {problems[k]}" for k in keys[:SHOWN_KEYS])
    more = f"; … {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    fixes: dict[str, str] = {}
    for key in keys:
        fixes[key] = suggested_rename(key, taken)
        taken.add(fixes[key])
    rename = ", ".join(f"{k!r}: {v!r}" for k, v in {**fields.rename, **fixes}.items())
    message = f"{len(keys)} metadata key(s) cannot be document fields, and nothing is dropped: {shown}{more}"
    hint = f"give them other names in target.documents.rename, e.g. rename: {{{rename}}}"
    return message, hint


def refuse_keys(keys: Iterable[str], fields: DocumentFields, **ids: Any) -> None:
    """Raise a ``PlanError`` naming every key of ``keys`` a document refuses, with the ``rename`` that fixes it."""
    keys = set(keys)
    problems = key_problems(keys, fields)
    if problems:
        message, hint = refusal_text(problems, fields, keys)
        raise PlanError(message, hint=hint, **ids)


def to_document(record: Record, fields: DocumentFields, values: Any) -> dict[str, Any]:
    """The document ``record`` is written as; ``values``: its dense values as the writer sends them (a JSON
    fragment of the fetched array, or a list). The caller has refused the keys ``key_problems`` names."""
    document: dict[str, Any] = {"_id": record.id, fields.dense_field: values}
    if record.sparse_values is not None:
        if fields.sparse_field is None:
            raise ValueError("a record with sparse values needs target.documents.sparse_field")
        document[fields.sparse_field] = record.sparse_values.to_json()
    for key, value in record.metadata.items():
        document[field_of(key, fields)] = value
    return document


def from_document(document: Mapping[str, Any], fields: DocumentFields) -> Record:
    """The record a document was written from: renames undone, vector fields back in their places."""
    keys = {name: key for key, name in fields.rename.items()}
    metadata: dict[str, Any] = {}
    sparse = None
    for name, value in document.items():
        if name == "_id" or name == fields.dense_field:
            continue
        if name == fields.sparse_field:
            if value:
                sparse = SparseValues(tuple(int(i) for i in value["indices"]), tuple(float(v) for v in value["values"]))
            continue
        metadata[keys.get(name, name)] = value
    values = document.get(fields.dense_field) or []
    return Record(id=str(document["_id"]), values=list(values), metadata=metadata, sparse_values=sparse)
