"""The one interface every vector store implements (Pinecone, pgvector).

Stores are thin and synchronous: no retries and no rate limiting here. They translate the store's own failures into
``RetryableError`` (429, 5xx, connection errors; with ``retry_after_s`` when the store said) or ``StoreError``
(everything retrying cannot fix); ``workers.stores.guarded.GuardedStore`` adds the retry policy and the rate budget.

The default namespace is the empty string ``""`` everywhere in nsmigrate (Pinecone reports it as ``__default__``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from orchestrator.listing.paging import iter_all_ids
from orchestrator.records.vectors import DEFAULT_NAMESPACE, IdPage, Record

__all__ = ["DEFAULT_NAMESPACE", "IdPage", "Record", "VectorStore", "iter_all_ids"]


@runtime_checkable
class VectorStore(Protocol):
    """What a migration needs from a store. Callers keep requests within ``orchestrator.limits`` (ids per fetch and
    delete, records and bytes per upsert: see ``workers.chunking``; ids per list page)."""

    #: Human-readable identity used in rate-limit scopes and messages (never contains a key).
    name: str

    def identity(self) -> str:
        """Which index or tables this is, spelling taken out (``orchestrator.connections.store_identity``); may ask the
        server."""
        ...

    def dimension(self) -> int:
        """Vector dimension of the index/table."""
        ...

    def metric(self) -> str | None:
        """How the store measures similarity (cosine, dotproduct, euclidean); None when it does not say."""
        ...

    def namespaces(self) -> dict[str, int]:
        """Every namespace and its vector count (counts may lag for eventually consistent stores)."""
        ...

    def count(self, namespace: str) -> int:
        """Vector count of one namespace (0 when it does not exist)."""
        ...

    def list_ids(self, namespace: str, *, limit: int = 100, token: str | None = None) -> IdPage:
        """One page of ids in a stable order."""
        ...

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[Record]:
        """The records that exist among ``ids`` (missing ids are simply absent)."""
        ...

    def upsert(self, namespace: str, records: Sequence[Record]) -> int:
        """Insert or overwrite; returns how many the store acknowledged."""
        ...

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        """Delete these ids (missing ones are ignored)."""
        ...

    def delete_namespace(self, namespace: str) -> None:
        """Delete a whole namespace."""
        ...

    def query(self, namespace: str, vector: Sequence[float], top_k: int) -> list[str]:
        """Ids of the ``top_k`` nearest vectors, best first (used by verification's query equivalence)."""
        ...
