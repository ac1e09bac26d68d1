"""The Pinecone control plane, for what nsmigrate creates: serverless target indexes, the collection path (a
collection of a pod index, then a serverless index created from it) and conversions into a document index. Implements
``orchestrator.planning.target_indexes.IndexControl``.

Everything goes through the real SDK (API version 2026-07) except **creating an index from a collection**: SDK 10.x
refuses ``source_collection`` before sending, and the service refuses it under 2026-07 ("Creating an index from
collection or backup is not yet supported"). That one request is sent as Pinecone documents it for earlier API
versions, with ``X-Pinecone-Api-Version: 2026-04`` (``COLLECTION_API_VERSION``, the version of the reference spec in
``tests/fixtures/reference/pinecone-api``). SDK 10.2 has no call for **conversions** either: they are sent as
Pinecone's 2026-07 reference documents them (``POST /indexes/{name}/convert``, ``GET /conversion-jobs[/{id}]``). The
key is read from the environment variable the spec names, on first use, and never appears in a message.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pinecone import NotFoundError, Pinecone

from nsmigrate.orchestrator.connections.keys import DEFAULT_ALLOWED_KEY_VARS
from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.planning.convert_strategy import ConversionInfo
from nsmigrate.orchestrator.planning.target_indexes import IndexInfo, IndexShape
from nsmigrate.orchestrator.redaction import redact_url
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.pinecone.access import api_key, check_key_destination, pinecone_errors
from nsmigrate.workers.stores.pinecone.described import dense_shape, deployment_place, index_kind

#: The last API version that creates an index from a collection (2026-07 refuses it).
COLLECTION_API_VERSION = "2026-04"
#: The API version whose control plane converts an index (and the SDK's).
CONVERT_API_VERSION = "2026-07"
DEFAULT_CONTROL_HOST = "https://api.pinecone.io"


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as the control plane describes it (size and count are known once it is Ready)."""

    name: str
    status: str
    dimension: int | None
    vector_count: int | None
    size_bytes: int | None


def _kind(spec: Any) -> str:
    if isinstance(spec, dict):
        return "pod" if spec.get("pod") else "serverless"
    return "pod" if getattr(spec, "pod", None) is not None else "serverless"


def _semantic_field(model: Any) -> tuple[str | None, str | None]:
    """An integrated index's (model, text field): its schema's one ``semantic_text`` field (SDK 10, API 2026-07)."""
    fields = getattr(getattr(model, "schema", None), "fields", None) or {}
    for name, described in dict(fields).items():
        if type(described).__name__ == "SemanticTextField":
            return str(described.model), str(name)
    return None, None


def _document_fields(model: Any) -> tuple[str | None, str | None]:
    """A document index's (dense_vector, sparse_vector) field names; (None, None) for a legacy index, whose vector
    fields are the reserved ``_values`` and ``_sparse_values``."""
    fields = dict(getattr(getattr(model, "schema", None), "fields", None) or {})
    found: dict[str, str] = {}
    for name, described in fields.items():
        kind = type(described).__name__
        if kind in ("DenseVectorField", "SparseVectorField") and not str(name).startswith("_"):
            found[kind] = str(name)
    return found.get("DenseVectorField"), found.get("SparseVectorField")


def document_schema(shape: IndexShape) -> dict[str, Any]:
    """The ``schema`` a document index of ``shape`` is created with: its dense, sparse and full-text fields."""
    fields: dict[str, Any] = {
        str(shape.dense_field): {"type": "dense_vector", "dimension": shape.dimension, "metric": shape.metric}
    }
    if shape.sparse_field is not None:
        fields[shape.sparse_field] = {"type": "sparse_vector"}
    for name in shape.text_fields:
        fields[name] = {"type": "string", "full_text_search": {"language": "en"}}
    return {"fields": fields}


