"""A document index's schema (API 2026-07), and the documents it accepts.

Pure rules, no I/O: what ``POST /indexes`` may declare (``read_schema``), how ``describe_index`` writes it back
(``DocumentSchema.fields_json``), and whether a document or a patch fits it (``check_document``, ``check_patch``).
The rules are the ones ``db_control_2026-07.oas.yaml`` (``CreateIndexSchema``) and ``db_data_2026-07.oas.yaml``
(``DocumentRecord``) state; refusals are ``_Refusal`` s the data plane turns into its error body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from nsmigrate_sandbox.pinecone_server import (
    METRICS,
    _as_vector,
    _bad,
    _is_number,
    _Refusal,
    _sparse_values,
    check_metadata_value,
)

RESERVED_DENSE = "_values"
RESERVED_SPARSE = "_sparse_values"
MAX_FIELD_NAME_BYTES = 64
MAX_FULL_TEXT_FIELDS = 100
MAX_DESCRIPTION_BYTES = 256
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024  # per document and per request
MAX_TEXT_BYTES = 100 * 1024  # per full-text value
MAX_TEXT_TOKENS = 10_000
MAX_DOCUMENT_ID_LENGTH = 512
_ASCII_ID = re.compile(r"[\x01-\x7f]+")
_TOKEN = re.compile(r"\w+")
_FTS_KEYS = {"language", "stemming", "stop_words", "ngram"}
_NGRAM_KEYS = {"min_gram", "max_gram", "prefix_only"}
#: Field types a 2026-07 schema cannot declare, and why (the spec's words, shortened).
_METADATA = "fields are metadata: include the values in documents and they are indexed for filtering"
_UNDECLARABLE = {
    "semantic_text": "semantic_text fields cannot be declared in a schema; create the index with create-for-model",
    **{kind: f"{kind} {_METADATA}" for kind in ("float", "number", "boolean", "string_list")},
}


def tokens(text: str) -> list[str]:
    """The words of a full-text value: lower-cased runs of letters and digits (no stemming, no stop words)."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class DenseField:
    name: str
    dimension: int
    metric: str
    description: str | None = None


@dataclass(frozen=True)
class SparseField:
    name: str
    description: str | None = None


@dataclass(frozen=True)
class TextField:
    """A ``string`` field with ``full_text_search``: its analysis settings are kept and described, not applied."""

    name: str
    language: str = "en"
    stemming: bool = False
    stop_words: bool = False
    ngram: dict[str, Any] | None = None
    description: str | None = None


@dataclass(frozen=True)
class DocumentSchema:
    """The searched fields of a document index: at most one dense, one sparse, and up to 100 full-text fields."""

    dense: DenseField | None = None
    sparse: SparseField | None = None
    text: tuple[TextField, ...] = ()

    @property
    def dimension(self) -> int:
        return self.dense.dimension if self.dense is not None else 0

    @property
    def metric(self) -> str:
        return self.dense.metric if self.dense is not None else "dotproduct"

    @property
    def text_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.text)

    @property
    def vector_names(self) -> frozenset[str]:
        return frozenset(f.name for f in (self.dense, self.sparse) if f is not None)

    def fields_json(self) -> dict[str, Any]:
        """``schema.fields`` as ``describe_index`` writes them (``IndexSchema`` of the 2026-07 spec)."""
        fields: dict[str, Any] = {}
        if self.dense is not None:
            fields[self.dense.name] = {
                "type": "dense_vector",
                "dimension": self.dense.dimension,
                "metric": self.dense.metric,
                "description": self.dense.description,
            }
        if self.sparse is not None:
            fields[self.sparse.name] = {"type": "sparse_vector", "description": self.sparse.description}
        for text in self.text:
            fts: dict[str, Any] = {"language": text.language, "stemming": text.stemming, "stop_words": text.stop_words}
            if text.ngram is not None:
                fts["ngram"] = dict(text.ngram)
            fields[text.name] = {"type": "string", "description": text.description, "full_text_search": fts}
        return fields


@dataclass(frozen=True)
class ClassicSchema:
    """A schema of only ``_values`` and/or ``_sparse_values``: a classic index served by the vectors API."""

    dimension: int | None
    metric: str
    sparse: bool


# --- creation ----------------------------------------------------------------------------------------------------


def _description(name: str, config: dict[str, Any]) -> str | None:
    description = config.get("description")
    if description is None:
        return None
    if not isinstance(description, str) or len(description.encode()) > MAX_DESCRIPTION_BYTES:
        raise _bad(f"Field '{name}': description must be a string of at most {MAX_DESCRIPTION_BYTES} bytes")
    return description


