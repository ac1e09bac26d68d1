"""How a document index filters and ranks (API 2026-07 ``documents/search``, and the filters of fetch, delete and
update). Pure functions over stored documents; the handlers are in ``sandbox.documents``.

- **Filters** are Pinecone's metadata filters over a document's non-vector fields. A vector field cannot be
  filtered; a full-text field takes only the text-match operators (``$match_phrase``, ``$match_all``,
  ``$match_any``), and those only in a search, as the spec says of delete and update.
- **Dense and sparse scoring** is exact (every document scored): the dense field is searched by the index's own
  query (cosine, dot product or squared euclidean, ascending), the sparse field by the dot product over shared
  indices; a document that shares no sparse index with the query is not a match.
- **Text scoring** approximates Pinecone's BM25: Okapi BM25 (k1 1.2, b 0.75) over lower-cased word tokens of each
  named field, idf over the namespace's documents that have the field; no stemming, stop words or n-grams whatever
  the field's settings, so a stemmed field matches fewer documents here than on Pinecone. A document no query word
  reaches is not a match. Several fields or several text clauses add their scores (clauses are OR'd).
- ``query_string`` (Lucene syntax) is refused: the local data plane does not parse it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nsmigrate_sandbox.document_schema import DocumentSchema, tokens
from nsmigrate_sandbox.pinecone_server import (
    MAX_TOP_K,
    Predicate,
    _as_vector,
    _bad,
    _combine,
    _operator,
    _sparse_values,
)

MATCH_OPERATORS = ("$match_phrase", "$match_all", "$match_any")
MAX_QUERY_BYTES = 10 * 1024
MAX_CLAUSES = 100
_BM25_K1, _BM25_B = 1.2, 0.75


# --- filters -------------------------------------------------------------------------------------------------------


def _text_match(field: str, op: str, operand: Any) -> Predicate:
    if not isinstance(operand, str) or not tokens(operand):
        raise _bad(f"Filter operator {op} on field '{field}' needs a string with at least one word")
    wanted = tokens(operand)

    def matches(fields: Mapping[str, Any]) -> bool:
        text = fields.get(field)
        if not isinstance(text, str):
            return False
        have = tokens(text)
        if op == "$match_any":
            return bool(set(wanted) & set(have))
        if op == "$match_all":
            return set(wanted) <= set(have)
        n = len(wanted)
        return any(have[i : i + n] == wanted for i in range(len(have) - n + 1))

    return matches


def _field_condition(schema: DocumentSchema, field: str, condition: Any, search: bool) -> list[Predicate]:
    if field in schema.vector_names:
        raise _bad(f"Field '{field}' is a vector field of the schema and cannot be used in a filter")
    ops = condition if isinstance(condition, dict) else {"$eq": condition}
    if not ops:
        raise _bad(f"Filter for field '{field}' must not be empty")
    if field in schema.text_names:
        for op in ops:
            if op not in MATCH_OPERATORS:
                raise _bad(
                    f"Field '{field}' is a full-text field: filter it with {', '.join(MATCH_OPERATORS)}, not {op}"
                )
        if not search:
            raise _bad(
                "Text-match operators ($match_phrase, $match_all, $match_any) are only supported in search, "
                "since these documents are selected on metadata alone"
            )
        return [_text_match(field, op, operand) for op, operand in ops.items()]
    for op in ops:
        if op in MATCH_OPERATORS:
            raise _bad(f"Filter operator {op} needs a full-text field of the schema; '{field}' is metadata")
    return [_operator(field, op, operand) for op, operand in ops.items()]


def compile_document_filter(schema: DocumentSchema, expression: Any, *, search: bool) -> Predicate:
    """A filter over a document's stored fields, checked against the schema (see the module docstring)."""
    if not isinstance(expression, dict) or not expression:
        raise _bad("filter must be a non-empty JSON object; an empty filter is refused rather than matching everything")
    parts: list[Predicate] = []
    for key, condition in expression.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise _bad(f"Filter operator {key} needs a non-empty array of filters")
            parts.append(_combine(key, [compile_document_filter(schema, sub, search=search) for sub in condition]))
        elif key.startswith("$"):
            raise _bad(f"Unsupported top-level filter operator {key!r}")
        else:
            parts.extend(_field_condition(schema, key, condition, search))
    return lambda md: all(p(md) for p in parts)


# --- scoring -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clause:
    """One checked ``score_by`` clause."""

    type: str
    fields: tuple[str, ...]
    values: np.ndarray | None = None
    sparse: dict[str, Any] | None = None
    query: str = ""