def _conversion(data: dict[str, Any]) -> ConversionInfo:
    """``ConversionInfo`` from a conversion job as the control plane writes it."""
    try:
        return ConversionInfo(
            job_id=str(data["conversion_job_id"]),
            status=str(data["status"]),
            source=str(data.get("source_index_name") or ""),
            target=str(data.get("target_index_name") or ""),
            percent_complete=float(data.get("percent_complete") or 0.0),
            records_converted=int(data.get("records_converted") or 0),
            records_skipped=int(data.get("records_skipped") or 0),
            error=str(data["error"]) if data.get("error") else None,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(
            f"the Pinecone control plane described a conversion job without {e} ({sorted(data)[:12]})",
            hint="check the control plane's API version (2026-07 converts indexes) and control_host",
        ) from e


def index_info(model: Any) -> IndexInfo:
    """``IndexInfo`` from the SDK's ``IndexModel``."""
    status = getattr(model, "status", None)
    embed_model, text_field = _semantic_field(model)
    dense_field, sparse_field = _document_fields(model)
    dimension, metric = dense_shape(model)
    cloud, region = deployment_place(model)
    return IndexInfo(
        name=str(model.name),
        dimension=dimension,
        metric=metric,
        kind=index_kind(model),
        ready=bool(getattr(status, "ready", False)),
        state=str(getattr(status, "state", "") or ""),
        host=getattr(model, "host", None),
        model=embed_model,
        text_field=text_field,
        dense_field=dense_field,
        sparse_field=sparse_field,
        cloud=cloud,
        region=region,
    )


class PineconeControl:
    """The control plane of the project a Pinecone store spec points at (its key, its ``control_host``)."""

    def __init__(
        self, spec: PineconeStoreSpec, *, timeout_s: float = 30.0, allowed_key_vars: str = DEFAULT_ALLOWED_KEY_VARS
    ) -> None:
        self.spec = spec
        self._allowed_key_vars = allowed_key_vars
        self.name = f"control:{spec.label}"
        self.host = (spec.control_host or DEFAULT_CONTROL_HOST).rstrip("/")
        self._timeout_s = timeout_s
        self._client: Pinecone | None = None
        self._lock = threading.Lock()

    def _key(self) -> str:
        """The key, for a request to ``self.host`` (every request of the control plane goes there)."""
        check_key_destination(self.host, self.name)
        return api_key(self.spec, self.name, self._allowed_key_vars)

    def _pc(self) -> Pinecone:
        with self._lock:
            if self._client is None:
                self._client = Pinecone(api_key=self._key(), host=self.host, timeout=self._timeout_s)
            return self._client

    # --- indexes (orchestrator.planning.target_indexes.IndexControl) -----------------------------------------------

    def describe_index(self, name: str) -> IndexInfo | None:
        with pinecone_errors("describe_index", store=self.name, index=name):
            try:
                return index_info(self._pc().describe_index(name))
            except NotFoundError:
                return None

    def create_index(self, name: str, shape: IndexShape) -> IndexInfo:
        if shape.model is not None:
            return self._create_integrated(name, shape)
        field = {"type": f"{shape.vector_type}_vector", "dimension": shape.dimension, "metric": shape.metric}
        schema = document_schema(shape) if shape.dense_field is not None else {"fields": {"_values": field}}
        with pinecone_errors("create_index", store=self.name, index=name):
            model = self._pc().indexes.create(
                name=name,
                schema=schema,
                deployment={"deployment_type": "managed", "cloud": shape.cloud, "region": shape.region},
                deletion_protection=shape.deletion_protection,
                tags=dict(shape.tags) or None,
                # nsmigrate waits itself, with progress (orchestrator.planning.target_indexes.wait_until_ready)
                timeout=-1,
            )
        return index_info(model)

    def _create_integrated(self, name: str, shape: IndexShape) -> IndexInfo:
        """An index with integrated embedding (``create_index_for_model``): ``shape.model`` embeds ``text_field``."""
        embed: dict[str, Any] = {"model": shape.model, "field_map": {"text": shape.text_field}}
        if shape.dimension:
            embed["dimension"] = shape.dimension
        if shape.metric:
            embed["metric"] = shape.metric
        with pinecone_errors("create_index_for_model", store=self.name, index=name):
            model = self._pc().create_index_for_model(
                name=name,
                cloud=shape.cloud,
                region=shape.region,
                embed=embed,
                deletion_protection=shape.deletion_protection,
                tags=dict(shape.tags) or None,
                timeout=-1,  # nsmigrate waits itself (orchestrator.planning.target_indexes.wait_until_ready)
            )
        return index_info(model)

    def create_index_from_collection(self, name: str, collection: str, shape: IndexShape) -> IndexInfo:
        """Start creating a serverless index holding ``collection``'s records (sent under API 2026-04, see the
        module docstring); returns at once."""
        serverless = {"cloud": shape.cloud, "region": shape.region, "source_collection": collection}
        body: dict[str, Any] = {
            "name": name,
            "dimension": shape.dimension,
            "metric": shape.metric,
            "deletion_protection": shape.deletion_protection,
            "spec": {"serverless": serverless},
        }
        if shape.tags:
            body["tags"] = dict(shape.tags)
        data = self._raw("POST", "/indexes", "create_index_from_collection", json=body)
        return IndexInfo(
            name=str(data.get("name", name)),
            dimension=data.get("dimension"),
            metric=data.get("metric"),
            kind="pod" if _kind(data.get("spec") or {}) == "pod" else "serverless",
            ready=bool((data.get("status") or {}).get("ready")),
            state=str((data.get("status") or {}).get("state") or ""),
            host=data.get("host"),
        )

    # --- collections ---------------------------------------------------------------------------------------------

    def create_collection(self, name: str, source: str) -> CollectionInfo:
        with pinecone_errors("create_collection", store=self.name, collection=name):
            return self._collection(self._pc().collections.create(name=name, source=source))

    def describe_collection(self, name: str) -> CollectionInfo | None:
        with pinecone_errors("describe_collection", store=self.name, collection=name):
            try:
                return self._collection(self._pc().collections.describe(name))
            except NotFoundError:
                return None

    def delete_collection(self, name: str) -> None:
        with pinecone_errors("delete_collection", store=self.name, collection=name), contextlib.suppress(NotFoundError):
            self._pc().collections.delete(name)

    @staticmethod
    def _collection(model: Any) -> CollectionInfo:
        return CollectionInfo(
            name=str(model.name),
            status=str(model.status),
            dimension=model.dimension,
            vector_count=model.vector_count,
            size_bytes=model.size,
        )

    # --- conversions into a document index ------------------------------------------------------------------------

    def start_conversion(self, source: str, target: str, shape: IndexShape, on_error: str = "abort") -> ConversionInfo:
        """Start converting index ``source`` into a new document index ``target`` of ``shape`` (its schema, tags and
        deletion protection); returns once Pinecone created the index, ``Initializing``."""
        body: dict[str, Any] = {
            "name": target,
            "schema": document_schema(shape),
            "error_mode": {"on_error": on_error},
            "deletion_protection": shape.deletion_protection,
        }
        if shape.tags:
            body["tags"] = dict(shape.tags)
        path = f"/indexes/{quote(source, safe='')}/convert"
        return _conversion(self._raw("POST", path, "convert_index", version=CONVERT_API_VERSION, json=body))

    def describe_conversion(self, job_id: str) -> ConversionInfo | None:
        """The conversion job, or None when the control plane does not know it."""
        path = f"/conversion-jobs/{quote(job_id, safe='')}"
        data = self._raw("GET", path, "describe_conversion_job", version=CONVERT_API_VERSION, missing_ok=True)
        return _conversion(data) if data else None

    def newest_conversion(self, source: str, target: str) -> ConversionInfo | None:
        """The newest conversion job of index ``source`` into ``target`` (the list is newest first), or None."""
        token: str | None = None
        while True:
            params = {"limit": 100, **({"paginationToken": token} if token else {})}
            op = "list_conversion_jobs"
            data = self._raw("GET", "/conversion-jobs", op, version=CONVERT_API_VERSION, params=params)
            for job in data.get("data") or []:
                if job.get("target_index_name") == target and job.get("source_index_name") == source:
                    return _conversion(job)
            token = (data.get("pagination") or {}).get("next")
            if not token:
                return None

    # --- plumbing ------------------------------------------------------------------------------------------------

    def _raw(
        self,
        method: str,
        path: str,
        op: str,
        *,
        version: str = COLLECTION_API_VERSION,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """One request sent as Pinecone documents it, under API ``version``; ``missing_ok``: a 404 answers {}."""
        headers = {"Api-Key": self._key(), "X-Pinecone-Api-Version": version}
        ids: dict[str, Any] = {"store": self.name, "op": op}
        try:
            response = httpx.request(method, self.host + path, headers=headers, timeout=self._timeout_s, **kwargs)
        except httpx.TransportError as e:
            raise RetryableError(f"Pinecone {op} did not complete: {e}", **ids) from e
        if response.status_code < 300:
            return self._json_answer(response, op, ids)
        if response.status_code == 404 and missing_ok:
            return {}
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise RetryableError(f"Pinecone {op} failed ({response.status_code}): {message}", **ids)
        raise StoreError(f"Pinecone refused {op} ({response.status_code}): {message}", **ids)

    def _json_answer(self, response: httpx.Response, op: str, ids: dict[str, Any]) -> dict[str, Any]:
        """A success's JSON object. Anything else came from something between nsmigrate and Pinecone (a proxy or
        load balancer), so whether ``op`` was done is unknown: a refusal that says so, not a bare decoding error."""
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            return data
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        shown = " ".join(response.text.split())[:200]
        raise StoreError(
            f"the Pinecone control plane {redact_url(self.host)} answered {op} with {response.status_code} but not "
            f"JSON ({kind}: {shown}), so whether {op} was done is unknown",
            hint="something between nsmigrate and Pinecone answered in its place: check control_host and the "
            "network path to it (a proxy, a load balancer); a retried step takes up what was done",
            **ids,
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                close = getattr(self._client, "close", None)
                if close is not None:
                    close()
            self._client = None
