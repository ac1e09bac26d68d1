"""The Pinecone store: Pinecone's REST data plane, the ``pinecone`` SDK (10.x) for the control plane.

Connecting happens on first use, in the process that uses the store (Celery forks its workers after import, and an
HTTP client must not cross a fork): the API key is read then from ``os.environ[spec.api_key_env]``, an ``index`` name
is resolved to its data-plane host with ``describe_index`` (on ``spec.control_host`` when set), and a ``DataPlane``
client is built for that host. The key is never put in a message, a log line or a ``repr``.

**The data plane is nsmigrate's own REST client** (``workers.stores.pinecone.rest``); the SDK only resolves an
index name to its host (``describe_index`` with ``RetryConfig(max_retries=0)``, a supported argument). The client
never retries: tenacity in ``workers.stores.guarded``, around every store call, after the fleet-wide rate limiter,
is the one retry layer, so one 429 costs one request against the shared budget.

**Values pass through as JSON.** ``fetch`` keeps each vector's ``values`` as the JSON array the server sent
(``JsonValues``), cut out of the response unparsed as views into it (``workers.stores.pinecone.fetch_body``);
``upsert`` writes such values back verbatim (``wire.upsert_json``). A copy therefore never builds and re-encodes
1,536 Python floats per vector, its request sizes are exact, and the values arrive bit for bit. Anything that reads
the values (verification, a pgvector target) decodes them on first use. Every other reply is read as just what
nsmigrate uses (``list``: the ids and the token; ``describe_namespace``: the count).

**Integrated targets** (``spec.records``): ``upsert`` writes text records with the records API (NDJSON,
≤ 96 per request: the copy chunks them, ``orchestrator.routing.text`` makes them) and ``search_text`` searches by text;
fetch, list and stats are the ordinary endpoints (the record's fields come back as its metadata).

Errors: 429 → ``RetryableError(status=429, retry_after_s=…)``; 408, 5xx, timeouts and connection errors →
``RetryableError``; any other refusal (400, 401, 403, 404…) → ``StoreError`` with the server's message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import msgspec
from pinecone import (
    Pinecone,
    RetryConfig,
)

from nsmigrate.orchestrator.connections.keys import DEFAULT_ALLOWED_KEY_VARS
from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import (
    DELETE_MAX_IDS,
    FETCH_MAX_IDS,
    LIST_MAX_PAGE_IDS,
    NAMESPACE_MAX_CHARS,
    RECORD_ID_MAX_CHARS,
    RECORD_METADATA_MAX_BYTES,
)
from nsmigrate.orchestrator.planning.costs import fits_one_query
from nsmigrate.orchestrator.records.vectors import JsonValues
from nsmigrate.orchestrator.spec.store_identity import pinecone_host_identity
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.base import Capabilities, IdPage, Record, StoreDefaults
from nsmigrate.workers.stores.enumeration import CatalogueIds, SweepIds, SweepReads, open_catalogue
from nsmigrate.workers.stores.pinecone.access import api_key, check_key_destination, pinecone_errors, prime_sdk_decoding
from nsmigrate.workers.stores.pinecone.aliases import NamespaceAliases
from nsmigrate.workers.stores.pinecone.bulk_imports import BulkImports
from nsmigrate.workers.stores.pinecone.described import dense_shape, index_kind
from nsmigrate.workers.stores.pinecone.fetch_body import read_fetch
from nsmigrate.workers.stores.pinecone.lsn import WrittenLsns
from nsmigrate.workers.stores.pinecone.rest import DataPlane, DataPlaneError, path_segment
from nsmigrate.workers.stores.pinecone.wire import (
    _LIST_REPLY,
    _NAMESPACE_REPLY,
    _QUERY_REPLY,
    _RECORDS_REPLY,
    _SEARCH_REPLY,
    _STATS_REPLY,
    _UPSERT_REPLY,
    _ListReply,
    _NamespaceReply,
    _QueryReply,
    _read,
    _RecordsReply,
    _SearchReply,
    _shown_id,
    _sparse,
    _StatsReply,
    _UpsertReply,
    over_limits,
    upsert_json,
)

logger = logging.getLogger(__name__)

#: How Pinecone names the default namespace in stats and namespace endpoints; nsmigrate calls it "".
PINECONE_DEFAULT_NAMESPACE = "__default__"
#: How an index that does not serve ``/namespaces`` (a pod index) refuses ``DELETE /namespaces/{ns}``.
_NO_NAMESPACE_ENDPOINT_STATUSES = frozenset({400, 405, 501})
#: Why API 2026-07 refuses ``DELETE /namespaces/{ns}`` for an alias (``details[0].reason``): never a missing endpoint.
_ALIAS_REFUSALS = frozenset({"NAMESPACE_TARGETED_BY_ALIAS", "NAMESPACE_OPERATION_ON_ALIAS"})
#: How Pinecone words that a pod index does not serve an endpoint ("not supported for pod-based indexes").
_POD_ONLY_MARK = "pod-based indexes"


def _from_wire_namespace(name: str) -> str:
    return "" if name == PINECONE_DEFAULT_NAMESPACE else name


def _refused_for_a_pod(e: DataPlaneError) -> bool:
    """Whether a ``/namespaces`` or ``list`` refusal says the index does not serve the endpoint (a pod, Pinecone
    Local) or no such namespace: 404, or what a pod may answer (400/405/501)."""
    return e.status == 404 or e.status in _NO_NAMESPACE_ENDPOINT_STATUSES


_CLIENTS_BUILT = threading.Lock()


class PineconeStore(StoreDefaults):
    """``Store`` over one Pinecone index (by ``spec.host``, or ``spec.index`` resolved on the control plane).

    Parameters:
        spec: the store's spec (never holds the key; names its environment variable).
        timeout_s: per-request timeout in seconds.
        allowed_key_vars: the operator's ``NSMIGRATE_ALLOWED_KEY_VARS``: the key variables a spec may name.
    """

    def __init__(
        self,
        spec: PineconeStoreSpec,
        *,
        timeout_s: float = 30.0,
        allowed_key_vars: str = DEFAULT_ALLOWED_KEY_VARS,
    ) -> None:
        self.spec = spec
        self.name = spec.label
        self._timeout_s = timeout_s
        self._allowed_key_vars = allowed_key_vars
        self._plane: DataPlane | None = None
        self._plane_pid: int | None = None
        self._host: str | None = spec.host  # an index name's host once the control plane resolved it
        self._lock = threading.Lock()
        self._dimension: int | None = None
        self._metric: str | None = None  # an index's dimension and metric never change: read once, with its stats
        #: Whether the index serves ``/namespaces`` (serverless) — False once the control plane said it is a pod
        #: index, or once the endpoint refused; a pod empties a namespace with deleteAll instead.
        self._namespace_endpoints = True
        #: Whether it lists is the server's to say (a pod does not); where ``list_ids`` gets its ids when the index is
        #: not listed: a catalogue or a sweep; only listed ids are listed by prefix.
        self.capabilities = Capabilities(
            lists=None,
            enumeration=spec.enumerate.mode,
            lists_by_prefix=spec.enumerate.mode == "list",
            text_search=spec.records is not None,
            deletes_counted_by_record=True,
            reads_lag=True,
            # A listed vector index (not integrated: its records API reads text); a pod's queries are its sweeps'.
            reads_by_query=spec.enumerate.mode == "list" and spec.records is None,
        )
        self._is_pod: bool | None = None  # known once an index name was resolved on the control plane
        self._written = WrittenLsns()  # what this process's writes were answered (``written_lsns``)
        self.catalogue: CatalogueIds | None = None
        self.sweeper: SweepIds | None = None
        if spec.enumerate.mode == "catalogue":
            assert spec.enumerate.catalogue is not None  # the spec requires it
            self.catalogue = CatalogueIds(open_catalogue(spec.enumerate.catalogue))
        elif spec.enumerate.mode == "sweep":
            self.sweeper = SweepIds(spec.enumerate, self.name)

    def __repr__(self) -> str:
        return f"PineconeStore({self.name!r})"

    # --- plumbing -------------------------------------------------------------------------------------------------

    def _api_key(self) -> str:
        return api_key(self.spec, self.name, self._allowed_key_vars)

    def connect(self) -> None:
        """Build the data-plane client now (API key, index host, TLS context) rather than inside the first request, so
        that work is not done between a rate-budget admission and the request it admitted."""
        self._client()

    def _client(self) -> DataPlane:
        pid = os.getpid()
        # One client is built at a time in a process (``_CLIENTS_BUILT``): the SDK's first describe and the priming
        # below must not run beside another thread's first decode.
        with self._lock, _CLIENTS_BUILT:
            if self._plane is not None and self._plane_pid == pid:
                return self._plane
            # None yet, or inherited through fork: build our own (the parent's sockets are not ours to use).
            key = self._api_key()
            with self._errors("connect"):
                host = self.spec.host
                if host is None:
                    control: dict[str, Any] = {"host": self.spec.control_host} if self.spec.control_host else {}
                    if self.spec.control_host:
                        check_key_destination(self.spec.control_host, self.name)
                    pc = Pinecone(
                        api_key=key, retry_config=RetryConfig(max_retries=0), timeout=self._timeout_s, **control
                    )
                    described = pc.describe_index(str(self.spec.index))
                    host = described.host
                    self._is_pod = index_kind(described) == "pod"
                    if self._is_pod:
                        self._namespace_endpoints = False
                    dimension, metric = dense_shape(described, fallback=False)
                    if dimension:  # else read from describe_index_stats when asked
                        self._dimension, self._metric = dimension, metric
                    if not host:
                        raise StoreError(
                            f"index {self.spec.index!r} has no host yet", hint="wait until it is Ready", store=self.name
                        )
                check_key_destination(host, self.name)  # given, or the control plane's answer
                self._host = host
                plane = DataPlane(host, key, timeout_s=self._timeout_s)
            # The SDK still serves the control plane, here and in other threads (``pinecone_control``).
            prime_sdk_decoding()
            self._plane, self._plane_pid = plane, pid
            return plane

    def identity(self) -> str:
        """The index's identity (``orchestrator.spec.store_identity``): its data-plane host, an index name
        resolved."""
        if self._host is None:
            self._client()
        return pinecone_host_identity(str(self._host))

    @contextlib.contextmanager
    def _errors(self, op: str, namespace: str | None = None) -> Iterator[None]:
        with pinecone_errors(op, store=self.name, namespace=namespace):
            yield

    # --- Store ----------------------------------------------------------------------------------------------------

    def _stats(self) -> _StatsReply:
        """``describe_index_stats`` (every namespace of the index); remembers the dimension and metric."""
        with self._errors("describe_index_stats"):
            stats: _StatsReply = _read(_STATS_REPLY, self._client().post("/describe_index_stats", {}), "stats")
        if stats.dimension:
            self._dimension = int(stats.dimension)
        if stats.metric:
            self._metric = stats.metric
        return stats

    def dimension(self) -> int:
        if self._dimension is None and not self._stats().dimension:
            raise StoreError("the index reports no dense dimension", store=self.name)
        assert self._dimension is not None
        return self._dimension

    def metric(self) -> str | None:
        if self._metric is None:
            self._stats()
        return self._metric

    def namespaces(self) -> dict[str, int]:
        # Stats keep no empty namespaces on pod indexes; leave them out everywhere so stores agree.
        return {
            _from_wire_namespace(name): summary.vectorCount
            for name, summary in self._stats().namespaces.items()
            if summary.vectorCount
        }

    def count(self, namespace: str) -> int:
        """One namespace's count: ``describe_namespace`` where the index serves ``/namespaces`` (a small reply),
        else (a pod index, Pinecone Local) from ``describe_index_stats``, whose reply lists every namespace of the
        index: in an index of 12,000 namespaces, the largest read of a verification."""
        # Only ASCII names are described, as the SDK describes them (a namespace may hold any UTF-8); a NUL or an
        # over-long name cannot be a path segment. The stats count every name.
        if not (
            namespace
            and namespace.isascii()
            and "\0" not in namespace
            and len(namespace) <= NAMESPACE_MAX_CHARS
            and self._namespace_endpoints
        ):
            return self.namespaces().get(namespace, 0)
        with self._errors("describe_namespace", namespace):
            try:
                content = self._client().get(f"/namespaces/{path_segment(namespace)}")
                reply: _NamespaceReply = _read(_NAMESPACE_REPLY, content, "describe_namespace")
                return int(reply.record_count or 0)
            except DataPlaneError as e:
                if not self._endpoint_refused(e):
                    raise
        # No such namespace, or no such endpoint: the stats tell which.
        count = self.namespaces().get(namespace, 0)
        if count:
            self._namespace_endpoints = False  # the namespace exists: the endpoint does not (Pinecone Local)
        return count

    def _endpoint_refused(self, e: DataPlaneError) -> bool:
        """``_refused_for_a_pod``; a refusal in a pod's own words turns ``/namespaces`` off: never asked again."""
        if not _refused_for_a_pod(e):
            return False
        if _POD_ONLY_MARK in e.message:
            self._namespace_endpoints = False
        return True

    @property
    def counts_by_index(self) -> bool:
        """Whether a count is a ``describe_index_stats`` reading of the whole index, which verifications running
        at the same time can share (``workers.stores.shared_counts``)."""
        return not self._namespace_endpoints

    def can_list(self) -> bool:
        """Whether the index serves ``list`` (serverless does, a pod does not): from the control plane's description
        when the spec names the index, else by asking for one id."""
        self._client()
        if self._is_pod is not None:
            return not self._is_pod
        try:
            with self._errors("list"):
                self._client().get("/vectors/list", {"limit": 1})
        except StoreError as e:
            if isinstance(e.__cause__, DataPlaneError) and e.__cause__.status == 404:
                return False
            raise
        return True

    def list_ids(
        self, namespace: str, *, limit: int = 100, token: str | None = None, reads: SweepReads | None = None
    ) -> IdPage:
        """One page of ids: listed (serverless), or from the catalogue or a sweep (``spec.enumerate``). ``reads``:
        how a sweep queries and counts (a ``GuardedStore`` passes its budgeted, retried reads; default: this
        store's own)."""
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {limit}")
        limit = min(limit, LIST_MAX_PAGE_IDS)
        try:
            if self.catalogue is not None:
                return self.catalogue.list_ids(namespace, limit=limit, token=token)
            if self.sweeper is not None:
                own = SweepReads(self.query, self.namespaces, self.dimension, self.metric)
                return self.sweeper.list_ids(namespace, limit=limit, token=token, reads=reads or own)
        except ValueError as e:  # a token another enumeration made
            raise StoreError(f"{e}", store=self.name, namespace=namespace) from e
        return self._list_page(namespace, None, limit, token)

    def list_ids_by_prefix(self, namespace: str, prefix: str, *, limit: int = 100, token: str | None = None) -> IdPage:
        """One page of the ids that start with ``prefix`` (Pinecone's ``list`` with ``prefix``), in its order."""
        return self._list_page(namespace, prefix, limit, token)

    def _list_page(self, namespace: str, prefix: str | None, limit: int, token: str | None) -> IdPage:
        """One ``list`` request, its reply read as ids and a token (``_ListReply``): a namespace of three vectors is
        listed by its copy and twice by its verification."""
        params: dict[str, Any] = {"limit": min(limit, LIST_MAX_PAGE_IDS)}
        for name, value in (("namespace", namespace), ("prefix", prefix), ("paginationToken", token)):
            if value:
                params[name] = value
        with self._errors("list", namespace):
            reply: _ListReply = _read(_LIST_REPLY, self._client().get("/vectors/list", params), "list")
        next_token = reply.pagination.next if reply.pagination is not None else None
        return IdPage([item.id for item in reply.vectors], next_token or None, self._client().lsns()[1])

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[Record]:
        if not ids:
            return []
        if len(ids) > FETCH_MAX_IDS:
            raise ValueError(f"fetch takes ≤ {FETCH_MAX_IDS} ids per call, got {len(ids)}")
        params: dict[str, Any] = {"ids": list(ids)}
        if namespace:
            params["namespace"] = namespace
        with self._errors("fetch", namespace):
            content = self._client().get("/vectors/fetch", params)
            try:
                found = read_fetch(content)
            except msgspec.MsgspecError as e:
                raise StoreError(f"Pinecone fetch answered something that is not a fetch response: {e}") from e
        return [
            Record(
                id=i,
                values=JsonValues(found[i].values),
                metadata=found[i].metadata or {},
                sparse_values=_sparse(found[i].sparse),
            )
            for i in dict.fromkeys(ids)
            if i in found
        ]

    def upsert(self, namespace: str, records: Sequence[Record]) -> int:
        if not records:
            return 0
        if self.spec.records is not None:
            return self._upsert_text(namespace, records)
        # Checked before the request, so the error names every record; Pinecone would refuse them all unnamed.
        self._refuse(
            over_limits(records),
            "records exceed Pinecone's limits",
            f"fix those records in the source (ids: at most {RECORD_ID_MAX_CHARS} ASCII characters; metadata: at "
            f"most {RECORD_METADATA_MAX_BYTES} bytes, no key starting with '$'; values: not all zero), then "
            "`nsmigrate retry`",
            namespace,
        )
        with self._errors("upsert", namespace):
            content = self._client().post_json("/vectors/upsert", upsert_json(namespace, records))
            reply: _UpsertReply = _read(_UPSERT_REPLY, content, "upsert")
        self._note_write(namespace)
        return reply.upsertedCount

    def _refuse(self, problems: list[str], what: str, hint: str, namespace: str) -> None:
        """Raise one ``StoreError`` naming every problem record (the first 20), when there are any."""
        if problems:
            shown = "; ".join(problems[:20]) + (f"; … {len(problems) - 20} more" if len(problems) > 20 else "")
            raise StoreError(
                f"{len(problems)} {what}, nothing of this upsert was written: {shown}",
                hint=hint,
                store=self.name,
                namespace=namespace,
            )

    def _upsert_text(self, namespace: str, records: Sequence[Record]) -> int:
        """One records-API upsert (NDJSON): each record's metadata are its fields, its text under the index's field."""
        assert self.spec.records is not None
        field = self.spec.records.field
        blank = [r.id for r in records if not isinstance(r.metadata.get(field), str) or not r.metadata[field].strip()]
        self._refuse(
            over_limits(records, dense=False) + [f"id {_shown_id(i)} has no text in field {field!r}" for i in blank],
            "text records cannot be written",
            f"fix ids (at most {RECORD_ID_MAX_CHARS} ASCII characters) or fields (at most {RECORD_METADATA_MAX_BYTES} "
            "bytes, none starting with '$') in the source; a record needs its text (target.records.text_from)",
            namespace,
        )
        rows = [{**r.metadata, "_id": r.id} for r in records]
        # The records API has no implicit default namespace: it is named.
        path = f"/records/namespaces/{path_segment(namespace or PINECONE_DEFAULT_NAMESPACE)}/upsert"
        with self._errors("upsert_records", namespace):
            self._client().post_ndjson(path, rows)
        self._note_write(namespace)
        return len(rows)

    def search_text(self, namespace: str, text: str, top_k: int) -> list[str]:
        """Ids of the ``top_k`` records an integrated index finds for ``text`` (it embeds the query), best first."""
        body: dict[str, Any] = {"query": {"inputs": {"text": text}, "top_k": top_k}}
        if self.spec.records is not None:
            body["fields"] = [self.spec.records.field]
        path = f"/records/namespaces/{path_segment(namespace or PINECONE_DEFAULT_NAMESPACE)}/search"
        with self._errors("search", namespace):
            reply: _SearchReply = _read(_SEARCH_REPLY, self._client().post(path, body), "search")
        return [hit.id for hit in reply.result.hits]

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        with self._errors("delete", namespace):
            for start in range(0, len(ids), DELETE_MAX_IDS):
                body = {"ids": list(ids[start : start + DELETE_MAX_IDS]), "namespace": namespace}
                self._client().post("/vectors/delete", body)
                self._note_write(namespace)

    def delete_namespace(self, namespace: str) -> None:
        """Delete a namespace the way the index kind allows: ``DELETE /namespaces/{ns}`` on serverless, emptying it
        with ``deleteAll`` on a pod index (which does not serve ``/namespaces``), on Pinecone Local and on servers
        that answer the endpoint 404."""
        with self._errors("delete_namespace", namespace):
            plane = self._client()
            if namespace and self._namespace_endpoints:
                try:
                    plane.delete(f"/namespaces/{path_segment(namespace)}")
                    return
                except DataPlaneError as e:
                    # 404: no such endpoint (a pod index, Pinecone Local) or no such namespace; a pod may also
                    # answer 400/405/501. Emptying the namespace covers every case, but a refusal for an alias: the
                    # namespace stays, serving what the alias reads, and the caller must hear it.
                    if e.reason in _ALIAS_REFUSALS or not self._endpoint_refused(e):
                        raise
                    logger.info(
                        "DELETE /namespaces refused on %s (%s); emptying %r with deleteAll", self.name, e, namespace
                    )
            try:
                plane.post("/vectors/delete", {"deleteAll": True, "namespace": namespace})
            except DataPlaneError as e:
                if e.status != 404:  # no such namespace: nothing to empty
                    raise

    def _note_write(self, namespace: str) -> None:
        self._written.note(namespace, self._client().lsns()[0])

    def written_lsns(self) -> AbstractContextManager[dict[str, int]]:
        """While open, the highest log sequence number each namespace's writes were answered (none for a pod index
        or a server that sends no LSN)."""
        return self._written.watch()

    def reconciled_lsn(self, namespace: str) -> int | None:
        """The log sequence number the index's lagging reads of ``namespace`` reflect now (one ``list`` of one id),
        None when it does not say (a pod index lists nothing; a server that sends no LSN)."""
        if self._is_pod or self.catalogue is not None or self.sweeper is not None:
            return None
        params: dict[str, Any] = {"limit": 1, **({"namespace": namespace} if namespace else {})}
        with self._errors("list", namespace):
            try:
                self._client().get("/vectors/list", params)
            except DataPlaneError as e:
                if e.status == 404:  # a pod's list: no LSN to read
                    return None
                raise
        return self._client().lsns()[1]

    def query(self, namespace: str, vector: Sequence[float], top_k: int) -> list[str]:
        return [match_id for match_id, _ in self.query_scored(namespace, vector, top_k)]

    def query_scored(self, namespace: str, vector: Sequence[float], top_k: int) -> list[tuple[str, float]]:
        """``(id, score)`` of the ``top_k`` nearest, best first, with Pinecone's own scores (higher is closer for
        cosine and dotproduct, lower for euclidean): what a cross-twin search merges on."""
        body: dict[str, Any] = {"vector": list(vector), "topK": top_k, "includeValues": False, "includeMetadata": False}
        if namespace:
            body["namespace"] = namespace
        with self._errors("query", namespace):
            reply: _QueryReply = _read(_QUERY_REPLY, self._client().post("/query", body), "query")
        return [(match.id, float(match.score or 0.0)) for match in reply.matches]

    def query_records(self, namespace: str, top_k: int) -> list[Record]:
        """The ``top_k`` records nearest to the first axis, each with its values (as the JSON sent, like ``fetch``'s),
        sparse values and metadata. Any vector would do: a caller asks for more than the namespace holds and keeps
        the ids it listed (``workers.steps.whole_reads``).

        Raises:
            StoreError: the answer's values alone would take over half of Pinecone's 4 MB (the rest is left for ids
                and metadata), or ``top_k`` is over 1,000: not sent, as Pinecone would refuse it.
        """
        dimension = self.dimension()  # read once, with the index's stats
        if not fits_one_query(top_k, dimension):
            raise StoreError(f"{top_k} records of {dimension} values are too many for one query's answer")
        axis = [1.0] + [0.0] * (dimension - 1)
        body: dict[str, Any] = {"vector": axis, "topK": top_k, "includeValues": True, "includeMetadata": True}
        if namespace:
            body["namespace"] = namespace
        with self._errors("query", namespace):
            reply: _RecordsReply = _read(_RECORDS_REPLY, self._client().post("/query", body), "query")
        return [
            Record(
                id=match.id,
                values=JsonValues(bytes(match.values)),
                metadata=match.metadata or {},
                sparse_values=_sparse(match.sparseValues),
            )
            for match in reply.matches
        ]

    def query_filtered(
        self,
        namespace: str,
        top_k: int,
        metadata_filter: Mapping[str, Any],
        *,
        vector: Sequence[float] | None = None,
        id: str | None = None,
    ) -> list[str]:
        """The ids of the ``top_k`` nearest to ``vector`` (or to the stored vector ``id``) among the records whose
        metadata ``metadata_filter`` (Pinecone's filter language) matches, best first: an application's filtered
        query, as ``cutover check`` replays it on both sides."""
        body: dict[str, Any] = {"topK": top_k, "filter": dict(metadata_filter), "includeMetadata": False}
        if vector is not None:
            body["vector"] = list(vector)
        else:
            body["id"] = id
        if namespace:
            body["namespace"] = namespace
        with self._errors("query", namespace):
            reply: _QueryReply = _read(_QUERY_REPLY, self._client().post("/query", body), "query")
        return [match.id for match in reply.matches]

    def namespace_aliases(self) -> NamespaceAliases:
        """The index's namespace aliases (API 2026-07): create, describe, list, repoint, delete."""
        return NamespaceAliases(self._client, self.name)

    def bulk_imports(self) -> BulkImports:
        """The index's bulk imports (API 2026-07): start, describe, cancel."""
        return BulkImports(self._client, self.name)

    def aliases(self) -> dict[str, str]:
        """Every namespace alias of the index → the namespace it resolves to; {} for an index that serves none (a pod
        index serves none: not asked)."""
        if self._is_pod:
            return {}
        return {a.name: a.target_namespace for a in self.namespace_aliases().list()}

    def close(self) -> None:
        """Release this process's HTTP connections."""
        with self._lock:
            if self._plane is not None and self._plane_pid == os.getpid():
                with contextlib.suppress(Exception):
                    self._plane.close()
            self._plane = None