def _only_keys(name: str, config: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise _bad(f"Field '{name}' has unknown properties {unknown}; allowed: {sorted(allowed)}")


def _dense(name: str, config: dict[str, Any]) -> DenseField:
    _only_keys(name, config, {"type", "dimension", "metric", "description"})
    dimension, metric = config.get("dimension"), config.get("metric")
    if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= 20_000:
        raise _bad(f"Field '{name}': dimension must be an integer from 1 to 20000, got {dimension!r}")
    if metric not in METRICS:
        raise _bad(f"Field '{name}': metric must be one of {list(METRICS)}, got {metric!r}")
    return DenseField(name, dimension, str(metric), _description(name, config))


def _full_text(name: str, config: dict[str, Any]) -> TextField:
    _only_keys(name, config, {"type", "full_text_search", "description"})
    fts = config.get("full_text_search")
    if not isinstance(fts, dict):
        raise _bad(
            f"Field '{name}': a string field needs a full_text_search object; string metadata is not declared in "
            "the schema, it is indexed for filtering from the documents"
        )
    _only_keys(f"{name}.full_text_search", fts, _FTS_KEYS)
    language, stemming, stop_words = fts.get("language", "en"), fts.get("stemming", False), fts.get("stop_words", False)
    if not isinstance(language, str) or not isinstance(stemming, bool) or not isinstance(stop_words, bool):
        raise _bad(f"Field '{name}': language must be a string, stemming and stop_words booleans")
    if stop_words and not stemming:
        raise _bad(f"Field '{name}': stop_words requires stemming: true")
    ngram = fts.get("ngram")
    if ngram is not None:
        if not isinstance(ngram, dict) or stemming or stop_words:
            raise _bad(f"Field '{name}': ngram is an object and cannot be combined with stemming or stop_words")
        _only_keys(f"{name}.full_text_search.ngram", ngram, _NGRAM_KEYS)
        low, high = ngram.get("min_gram"), ngram.get("max_gram")
        if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 10 for n in (low, high)) or (
            low > high  # type: ignore[operator]
        ):
            raise _bad(f"Field '{name}': ngram needs 1 <= min_gram <= max_gram <= 10")
        ngram = {"min_gram": low, "max_gram": high, "prefix_only": bool(ngram.get("prefix_only", False))}
    return TextField(name, language, stemming, stop_words, ngram, _description(name, config))


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise _bad("Schema field names must be non-empty strings")
    if len(name.encode()) > MAX_FIELD_NAME_BYTES:
        raise _bad(f"Schema field name '{name}' is longer than {MAX_FIELD_NAME_BYTES} bytes")
    if name.startswith("$"):
        raise _bad(f"Schema field name '{name}' must not start with '$', which introduces a filter operator")
    return name


def _classic(fields: dict[str, Any]) -> ClassicSchema:
    dense, sparse = fields.get(RESERVED_DENSE), fields.get(RESERVED_SPARSE)
    for name, config, kind in ((RESERVED_DENSE, dense, "dense_vector"), (RESERVED_SPARSE, sparse, "sparse_vector")):
        if config is None:
            continue
        if not isinstance(config, dict) or config.get("type") != kind:
            raise _bad(f"Reserved field '{name}' must be of type {kind}")
        if "description" in config:
            raise _bad(f"Reserved field '{name}' does not accept a description")
    if dense is None:
        return ClassicSchema(None, "dotproduct", True)
    field = _dense(RESERVED_DENSE, dense)
    return ClassicSchema(field.dimension, field.metric, sparse is not None)


def read_schema(schema: Any) -> DocumentSchema | ClassicSchema:
    """A create request's ``schema``, checked as ``CreateIndexSchema`` says; 400 naming the first thing wrong."""
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), dict):
        raise _Refusal(422, "Failed to deserialize the JSON body into the target type: schema: missing field `fields`")
    fields: dict[str, Any] = schema["fields"]
    if not fields:
        raise _bad("schema.fields must declare at least one dense_vector, sparse_vector or full-text string field")
    names = [_checked_name(name) for name in fields]
    reserved = [n for n in names if n.startswith("_")]
    if reserved:
        if set(reserved) <= {RESERVED_DENSE, RESERVED_SPARSE} and len(reserved) == len(names):
            return _classic(fields)
        raise _bad(
            f"Schema field names starting with '_' are reserved ({', '.join(reserved)}); only '_values' and/or "
            "'_sparse_values' are accepted, and only as the whole schema"
        )
    dense: list[DenseField] = []
    sparse: list[SparseField] = []
    text: list[TextField] = []
    for name, config in fields.items():
        if not isinstance(config, dict) or not isinstance(config.get("type"), str):
            raise _bad(f"Field '{name}' must be an object with a type")
        kind = config["type"]
        if kind == "dense_vector":
            dense.append(_dense(name, config))
        elif kind == "sparse_vector":
            _only_keys(name, config, {"type", "description"})
            sparse.append(SparseField(name, _description(name, config)))
        elif kind == "string":
            text.append(_full_text(name, config))
        elif kind in _UNDECLARABLE:
            raise _bad(f"Field '{name}': {_UNDECLARABLE[kind]}")
        else:
            raise _bad(f"Field '{name}' has unknown type {kind!r}; use dense_vector, sparse_vector or string")
    if len(dense) > 1 or len(sparse) > 1:
        raise _bad("A schema declares at most one dense_vector and one sparse_vector field")
    if len(text) > MAX_FULL_TEXT_FIELDS:
        raise _bad(f"A schema declares at most {MAX_FULL_TEXT_FIELDS} full_text_search fields, got {len(text)}")
    return DocumentSchema(dense[0] if dense else None, sparse[0] if sparse else None, tuple(text))