def _clause_fields(raw: dict[str, Any], kind: str) -> tuple[str, ...]:
    if "field" in raw and "fields" in raw:
        raise _bad(f"A {kind} clause takes either field or fields, not both")
    if "fields" in raw:
        names = raw["fields"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _bad(f"A {kind} clause's fields must be a non-empty array of field names")
        return tuple(dict.fromkeys(names))
    if isinstance(raw.get("field"), str):
        return (raw["field"],)
    raise _bad(f"A {kind} clause needs field or fields")


def read_clause(schema: DocumentSchema, raw: Any) -> Clause:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise _bad("Each score_by clause must be an object with a type")
    kind = raw["type"]
    allowed = {
        "dense_vector": {"type", "field", "fields", "values"},
        "sparse_vector": {"type", "field", "fields", "sparse_values"},
        "text": {"type", "field", "fields", "query"},
    }
    if kind == "query_string":
        raise _bad("score_by type query_string (Lucene syntax) is not supported by the local data plane; use text")
    if kind not in allowed:
        raise _bad(f"Unknown score_by type {kind!r}; use dense_vector, sparse_vector, text or query_string")
    unknown = sorted(set(raw) - allowed[kind])
    if unknown:
        raise _bad(f"A {kind} clause does not take {unknown}")
    fields = _clause_fields(raw, kind)
    if kind == "text":
        for name in fields:
            if name not in schema.text_names:
                raise _bad(f"Field '{name}' is not a full-text field of the index schema")
        query = raw.get("query")
        if not isinstance(query, str) or not query.strip():
            raise _bad("A text clause needs a query that is not empty after trimming")
        if len(query.encode()) > MAX_QUERY_BYTES:
            raise _bad("A text clause's query is at most 10 KB")
        return Clause(kind, fields, query=query.strip())
    if len(fields) != 1:
        raise _bad(f"A {kind} clause names exactly one field")
    field = schema.dense if kind == "dense_vector" else schema.sparse
    if field is None or field.name != fields[0]:
        raise _bad(f"Field '{fields[0]}' is not the {kind} field of the index schema")
    if kind == "dense_vector":
        assert schema.dense is not None
        return Clause(kind, fields, values=_as_vector(raw.get("values"), schema.dense.dimension, "Query"))
    sparse = raw.get("sparse_values")
    if not isinstance(sparse, dict) or not sparse.get("indices"):
        raise _bad("A sparse_vector clause needs sparse_values with at least one index")
    return Clause(kind, fields, sparse=_sparse_values(sparse, "dotproduct"))


def read_score_by(schema: DocumentSchema, raw: Any) -> list[Clause]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CLAUSES:
        raise _bad(f"score_by must be an array of 1 to {MAX_CLAUSES} clauses")
    clauses = [read_clause(schema, c) for c in raw]
    if len(clauses) > 1 and any(c.type != "text" for c in clauses):
        raise _bad("A dense_vector or sparse_vector clause must appear on its own in score_by")
    return clauses


def read_top_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise _bad(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {value!r}")
    return value


@dataclass
class Candidate:
    """A document a search may return: its id, dense values, sparse values and other fields."""

    id: str
    values: np.ndarray
    sparse: dict[str, Any] | None
    fields: dict[str, Any]


def _bm25(candidates: Sequence[Candidate], field: str, query: list[str]) -> dict[str, float]:
    docs = [(c.id, tokens(c.fields[field])) for c in candidates if isinstance(c.fields.get(field), str)]
    if not docs:
        return {}
    avg = sum(len(t) for _, t in docs) / len(docs) or 1.0
    df = Counter(term for _, t in docs for term in set(t))
    scores: dict[str, float] = {}
    for doc_id, words in docs:
        tf = Counter(words)
        score = 0.0
        for term in set(query):
            if tf[term]:
                idf = math.log(1 + (len(docs) - df[term] + 0.5) / (df[term] + 0.5))
                norm = tf[term] + _BM25_K1 * (1 - _BM25_B + _BM25_B * len(words) / avg)
                score += idf * tf[term] * (_BM25_K1 + 1) / norm
        if score > 0:
            scores[doc_id] = score
    return scores


def _sparse_dot(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    other = dict(zip(b["indices"], b["values"], strict=True))
    shared = [v * other[i] for i, v in zip(a["indices"], a["values"], strict=True) if i in other]
    return float(sum(shared)) if shared else None


def rank(
    clauses: list[Clause], everyone: Sequence[Candidate], allowed: set[str], top_k: int
) -> list[tuple[Candidate, float | None]]:
    """The ``top_k`` best of the documents in ``allowed`` (those the filter let through) by a sparse clause or text
    clauses, best first, ties by id. ``everyone`` is the namespace (text scoring's statistics are over all of it).
    A dense clause is the index's own query (``IndexStore.query``)."""
    chosen = [c for c in everyone if c.id in allowed]
    by_id = {c.id: c for c in chosen}
    scores: dict[str, float] = {}
    first = clauses[0]
    if first.type == "sparse_vector":
        assert first.sparse is not None
        for c in chosen:
            dot = _sparse_dot(first.sparse, c.sparse) if c.sparse else None
            if dot is not None:
                scores[c.id] = dot
    else:
        for clause in clauses:
            words = tokens(clause.query)
            for field in clause.fields:
                for doc_id, score in _bm25(everyone, field, words).items():
                    if doc_id in by_id:
                        scores[doc_id] = scores.get(doc_id, 0.0) + score

    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top_k]
    return [(by_id[doc_id], score) for doc_id, score in best]
