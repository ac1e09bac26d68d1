"""The Documents API of a document index (API 2026-07): ``POST /namespaces/{namespace}/documents/{upsert, fetch,
list, search, delete, update}``, as ``db_data_2026-07.oas.yaml`` writes them, and the refusal of the wrong API.

An index made from a schema (``sandbox.document_schema``) is a document index: it answers only the Documents API,
the namespace operations and ``describe_index_stats``; a vector or integrated index answers the Documents API with
400 naming the API it speaks, and a document index answers the vectors and records APIs the same way (the 2026-07
spec gives no status for the latter; 400 is the sandbox's choice). Documents API errors are the spec's
``ErrorResponse`` (``{"status", "error": {"code", "message"}}``); upsert, delete and update answer 202.

Documents are kept in the index's ``IndexStore`` like records (dense values, sparse values, the other fields as
metadata), so namespaces, counts and stats see them. Filters and ranking: ``sandbox.document_search``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from nsmigrate_sandbox.document_schema import (
    MAX_DOCUMENT_BYTES,
    Document,
    DocumentSchema,
    build_document,
    check_document,
    check_id,
    check_value,
    document_json,
)
from nsmigrate_sandbox.document_search import Candidate, compile_document_filter, rank, read_score_by, read_top_k
from nsmigrate_sandbox.pinecone_server import (
    _CONTROL_CODES,
    DEFAULT_NAMESPACE_NAME,
    MAX_IDS_PER_REQUEST,
    MAX_LIST_LIMIT,
    IndexSpec,
    _bad,
    _display_name,
    _namespace_name,
    _page,
    _parse_json,
    _Record,
    _Refusal,
    _Reply,
)
from nsmigrate_sandbox.pinecone_server import (
    _DOCUMENT_OPS as DOCUMENT_OPS,
)

if TYPE_CHECKING:
    from nsmigrate_sandbox.pinecone_server import IndexService

MAX_UPSERT_DOCUMENTS = 1000
MAX_FETCH_LIMIT = 10_000
DEFAULT_PAGE = 100
#: The vectors and records APIs, which a document index refuses.
LEGACY_OPS = frozenset(
    {"upsert", "fetch", "fetch_by_metadata", "list", "query", "delete", "update", "upsert_records", "search_records"}
)
#: The data plane's ErrorResponse codes: the control plane's, less 422 (not in the data plane's list), and more.
_ERROR_CODES = {
    **{status: code for status, code in _CONTROL_CODES.items() if status != 422},
    413: "PAYLOAD_TOO_LARGE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "SERVICE_UNAVAILABLE",
}
DOCUMENTS_API = "the Documents API (/namespaces/{namespace}/documents/upsert|fetch|list|search|delete|update)"


def document_index(name: str, schema: DocumentSchema) -> IndexSpec:
    """The ``IndexSpec`` of a document index: its dimension and metric are its dense field's (0 without one)."""
    return IndexSpec(name, schema.dimension, schema.metric, documents=schema)


def document_error(refusal: _Refusal) -> _Reply:
    """A Documents API error, as the spec's ``ErrorResponse``."""
    code = _ERROR_CODES.get(refusal.status, "UNKNOWN")
    body = {"status": refusal.status, "error": {"code": code, "message": refusal.message}}
    return _Reply(refusal.status, body, refusal.headers)


def wrong_api(spec: IndexSpec, op: str) -> _Refusal | None:
    """The refusal of an operation the index's API does not have, or None."""
    if spec.documents is not None and op in LEGACY_OPS:
        return _bad(
            f"Index '{spec.name}' is a document index: it is read and written through {DOCUMENTS_API}, not the "
            f"{'records' if op.endswith('_records') else 'vectors'} API"
        )
    if spec.documents is None and op in DOCUMENT_OPS:
        if spec.embed is not None:
            speaks = "a legacy integrated index, read and written through the records API (/records/namespaces/...)"
        else:
            speaks = "a legacy vector index, read and written through the vectors API (/vectors/..., /query)"
        return _bad(
            f"Index '{spec.name}' is {speaks}, not the Documents API. To use the Documents API, create a document "
            "index from a schema and move the data into it"
        )
    return None


def _object(payload: Any, allowed: set[str]) -> dict[str, Any]:
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise _bad("Request body must be a JSON object")
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise _bad(f"Unknown request fields {unknown}; this request takes {sorted(allowed)}")
    return payload


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IDS_PER_REQUEST:
        raise _bad(f"ids must be an array of 1 to {MAX_IDS_PER_REQUEST} document ids")
    return [check_id(i, "each id") for i in value]