# --- documents ---------------------------------------------------------------------------------------------------


def check_id(value: Any, what: str = "_id") -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{what} must be a non-empty string")
    if len(value) > MAX_DOCUMENT_ID_LENGTH or not _ASCII_ID.fullmatch(value):
        raise _bad(f"{what} {value[:80]!r} must be 1-{MAX_DOCUMENT_ID_LENGTH} ASCII characters")
    return value


def _check_field_name(name: str) -> None:
    if name.startswith(("_", "$")):
        raise _bad(f"field '{name}': field names starting with '_' or '$' are reserved")


def _metadata_value(name: str, value: Any) -> Any:
    check_metadata_value(name, value)
    return float(value) if _is_number(value) else value  # numbers are kept as 64-bit floats, as for vectors


def _text_value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(f"field '{name}' is a full-text field: its value must be a string")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise _bad(f"field '{name}': a full-text value is at most 100 KB")
    if len(tokens(value)) > MAX_TEXT_TOKENS:
        raise _bad(f"field '{name}': a full-text value is at most {MAX_TEXT_TOKENS} tokens")
    return value


@dataclass
class Document:
    """A checked document as the index keeps it: the dense values (empty without a dense field), the sparse values,
    and every other field (full-text and metadata) by name."""

    id: str
    values: np.ndarray
    sparse: dict[str, Any] | None
    fields: dict[str, Any]


def check_value(schema: DocumentSchema, name: str, value: Any) -> Any:
    """One field's value as the index keeps it, checked against the type the schema declares for ``name``."""
    _check_field_name(name)
    if schema.dense is not None and name == schema.dense.name:
        return _as_vector(value, schema.dense.dimension, f"field '{name}':")
    if schema.sparse is not None and name == schema.sparse.name:
        if not isinstance(value, dict) or not value.get("indices"):
            raise _bad(f"field '{name}' is a sparse_vector field: its value must be {{indices, values}}, not empty")
        return _sparse_values(value, "dotproduct")
    if name in schema.text_names:
        return _text_value(name, value)
    return _metadata_value(name, value)


def build_document(schema: DocumentSchema, doc_id: str, fields: dict[str, Any]) -> Document:
    """A document from checked field values; refused unless it has a searched field and every required one."""
    dense = schema.dense.name if schema.dense is not None else None
    sparse = schema.sparse.name if schema.sparse is not None else None
    if dense is not None and dense not in fields:
        raise _bad(f"document '{doc_id}' lacks the dense_vector field '{dense}', which every document carries")
    searched = schema.vector_names | schema.text_names
    if not (set(fields) & searched):
        raise _bad(
            f"document '{doc_id}' has no field of the index schema ({', '.join(sorted(searched))}); "
            "a document with only _id and metadata is refused"
        )
    values = fields[dense] if dense is not None else np.empty(0, np.float32)
    rest = {k: v for k, v in fields.items() if k not in (dense, sparse)}
    return Document(doc_id, values, fields.get(sparse) if sparse else None, rest)


def check_document(schema: DocumentSchema, raw: Any, position: int) -> Document:
    """One upserted document, checked whole; the refusal names its position and ``_id``."""
    try:
        if not isinstance(raw, dict):
            raise _bad("a document must be a JSON object")
        doc_id = check_id(raw.get("_id"))
        if len(orjson.dumps(raw)) > MAX_DOCUMENT_BYTES:
            raise _Refusal(413, "a document is at most 2 MB")
        fields = {name: check_value(schema, name, value) for name, value in raw.items() if name != "_id"}
        return build_document(schema, doc_id, fields)
    except _Refusal as refusal:
        raise _Refusal(refusal.status, f"Document at position {position}: {refusal.message}") from refusal


def document_json(doc_id: str, schema: DocumentSchema, values: np.ndarray, sparse: Any, fields: dict[str, Any]) -> dict:
    """A stored document as fetch and search write it: ``_id``, the vector fields, then the others."""
    out: dict[str, Any] = {"_id": doc_id}
    if schema.dense is not None:
        out[schema.dense.name] = values.tolist()
    if schema.sparse is not None and sparse is not None:
        out[schema.sparse.name] = sparse
    out.update(fields)
    return out
