"""The one interface every vector store implements (Pinecone, pgvector), and the capabilities each one declares.

Stores are thin and synchronous: no retries and no rate limiting there. They translate the store's own failures into
``RetryableError`` (429, 5xx, connection errors; with ``retry_after_s`` when the store said) or ``StoreError``
(everything retrying cannot fix); ``workers.stores.guarded.GuardedStore`` adds the retry policy and the rate budget.
Callers keep requests within ``orchestrator.limits`` (ids per fetch and delete, records and bytes per upsert: see
``workers.transfer.chunking``; ids per list page: ``capabilities.list_page_ids``).

What not every store can do is declared, not probed: a caller reads ``store.capabilities`` (fixed when the store is
opened) and asks ``can_list()`` only where the server must say. A store inherits ``StoreDefaults`` for what it
leaves out. The default namespace is the empty string ``""`` everywhere in nsmigrate (Pinecone reports it as
``__default__``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.pgvector_rows import TableColumn
from nsmigrate.orchestrator.records.vectors import IdPage, Record

Enumeration = Literal["list", "catalogue", "sweep"]


@dataclass(frozen=True)
class Capabilities:
    """What a store can do beyond what every store does."""

    #: Whether ``list_ids`` lists: True, or None when only the server can say (``can_list``: a Pinecone pod index
    #: does not list, a serverless one does).
    lists: bool | None = True
    #: How ``list_ids`` finds the ids: listed, or for a Pinecone source that cannot list, from a ``catalogue`` or a
    #: ``sweep`` of queries (``workers.stores.enumeration``; a sweep takes budgeted reads from its caller).
    enumeration: Enumeration = "list"
    #: Ids one ``list_ids`` page may hold (a Postgres table has no page limit of its own).
    list_page_ids: int = LIST_MAX_PAGE_IDS
    #: ``list_ids_by_prefix`` splits a namespace into chains (ids listed by prefix, not found by a catalogue or a
    #: sweep).
    lists_by_prefix: bool = False
    #: ``search_text``: an integrated Pinecone index embeds a text query itself.
    text_search: bool = False
    #: ``table_columns``: a namespace is a table whose every column a copy carries (the application's pgvector layout).
    table_columns: bool = False
    #: ``row_versions`` and ``delete_unchanged``: a delete can name the rows as they were read (Postgres can).
    row_versions: bool = False
    #: ``fetch`` lags writes as the lagging reads do: a document index applies writes asynchronously (202), and its
    #: fetch answers the LSN it reflects.
    fetch_lags: bool = False
    #: Its listing, queries and counts lag writes (Pinecone): a read that must show every write made before now
    #: waits for them first (``workers.steps.freshness.reads_now``), e.g. a sync's or a verification's source listing.
    reads_lag: bool = False
    #: A delete takes the records it names from the index's ``rate.delete_records_per_s`` (Pinecone limits the
    #: records deleted a second, beside the requests).
    deletes_counted_by_record: bool = False
    #: ``query_records``: a query returns records with their values and metadata, so a small namespace listed whole
    #: can be read by one query instead of a fetch (a serverless vector index: ``workers.steps.whole_reads``).
    reads_by_query: bool = False


@runtime_checkable
class Store(Protocol):
    """What a migration needs from a store."""

    #: Human-readable identity used in rate-limit scopes and messages (never contains a key).
    name: str
    capabilities: Capabilities

    def connect(self) -> None:
        """Set up the client now (outside any rate-budget admission); a store without set-up does nothing."""
        ...

    def close(self) -> None:
        """Release this process's connections."""
        ...

    def identity(self) -> str:
        """Which index or tables this is, spelling taken out (``orchestrator.spec.store_identity``); may ask
        the server."""
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

    @property
    def counts_by_index(self) -> bool:
        """Whether a count is a reading of the whole index, which verifications running at once can share
        (``workers.stores.shared_counts``); known once the store has answered."""
        ...

    def can_list(self) -> bool:
        """Whether ``list_ids`` lists (``capabilities.lists``, or the server's answer when that is None)."""
        ...

    def list_ids(self, namespace: str, *, limit: int = LIST_MAX_PAGE_IDS, token: str | None = None) -> IdPage:
        """One page of ids in a stable order."""
        ...

    def list_ids_by_prefix(
        self, namespace: str, prefix: str, *, limit: int = LIST_MAX_PAGE_IDS, token: str | None = None
    ) -> IdPage:
        """One page of the ids that start with ``prefix`` (``capabilities.lists_by_prefix``)."""
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

    def delete_namespace_if_empty(self, namespace: str) -> bool:
        """Delete the namespace only if it holds no vector at that moment (what cleanup and rollback drop once they
        emptied it by id); whether it is gone. pgvector decides at the drop itself (the table locked, then looked at);
        a store that cannot (Pinecone) lists it right before, and a write in between goes with it."""
        ...

    def query(self, namespace: str, vector: Sequence[float], top_k: int) -> list[str]:
        """Ids of the ``top_k`` nearest vectors, best first (used by verification's query equivalence)."""
        ...

    def query_scored(self, namespace: str, vector: Sequence[float], top_k: int) -> list[tuple[str, float]]:
        """``(id, score)`` of the ``top_k`` nearest, best first: what a cross-twin search merges on."""
        ...

    def query_records(self, namespace: str, top_k: int) -> list[Record]:
        """The ``top_k`` records nearest to one vector with their values and metadata (``capabilities.reads_by_query``):
        for a ``top_k`` beyond the namespace's size, every record the query found (a search may miss some)."""
        ...

    def search_text(self, namespace: str, text: str, top_k: int) -> list[str]:
        """Ids the store finds for ``text``, best first (``capabilities.text_search``)."""
        ...

    def table_columns(self, namespace: str) -> tuple[str, list[TableColumn]] | None:
        """The namespace's table and its columns, or None without a table (``capabilities.table_columns``)."""
        ...

    def written_lsns(self) -> AbstractContextManager[dict[str, int]]:
        """While open, the highest log sequence number this process's writes to each namespace were answered;
        left empty when the store gives none (its reads do not lag, or it does not say how far they reflect)."""
        ...

    def reconciled_lsn(self, namespace: str) -> int | None:
        """The log sequence number the store's lagging reads (list, query, counts) of ``namespace`` reflect now;
        None when it does not say."""
        ...

    def aliases(self) -> dict[str, str]:
        """Every namespace alias of the store (a Pinecone index's, API 2026-07) → the namespace it resolves to: names
        reads may use, which writes cannot, whose targets must not be deleted. {} for a store without aliases."""
        ...

    def row_versions(self, namespace: str, ids: Sequence[str]) -> dict[str, str] | None:
        """Each present id's row version now (pgvector: its ``ctid`` and ``xmin``, which any write changes), for
        ``delete_unchanged``; None for a store that keeps none (Pinecone)."""
        ...

    def delete_unchanged(self, namespace: str, versions: Mapping[str, str]) -> list[str]:
        """Delete each id of ``versions`` whose row is still that version, in one statement; the ids deleted (a row
        written since keeps its id out). Only for a store whose ``row_versions`` gives them."""
        ...