def _include(value: Any) -> list[str] | None:
    """``include_fields`` as given: None when omitted; a list of field names otherwise."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise _bad("include_fields must be an array of field names")
    return value


def _selected(document: dict[str, Any], include: list[str] | None, *, default_all: bool) -> dict[str, Any]:
    if include is None or not include:
        return document if default_all else {"_id": document["_id"]}
    if "*" in include:
        return document
    return {k: v for k, v in document.items() if k == "_id" or k in include}


def _sorted(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=str.encode)  # Pinecone pages in bitwise "C" collation


class DocumentsApi:
    """The six Documents API operations of one index (its ``IndexService``)."""

    def __init__(self, service: IndexService) -> None:
        self.service = service

    def routes(self) -> dict[tuple[str, str], tuple[str, Callable[..., Any]]]:
        return {
            ("POST", f"/namespaces/{{}}/documents/{action}"): (op, getattr(self, op))
            for op, (action, _scope) in DOCUMENT_OPS.items()
        }

    @property
    def schema(self) -> DocumentSchema:
        schema = self.service.spec.documents
        assert schema is not None  # wrong_api refused the request before it got here
        return schema

    @property
    def store(self) -> Any:
        return self.service.store

    @staticmethod
    def namespace(arg: str | None) -> str:
        """The stored name of the path's namespace (``__default__`` is the default namespace)."""
        if not arg:
            raise _bad(f"namespace must not be empty; the default namespace is named {DEFAULT_NAMESPACE_NAME}")
        return _namespace_name(arg)

    def _reply(self, namespace: str, body: dict[str, Any], read_units: int) -> dict[str, Any]:
        return {**body, "namespace": _display_name(namespace), "usage": {"read_units": max(1, read_units)}}

    def _stored(self, namespace: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        records = self.store.lagging(namespace).fetch(namespace, ids)
        return {i: self._json(i, records[i]) for i in ids if i in records}

    def _json(self, doc_id: str, record: _Record) -> dict[str, Any]:
        return document_json(doc_id, self.schema, record.values, record.sparse, dict(record.metadata or {}))

    def _put(self, namespace: str, documents: Iterable[Document]) -> int:
        return int(self.store.put(namespace, [(d.id, _Record(d.values, d.fields, d.sparse)) for d in documents]))

    # -- operations

    def upsert_documents(self, payload: Any, _query: Mapping[str, list[str]], arg: str | None) -> _Reply:
        namespace = self.namespace(arg)
        raw = payload or b""
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise _Refusal(413, f"Request size {len(raw) / 2**20:.1f}MB exceeds the maximum supported size of 2MB")
        body = _object(_parse_json(raw) if raw else None, {"documents"})
        documents = body.get("documents")
        if not isinstance(documents, list) or not 1 <= len(documents) <= MAX_UPSERT_DOCUMENTS:
            raise _bad(f"documents must be an array of 1 to {MAX_UPSERT_DOCUMENTS} documents")
        # One bad document refuses the whole request: every document is checked before any is stored.
        checked = [check_document(self.schema, doc, position) for position, doc in enumerate(documents)]
        seen: set[str] = set()
        for position, doc in enumerate(checked):
            if doc.id in seen:
                raise _bad(f"Document at position {position}: _id '{doc.id}' appears twice in one request")
            seen.add(doc.id)
        count = self._put(namespace, checked)  # a document replaces the whole document of its _id
        return _Reply(202, {"upserted_count": count})

    def fetch_documents(self, payload: Any, _query: Mapping[str, list[str]], arg: str | None) -> dict[str, Any]:
        namespace = self.namespace(arg)
        body = _object(payload, {"ids", "filter", "include_fields", "pagination_token", "limit"})
        limit = _int(body.get("limit", DEFAULT_PAGE), "limit", 1, MAX_FETCH_LIMIT)
        include = _include(body.get("include_fields"))
        ids, flt, token = body.get("ids"), body.get("filter"), body.get("pagination_token")
        if ids is not None and flt is not None:
            raise _bad("ids and filter are mutually exclusive in a document fetch; give one of them")
        if ids is None and flt is None:
            raise _bad(
                "No 'ids' or 'filter' provided in the document fetch request. Provide at least one document ID in "
                "'ids', or a metadata filter in 'filter'."
            )
        reply: dict[str, Any] = {}
        if ids is not None:
            if token is not None:
                raise _bad("pagination_token is only valid together with filter")
            page = _ids(ids)
        else:
            if token is not None and not isinstance(token, str):
                raise _bad("pagination_token must be a string")
            predicate = compile_document_filter(self.schema, flt, search=False)
            matched = self._matching(namespace, predicate)
            page, following = _page(matched, "", token or None, limit)
            if following:
                reply["pagination"] = {"next": following}
        documents = {i: _selected(d, include, default_all=True) for i, d in self._stored(namespace, page).items()}
        return self._reply(namespace, {"documents": documents, **reply}, len(documents))

    def _matching(self, namespace: str, predicate: Callable[[Mapping[str, Any]], bool] | None) -> list[str]:
        return _sorted(self.store.matching(namespace, predicate))

    def list_documents(self, payload: Any, _query: Mapping[str, list[str]], arg: str | None) -> dict[str, Any]:
        namespace = self.namespace(arg)
        body = _object(payload, {"prefix", "limit", "pagination_token"})
        prefix, token = body.get("prefix", ""), body.get("pagination_token")
        if not isinstance(prefix, str) or len(prefix) > 512 or not prefix.isascii():
            raise _bad("prefix must be a string of at most 512 ASCII characters")
        if token is not None and not isinstance(token, str):
            raise _bad("pagination_token must be a string")
        limit = _int(body.get("limit", MAX_LIST_LIMIT), "limit", 1, MAX_LIST_LIMIT)
        ids, following = self.store.list_ids(namespace, prefix, token or None, limit)
        reply: dict[str, Any] = {"documents": [{"_id": i} for i in ids]}
        if following:
            reply["pagination"] = {"next": following}
        return self._reply(namespace, reply, 1)

    def search_documents(self, payload: Any, _query: Mapping[str, list[str]], arg: str | None) -> dict[str, Any]:
        namespace = self.namespace(arg)
        body = _object(payload, {"score_by", "top_k", "include_fields", "filter"})
        clauses = read_score_by(self.schema, body.get("score_by"))
        top_k = read_top_k(body.get("top_k"))
        include = _include(body.get("include_fields"))
        flt = body.get("filter")
        predicate = compile_document_filter(self.schema, flt, search=True) if flt is not None else None
        if clauses[0].type == "dense_vector":
            # The index's own nearest-neighbour search (its value matrix is kept between writes).
            assert clauses[0].values is not None
            hits = self.store.query(namespace, clauses[0].values, top_k, predicate)
            ranked = [(Candidate(i, r.values, r.sparse, dict(r.metadata or {})), s) for i, s, r in hits]
            read = len(hits)
        else:
            view = self.store.lagging(namespace)  # search lags writes, as Pinecone's does (``sandbox.freshness``)
            everyone = view.fetch(namespace, view.matching(namespace, None))
            candidates = [Candidate(i, r.values, r.sparse, dict(r.metadata or {})) for i, r in everyone.items()]
            allowed = {c.id for c in candidates if predicate is None or predicate(c.fields)}
            ranked = rank(clauses, candidates, allowed, top_k)
            read = len(candidates)
        matches = []
        for candidate, score in ranked:
            shown = document_json(candidate.id, self.schema, candidate.values, candidate.sparse, candidate.fields)
            finite = score is not None and math.isfinite(score)  # a huge vector's score: null, as the spec allows
            matches.append({"_score": score if finite else None, **_selected(shown, include, default_all=False)})
        return self._reply(namespace, {"matches": matches}, 1 + read // 100)

    def delete_documents(self, payload: Any, _query: Mapping[str, list[str]], arg: str | None) -> _Reply:
        namespace = self.namespace(arg)
        body = _object(payload, {"ids", "filter", "delete_all"})
        delete_all = body.get("delete_all", False)
        if not isinstance(delete_all, bool):
            raise _bad("delete_all must be a boolean")
        given = [k for k in ("ids", "filter") if body.get(k) is not None] + (["delete_all"] if delete_all else [])
        if len(given) != 1:
            raise _bad("Exactly one of ids, filter or delete_all must be given in a document delete")
        if delete_all:
            self.store.delete(namespace, self.store.matching(namespace, None))
            return _Reply(202, {})
        if body.get("ids") is not None:
            self.store.delete(namespace, _ids(body["ids"]))
            return _Reply(202, {})
        matched = self.store.matching(namespace, compile_document_filter(self.schema, body["filter"], search=False))
        self.store.delete(namespace, matched)
        return _Reply(202, {"matched_records": len(matched)})

    def update_documents(self, payload: Any, _query: Mapping[str, list[str]], arg: str | None) -> _Reply:
        namespace = self.namespace(arg)
        body = _object(payload, {"documents", "filter", "set_fields", "remove_fields"})
        set_fields, remove_fields = body.get("set_fields") or {}, body.get("remove_fields") or []
        by_filter = body.get("filter") is not None or bool(set_fields) or bool(remove_fields)
        if (body.get("documents") is not None) == by_filter:
            raise _bad("Give either documents (per-ID patches) or filter with set_fields and/or remove_fields")
        if not by_filter:
            patches = body["documents"]
            if not isinstance(patches, list) or not 1 <= len(patches) <= MAX_UPSERT_DOCUMENTS:
                raise _bad(f"documents must be an array of 1 to {MAX_UPSERT_DOCUMENTS} patches")
            checked = [self._patch(p, position) for position, p in enumerate(patches)]
            self._apply(namespace, [(doc_id, sets, removes) for doc_id, sets, removes in checked])
            return _Reply(202, {})
        if body.get("filter") is None or not (set_fields or remove_fields):
            raise _bad("An update by filter needs filter and a non-empty set_fields and/or remove_fields")
        if not isinstance(set_fields, dict) or not isinstance(remove_fields, list):
            raise _bad("set_fields must be an object and remove_fields an array of field names")
        sets, removes = self._checked_patch(set_fields, remove_fields)
        matched = self.store.matching(namespace, compile_document_filter(self.schema, body["filter"], search=False))
        self._apply(namespace, [(doc_id, sets, removes) for doc_id in matched])
        return _Reply(202, {"matched_records": len(matched)})

    def _patch(self, raw: Any, position: int) -> tuple[str, dict[str, Any], list[str]]:
        try:
            if not isinstance(raw, dict):
                raise _bad("a patch must be a JSON object")
            doc_id = check_id(raw.get("_id"))
            removes = raw.get("_remove_fields") or []
            if not isinstance(removes, list):
                raise _bad("_remove_fields must be an array of field names")
            sets = {k: v for k, v in raw.items() if k not in ("_id", "_remove_fields")}
            checked_sets, checked_removes = self._checked_patch(sets, removes)
            return doc_id, checked_sets, checked_removes
        except _Refusal as refusal:
            raise _Refusal(refusal.status, f"Document at position {position}: {refusal.message}") from refusal

    def _checked_patch(self, sets: dict[str, Any], removes: list[Any]) -> tuple[dict[str, Any], list[str]]:
        if not all(isinstance(name, str) for name in removes):
            raise _bad("fields to remove must be named by strings")
        both = sorted(set(sets) & set(removes))
        if both:
            raise _bad(f"a field cannot be both set and removed: {both}")
        dense = self.schema.dense
        if dense is not None and dense.name in removes:
            raise _bad(f"the dense_vector field '{dense.name}' is required and cannot be removed")
        if "_id" in removes:
            raise _bad("_id cannot be removed")
        return {name: check_value(self.schema, name, value) for name, value in sets.items()}, list(removes)

    def _apply(self, namespace: str, patches: list[tuple[str, dict[str, Any], list[str]]]) -> None:
        """Patch the documents that exist (an update to a missing one has no effect); every patched document is
        built and checked before any is stored, so a request is applied whole or not at all."""
        stored = self.store.fetch(namespace, [doc_id for doc_id, _, _ in patches])
        current: dict[str, dict[str, Any]] = {}
        for doc_id, sets, removes in patches:
            if doc_id not in stored:
                continue
            if doc_id not in current:
                record = stored[doc_id]
                current[doc_id] = self._fields(record)
            fields = current[doc_id]
            fields.update(sets)
            for name in removes:
                fields.pop(name, None)
        documents = [build_document(self.schema, doc_id, fields) for doc_id, fields in current.items()]
        if documents:
            self._put(namespace, documents)

    def _fields(self, record: _Record) -> dict[str, Any]:
        fields: dict[str, Any] = dict(record.metadata or {})
        if self.schema.dense is not None:
            fields[self.schema.dense.name] = record.values
        if self.schema.sparse is not None and record.sparse is not None:
            fields[self.schema.sparse.name] = record.sparse
        return fields


def load_documents(service: IndexService, namespace: str, documents: Iterable[Mapping[str, Any]]) -> int:
    """Put documents into a document index as an upsert would (checked the same way), for tests and demos."""
    schema = service.spec.documents
    if schema is None:
        raise ValueError(f"index {service.spec.name!r} is not a document index")
    checked = [check_document(schema, orjson.loads(orjson.dumps(dict(d))), i) for i, d in enumerate(documents)]
    return DocumentsApi(service)._put(_namespace_name(namespace), checked)
