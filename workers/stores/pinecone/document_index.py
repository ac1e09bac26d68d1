"""A Pinecone document index (API 2026-07) as a ``Store``: records written and read as documents through the
Documents API (``POST /namespaces/{namespace}/documents/{upsert, fetch, list, search, delete}``).

Everything but the records themselves is ``PineconeStore``'s: the key, the host (given, or an index name resolved on
the control plane), the connection, namespaces and counts (a document index serves ``/namespaces`` and
``describe_index_stats``), aliases and errors. What a record becomes is ``orchestrator.records.documents``; a record
the index would refuse (a reserved metadata key, a non-ASCII id, values with no field to go to) is refused here by id
before anything is sent, as ``PineconeStore`` refuses what a vector index would: nothing of that upsert is written.

Document writes are accepted (202) and applied asynchronously: a read right after a write may not see it yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from nsmigrate.orchestrator.connections.keys import DEFAULT_ALLOWED_KEY_VARS
from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import DELETE_MAX_IDS, FETCH_MAX_IDS, LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.records.documents import (
    ID_FIELD,
    DocumentFields,
    document_problems,
    from_document,
    to_document,
)
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.base import Capabilities, IdPage, Record
from nsmigrate.workers.stores.pinecone.rest import DataPlaneError, path_segment
from nsmigrate.workers.stores.pinecone.store import PINECONE_DEFAULT_NAMESPACE, PineconeStore
from nsmigrate.workers.stores.pinecone.wire import _shown_id, _wire_values


def _reply(content: bytes, op: str, key: str) -> Any:
    """The ``key`` of a Documents API answer; a ``StoreError`` when the answer is not one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError as e:
        raise StoreError(f"Pinecone {op} answered something that is not JSON: {e}") from e
    if not isinstance(body, dict) or key not in body:
        raise StoreError(f"Pinecone {op} answered without {key!r}: {str(body)[:200]}")
    return body[key]


class PineconeDocumentStore(PineconeStore):
    """A document index of ``spec`` whose schema has ``fields`` (``DocumentFields.from_schema`` of its description).

    Parameters:
        spec: the store's spec (its host or index name, the key's variable).
        fields: where a record's dense and sparse values go, and which fields are full-text.
        timeout_s: per-request timeout in seconds.
        allowed_key_vars: the operator's ``NSMIGRATE_ALLOWED_KEY_VARS``.
    """

    def __init__(
        self,
        spec: PineconeStoreSpec,
        fields: DocumentFields,
        *,
        timeout_s: float = 30.0,
        allowed_key_vars: str = DEFAULT_ALLOWED_KEY_VARS,
    ) -> None:
        super().__init__(spec, timeout_s=timeout_s, allowed_key_vars=allowed_key_vars)
        self.fields = fields
        # A document index is serverless: it lists, by prefix too; it has no integrated text search. Its writes are
        # applied asynchronously: fetch shows them once its reads do.
        self.capabilities = Capabilities(
            lists=True, lists_by_prefix=True, fetch_lags=True, deletes_counted_by_record=True, reads_lag=True
        )
        self.catalogue = None
        self.sweeper = None

    def __repr__(self) -> str:
        return f"PineconeDocumentStore({self.name!r})"

    def _path(self, namespace: str, action: str) -> str:
        # The Documents API names every namespace in the path: the default one too.
        return f"/namespaces/{path_segment(namespace or PINECONE_DEFAULT_NAMESPACE)}/documents/{action}"

    def _post(self, namespace: str, action: str, body: dict[str, Any]) -> bytes:
        with self._errors(f"{action}_documents", namespace):
            content: bytes = self._client().post(self._path(namespace, action), body)
        return content

    def can_list(self) -> bool:
        return True

    def list_ids(self, namespace: str, *, limit: int = 100, token: str | None = None, reads: Any = None) -> IdPage:
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {limit}")
        return self._list_page(namespace, None, limit, token)

    def _list_page(self, namespace: str, prefix: str | None, limit: int, token: str | None) -> IdPage:
        body: dict[str, Any] = {"limit": min(limit, LIST_MAX_PAGE_IDS)}
        if prefix:
            body["prefix"] = prefix
        if token:
            body["pagination_token"] = token
        content = self._post(namespace, "list", body)
        listed = _reply(content, "list_documents", "documents")
        pagination = orjson.loads(content).get("pagination") or {}
        ids = [str(d[ID_FIELD]) for d in listed]
        return IdPage(ids, pagination.get("next") or None, self._client().lsns()[1])

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[Record]:
        if not ids:
            return []
        if len(ids) > FETCH_MAX_IDS:
            raise ValueError(f"fetch takes ≤ {FETCH_MAX_IDS} ids per call, got {len(ids)}")
        unique = list(dict.fromkeys(ids))
        found = _reply(self._post(namespace, "fetch", {"ids": unique}), "fetch_documents", "documents")
        return [from_document(found[i], self.fields) for i in unique if i in found]

    def upsert(self, namespace: str, records: Sequence[Record]) -> int:
        if not records:
            return 0
        problems: list[str] = []
        for record in records:
            problems += [f"id {_shown_id(record.id)}: {p}" for p in document_problems(record, self.fields)]
        self._refuse(
            problems,
            "records cannot be written as documents",
            "rename those metadata keys in target.documents.rename (e.g. _source: source), set "
            "allow_id_overwrite: true (the target holds part of the copy) and `nsmigrate run SPEC --new`; or "
            "rename the ids in the source",
            namespace,
        )
        documents = [to_document(r, self.fields, _wire_values(r.values)) for r in records]
        content = self._post(namespace, "upsert", {"documents": documents})
        self._note_write(namespace)
        return int(_reply(content, "upsert_documents", "upserted_count"))

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), DELETE_MAX_IDS):
            self._post(namespace, "delete", {"ids": list(ids[start : start + DELETE_MAX_IDS])})
            self._note_write(namespace)

    def reconciled_lsn(self, namespace: str) -> int | None:
        """The log sequence number the index's lagging reads of ``namespace`` reflect now (one list of one id, the
        Documents API's), None when the index does not say."""
        self._post(namespace, "list", {"limit": 1})
        return self._client().lsns()[1]

    def delete_namespace(self, namespace: str) -> None:
        """``DELETE /namespaces/{ns}``; a namespace that is not there is already gone."""
        with self._errors("delete_namespace", namespace):
            try:
                self._client().delete(f"/namespaces/{path_segment(namespace or PINECONE_DEFAULT_NAMESPACE)}")
            except DataPlaneError as e:
                if e.status != 404:
                    raise

    def query_scored(self, namespace: str, vector: Sequence[float], top_k: int) -> list[tuple[str, float]]:
        """``(id, score)`` of the ``top_k`` nearest by the dense field, best first (a document search)."""
        if self.fields.dense is None:
            raise StoreError(f"{self.name} has no dense_vector field to search", store=self.name)
        clause = {"type": "dense_vector", "fields": [self.fields.dense], "values": list(vector)}
        content = self._post(namespace, "search", {"score_by": [clause], "top_k": top_k})
        matches = _reply(content, "search_documents", "matches")
        return [(str(m[ID_FIELD]), float(m.get("_score") or 0.0)) for m in matches]

    def search_text(self, namespace: str, text: str, top_k: int) -> list[str]:
        raise StoreError(f"{self.name} cannot search by text", hint="only an integrated Pinecone index can")
