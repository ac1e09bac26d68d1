"""A Pinecone document index (API 2026-07) as a store of records: the Documents API
(``/namespaces/{namespace}/documents/upsert|fetch|list|search|delete``), each record written as the document
``orchestrator.records.documents`` maps it to and read back as that record.

Everything else is the index's as for any Pinecone index (``workers.stores.pinecone.PineconeStore``): the key, the
host an index name resolves to, counts from ``describe_index_stats`` and ``/namespaces``, namespace deletion, aliases.
A document index answers neither the vectors API nor ``query``, so every read and write of records goes through the
Documents API here; the similarity search verification compares is a ``dense_vector`` search on the dense field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import DELETE_MAX_IDS, FETCH_MAX_IDS, LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.records import documents
from nsmigrate.orchestrator.spec.jobspec import DocumentFields, PineconeStoreSpec
from nsmigrate.workers.stores.base import Capabilities, IdPage, Record
from nsmigrate.workers.stores.pinecone import (
    PINECONE_DEFAULT_NAMESPACE,
    PineconeStore,
    _read,
    _wire_values,
    over_limits,
)
from nsmigrate.workers.stores.pinecone_rest import DataPlaneError, path_segment


class _ListedDocument(msgspec.Struct):
    id: str = msgspec.field(name="_id")


class _Pagination(msgspec.Struct):
    next: str | None = None


class _ListReply(msgspec.Struct):
    documents: list[_ListedDocument] = []
    pagination: _Pagination | None = None


class _FetchReply(msgspec.Struct):
    documents: dict[str, dict[str, Any]] = {}


class _Match(msgspec.Struct):
    id: str = msgspec.field(name="_id")
    score: float = msgspec.field(name="_score", default=0.0)


class _SearchReply(msgspec.Struct):
    matches: list[_Match] = []


_LIST_REPLY = msgspec.json.Decoder(_ListReply)
_FETCH_REPLY = msgspec.json.Decoder(_FetchReply)
_SEARCH_REPLY = msgspec.json.Decoder(_SearchReply)


def documents_path(namespace: str, action: str) -> str:
    """The Documents API path of ``action`` in ``namespace`` (the default namespace is named: ``__default__``)."""
    return f"/namespaces/{path_segment(namespace or PINECONE_DEFAULT_NAMESPACE)}/documents/{action}"


class DocumentStore(PineconeStore):
    """``Store`` over one Pinecone document index; ``spec.documents`` says how records map onto its documents."""

    def __init__(self, spec: PineconeStoreSpec, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        assert spec.documents is not None  # open_store opens this store for a document index only
        self.fields: DocumentFields = spec.documents
        self.capabilities = Capabilities(lists=True, enumeration="list", lists_by_prefix=True)

    def __repr__(self) -> str:
        return f"DocumentStore({self.name!r})"

    def can_list(self) -> bool:
        return True

    def list_ids(self, namespace: str, *, limit: int = LIST_MAX_PAGE_IDS, token: str | None = None, **_: Any) -> IdPage:
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {limit}")
        return self._list_page(namespace, None, limit, token)

    def _list_page(self, namespace: str, prefix: str | None, limit: int, token: str | None) -> IdPage:
        body: dict[str, Any] = {"limit": min(limit, LIST_MAX_PAGE_IDS)}
        if prefix:
            body["prefix"] = prefix
        if token:
            body["pagination_token"] = token
        with self._errors("list_documents", namespace):
            content = self._client().post(documents_path(namespace, "list"), body)
            reply: _ListReply = _read(_LIST_REPLY, content, "list_documents")
        following = reply.pagination.next if reply.pagination is not None else None
        return IdPage(ids=[d.id for d in reply.documents], next_token=following or None)

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[Record]:
        if not ids:
            return []
        if len(ids) > FETCH_MAX_IDS:
            raise ValueError(f"fetch takes ≤ {FETCH_MAX_IDS} ids per call, got {len(ids)}")
        body = {"ids": list(dict.fromkeys(ids)), "include_fields": ["*"]}
        with self._errors("fetch_documents", namespace):
            content = self._client().post(documents_path(namespace, "fetch"), body)
            reply: _FetchReply = _read(_FETCH_REPLY, content, "fetch_documents")
        found = reply.documents
        return [documents.from_document(found[i], self.fields) for i in dict.fromkeys(ids) if i in found]

    def upsert(self, namespace: str, records: Sequence[Record]) -> int:
        if not records:
            return 0
        refused = [
            f"id {r.id!r}: {'; '.join(f'{k!r} {why}' for k, why in problems.items())}"
            for r in records
            if (problems := documents.key_problems(r.metadata, self.fields))
        ]
        if any(r.sparse_values is not None for r in records) and self.fields.sparse_field is None:
            refused.append("records have sparse values and target.documents names no sparse_field")
        self._refuse(
            over_limits(records) + refused,
            "records cannot be written as documents",
            "name the refused metadata keys' fields in target.documents.rename (e.g. _source: source), set "
            "allow_id_overwrite: true (the target holds part of the copy) and `nsmigrate run SPEC --new`",
            namespace,
        )
        body = {"documents": [documents.to_document(r, self.fields, _wire_values(r.values)) for r in records]}
        with self._errors("upsert_documents", namespace):
            self._client().post(documents_path(namespace, "upsert"), body)
        return len(records)  # 202: accepted whole, or refused whole

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        with self._errors("delete_documents", namespace):
            for start in range(0, len(ids), DELETE_MAX_IDS):
                body = {"ids": list(ids[start : start + DELETE_MAX_IDS])}
                self._client().post(documents_path(namespace, "delete"), body)

    def delete_namespace(self, namespace: str) -> None:
        """``DELETE /namespaces/{ns}`` (a document index serves it; 404: no such namespace, nothing to delete); the
        default namespace cannot be deleted, so it is emptied with the Documents API's ``delete_all``."""
        with self._errors("delete_namespace", namespace):
            if not namespace:
                self._client().post(documents_path(namespace, "delete"), {"delete_all": True})
                return
            try:
                self._client().delete(f"/namespaces/{path_segment(namespace)}")
            except DataPlaneError as e:
                if e.status != 404:
                    raise

    def query_scored(self, namespace: str, vector: Sequence[float], top_k: int) -> list[tuple[str, float]]:
        """A ``dense_vector`` search on the dense field: ``(id, score)`` of the ``top_k`` nearest, best first."""
        clause = {"type": "dense_vector", "field": self.fields.dense_field, "values": list(vector)}
        with self._errors("search_documents", namespace):
            content = self._client().post(documents_path(namespace, "search"), {"score_by": [clause], "top_k": top_k})
            reply: _SearchReply = _read(_SEARCH_REPLY, content, "search_documents")
        return [(m.id, float(m.score)) for m in reply.matches]

    def search_text(self, namespace: str, text: str, top_k: int) -> list[str]:
        raise StoreError(f"{self.name} is searched by its dense field here", hint="use query")