class StoreDefaults:
    """What a store answers for what it does not declare in its ``capabilities``: its adapters inherit this."""

    name: str
    capabilities = Capabilities()

    def connect(self) -> None:
        return None

    def close(self) -> None:
        return None

    @property
    def counts_by_index(self) -> bool:
        return False

    def can_list(self) -> bool:
        return self.capabilities.lists is not False

    def list_ids_by_prefix(
        self, namespace: str, prefix: str, *, limit: int = LIST_MAX_PAGE_IDS, token: str | None = None
    ) -> IdPage:
        raise StoreError(f"{self.name} cannot list ids by prefix", hint="list the namespace as one chain")

    def query_records(self, namespace: str, top_k: int) -> list[Record]:
        raise StoreError(f"{self.name} cannot read records by query", hint="fetch them")

    def search_text(self, namespace: str, text: str, top_k: int) -> list[str]:
        raise StoreError(f"{self.name} cannot search by text", hint="only an integrated Pinecone index can")

    def table_columns(self, namespace: str) -> tuple[str, list[TableColumn]] | None:
        return None

    def written_lsns(self) -> AbstractContextManager[dict[str, int]]:
        return nullcontext({})

    def reconciled_lsn(self, namespace: str) -> int | None:
        return None

    def aliases(self) -> dict[str, str]:
        return {}

    def row_versions(self, namespace: str, ids: Sequence[str]) -> dict[str, str] | None:
        return None

    def delete_unchanged(self, namespace: str, versions: Mapping[str, str]) -> list[str]:
        raise StoreError(f"{self.name} keeps no row versions to delete by", hint="delete by id")

    def delete_namespace_if_empty(self: Store, namespace: str) -> bool:
        if self.list_ids(namespace, limit=1).ids:
            return False
        self.delete_namespace(namespace)
        return True
