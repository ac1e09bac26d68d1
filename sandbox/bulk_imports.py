"""Bulk imports of one index of the local data plane (``/bulk/imports``, API 2026-07), read from S3-compatible
object storage as Pinecone reads them.

What Pinecone's spec (``db_data_2026-07.oas.yaml``: ``StartImportRequest``, ``ImportModel``, ``ListImportsResponse``)
and its guides (``guides/index-data/import-data``, ``guides/legacy/vectors-api/import-vectors``, "Understanding
imports", "Import limits") say, and this module does:

- ``POST /bulk/imports {uri, integrationId?, errorMode.onError?}`` answers ``{"id"}`` at once; the import runs in the
  background: ``Pending``, then ``InProgress`` with ``percentComplete`` and ``recordsImported`` growing file by file,
  then ``InProgress`` at 100 % while the records are indexed, then ``Completed`` (or ``Failed`` with ``error``, or
  ``Cancelled``). It always takes time: Pinecone's take at least 10 minutes; here ``ObjectStorage.pace_s`` (a second
  unless told) spread over those steps.
- Layout: the URI is a directory holding one sub-directory per namespace (``__default__`` for the default one); in
  each, every ``.parquet`` file (a vector index) or ``.jsonl`` file (a document index) is imported, other files are
  ignored. A directory without such files imports nothing and fails the import.
- Parquet columns: ``id`` (string), ``values`` (list of floats, the index's dimension), ``metadata`` (a JSON object
  as a string, optional, NULL for none), ``sparse_values`` (optional struct of ``indices`` and ``values``); other
  columns are ignored. JSONL: one document per line, parsed and checked as an upserted document is (strict JSON in
  UTF-8).
- Refused when it starts, nothing imported: a namespace that exists in the index already (imports write only new
  namespaces; the default namespace must be empty), more than 100 namespaces, 100,000 files or 10 GB in one file, a
  bucket the index cannot read (no integration and not public, or an integration without access), a pod index
  (400), an index with integrated embedding (400), an unknown ``integrationId`` (400).
- ``errorMode.onError``: ``abort`` (the default) fails the import at the first record it cannot read, the records of
  the files before it stay imported (``recordsImported`` says how many); ``continue`` skips such records and counts
  them in ``validationResult.importErrors``.
- ``DELETE /bulk/imports/{id}`` cancels an import that has not finished (what it imported stays); it has no effect on
  a finished one. ``GET /bulk/imports`` lists them, ``limit`` 1–100 (default 100) with ``paginationToken``.

Where the objects are is set per index with ``POST /_sandbox/object-storage`` (``ObjectStorage``), or for the project
with ``PineconeSandbox.set_object_storage(None, …)`` (an index created later reads it too): the endpoint of the
S3-compatible server that stands in for S3, and the storage integrations of the project (id → access keys). Without
``integrationId`` the bucket is read anonymously, as a public bucket is; the server decides whether it may be.
"""

from __future__ import annotations

import builtins
import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from nsmigrate_sandbox.pinecone_server import (
    IMPORT_OPS,
    MAX_ID_LENGTH,
    _bad,
    _dense_values,
    _Record,
    _Refusal,
    _sparse_values,
    is_ascii_name,
    validate_metadata,
)

if TYPE_CHECKING:
    from nsmigrate_sandbox.pinecone_server import IndexService

__all__ = ["IMPORT_OPS", "BulkImports", "ObjectStorage"]

MAX_URI_CHARS = 1500
MAX_INTEGRATION_ID_CHARS = 1000
MAX_IMPORT_ID_CHARS = 1000
MAX_LIST_LIMIT = 100
#: "Import limits" (Pinecone docs): namespaces and files per import, bytes per file.
MAX_NAMESPACES = 100
MAX_FILES = 100_000
MAX_FILE_BYTES = 10 * 10**9
DEFAULT_NAMESPACE_DIR = "__default__"
TERMINAL = frozenset({"Completed", "Failed", "Cancelled"})


@dataclass(frozen=True)
class ObjectStorage:
    """Where an index's imports read from: ``endpoint_url`` of the S3-compatible server, ``integrations`` (id →
    ``{"access_key_id", "secret_access_key"}``), and ``pace_s``, the least time an import takes."""

    endpoint_url: str
    region: str = "us-east-1"
    integrations: dict[str, dict[str, str]] = field(default_factory=dict)
    pace_s: float = 1.0

    @classmethod
    def from_dict(cls, data: Any) -> ObjectStorage:
        if not isinstance(data, dict) or not isinstance(data.get("endpoint_url"), str):
            raise _bad("object storage needs endpoint_url (the S3-compatible server's URL)")
        unknown = sorted(set(data) - {"endpoint_url", "region", "integrations", "pace_s"})
        if unknown:
            raise _bad(f"unknown object storage keys {unknown}")
        integrations = data.get("integrations") or {}
        for key in integrations.values():
            if not isinstance(key, dict) or set(key) != {"access_key_id", "secret_access_key"}:
                raise _bad("an integration is {access_key_id, secret_access_key}")
        pace = float(data.get("pace_s", 1.0))
        if not 0 <= pace <= 3600:
            raise _bad("pace_s must be within 0..3600 seconds")
        return cls(data["endpoint_url"], str(data.get("region", "us-east-1")), dict(integrations), pace)


class _Failed(Exception):
    """The import fails with this message."""


@dataclass
class _Import:
    id: str
    uri: str
    integration: str | None
    on_error: str
    created_at: str
    status: str = "Pending"
    percent: float = 0.0
    imported: int = 0
    errors: int = 0
    error: str | None = None
    finished_at: str | None = None
    validated: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)

    def model(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "uri": self.uri,
            "status": self.status,
            "createdAt": self.created_at,
            "percentComplete": round(self.percent, 1),
            "recordsImported": self.imported,
        }
        if self.finished_at is not None:
            body["finishedAt"] = self.finished_at
        if self.error is not None:
            body["error"] = self.error
        if self.validated:
            body["validationResult"] = {"importSuccesses": self.imported, "importErrors": self.errors}
        return body


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BulkImports:
    """The imports of one index and the object storage they read from."""

    def __init__(self, service: IndexService) -> None:
        self.service = service
        self.storage: ObjectStorage | None = None
        self._imports: dict[str, _Import] = {}
        self._next = 1
        self._lock = threading.Lock()

    def routes(self) -> dict[tuple[str, str], tuple[str, Callable[..., Any]]]:
        return {
            ("POST", "/bulk/imports"): ("start_import", self.start),
            ("GET", "/bulk/imports"): ("list_imports", self.list),
            ("GET", "/bulk/imports/{}"): ("describe_import", self.describe),
            ("DELETE", "/bulk/imports/{}"): ("cancel_import", self.cancel),
        }

    def clear(self) -> None:
        with self._lock:
            for running in self._imports.values():
                running.cancelled.set()
            self._imports.clear()
            self._next = 1

    # -- operations

    def start(self, payload: Any, _query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        spec = self.service.spec
        if spec.kind == "pod":
            raise _bad("Bulk import is supported only for serverless indexes")
        if spec.embed is not None:
            raise _bad("Bulk import does not support indexes with integrated embedding")
        if not isinstance(payload, dict):
            raise _bad("Request body must be a JSON object")
        unknown = sorted(set(payload) - {"uri", "integrationId", "errorMode"})
        if unknown:
            raise _bad(f"Unknown fields in the request: {unknown}")
        uri = payload.get("uri")
        if not isinstance(uri, str) or not 1 <= len(uri) <= MAX_URI_CHARS:
            raise _bad(f"uri must be a string of 1 to {MAX_URI_CHARS} characters")
        integration = payload.get("integrationId")
        if integration is not None and (
            not isinstance(integration, str) or len(integration) > MAX_INTEGRATION_ID_CHARS
        ):
            raise _bad(f"integrationId must be a string of at most {MAX_INTEGRATION_ID_CHARS} characters")
        mode = payload.get("errorMode") or {}
        if not isinstance(mode, dict) or set(mode) - {"onError"}:
            raise _bad("errorMode must be an object {onError}")
        on_error = str(mode.get("onError", "abort")).lower()
        if on_error not in ("abort", "continue"):
            raise _bad(f"errorMode.onError must be abort or continue, got {mode.get('onError')!r}")
        parts = urlsplit(uri)
        if parts.scheme not in ("s3", "gs", "https") or not parts.netloc:
            raise _bad(f"uri {uri!r} is not an s3://, gs:// or Azure Blob Storage https:// URI of a bucket")
        if parts.scheme != "s3":
            raise _bad(f"this index is hosted where it can import from s3:// only, not {parts.scheme}://")
        storage = self.storage
        if integration is not None and (storage is None or integration not in storage.integrations):
            raise _bad(f"Storage integration {integration!r} not found in this project")
        with self._lock:
            job = _Import(str(self._next), uri, integration, on_error, _now())
            self._next += 1
            self._imports[job.id] = job
        threading.Thread(target=self._run, args=(job, storage), name=f"import-{job.id}", daemon=True).start()
        return {"id": job.id}

    def list(self, _payload: Any, query: dict[str, list[str]], _arg: str | None) -> dict[str, Any]:
        limit = query.get("limit", ["100"])[-1]
        try:
            size = int(limit)
        except ValueError as exc:
            raise _bad(f"limit must be an integer, got {limit!r}") from exc
        if not 1 <= size <= MAX_LIST_LIMIT:
            raise _bad(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        token = query.get("paginationToken", [None])[-1]
        with self._lock:
            ids = sorted(self._imports, key=int)
            after = int(token) if token and token.isdigit() else 0
            if token and not token.isdigit():
                raise _bad("paginationToken is not one this index gave")
            page = [i for i in ids if int(i) > after][: size + 1]
            body: dict[str, Any] = {"data": [self._imports[i].model() for i in page[:size]]}
        if len(page) > size:
            body["pagination"] = {"next": page[size - 1]}
        return body

    def describe(self, _payload: Any, _query: dict[str, builtins.list[str]], arg: str | None) -> dict[str, Any]:
        return self._find(arg).model()

    def cancel(self, _payload: Any, _query: dict[str, builtins.list[str]], arg: str | None) -> dict[str, Any]:
        job = self._find(arg)
        with self._lock:
            if job.status not in TERMINAL:
                job.cancelled.set()
                job.status, job.finished_at = "Cancelled", _now()
        return {}

    def _find(self, arg: str | None) -> _Import:
        if not arg or len(arg) > MAX_IMPORT_ID_CHARS:
            raise _bad(f"import id must be 1 to {MAX_IMPORT_ID_CHARS} characters")
        with self._lock:
            job = self._imports.get(arg)
        if job is None:
            raise _Refusal(404, f"Import {arg} not found")
        return job

    # -- the import itself

    def _run(self, job: _Import, storage: ObjectStorage | None) -> None:
        pace = storage.pace_s if storage is not None else 1.0
        try:
            self._wait(job, pace / 4)
            self._move(job, "InProgress")
            files = self._layout(job, storage)
            total = sum(size for _, _, size in files) or 1
            done = 0
            for namespace, key, size in files:
                self._import_file(job, storage, namespace, key)
                done += size
                with self._lock:
                    if job.status == "InProgress":
                        job.percent = min(100.0, 100.0 * done / total)
                self._wait(job, pace / (2 * max(len(files), 1)))
            with self._lock:
                if job.status == "InProgress":
                    job.percent, job.validated = 100.0, True
            self._wait(job, pace / 4)  # indexing: InProgress at 100 %
            self._move(job, "Completed")
        except _Cancelled:
            return
        except _Failed as failure:
            with self._lock:
                if job.status not in TERMINAL:
                    job.status, job.error, job.finished_at = "Failed", str(failure), _now()

    def _wait(self, job: _Import, seconds: float) -> None:
        if job.cancelled.wait(seconds):
            raise _Cancelled

    def _move(self, job: _Import, status: str) -> None:
        with self._lock:
            if job.cancelled.is_set():
                raise _Cancelled
            job.status = status
            if status in TERMINAL:
                job.finished_at = _now()

    def _client(self, job: _Import, storage: ObjectStorage | None) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        if storage is None:
            raise _Failed(f"Unable to access {job.uri}: no object storage is reachable from this index")
        if job.integration is None:
            return boto3.client(
                "s3",
                endpoint_url=storage.endpoint_url,
                region_name=storage.region,
                config=Config(signature_version=UNSIGNED),
            )
        key = storage.integrations[job.integration]
        return boto3.client(
            "s3",
            endpoint_url=storage.endpoint_url,
            region_name=storage.region,
            aws_access_key_id=key["access_key_id"],
            aws_secret_access_key=key["secret_access_key"],
        )

    def _layout(self, job: _Import, storage: ObjectStorage | None) -> builtins.list[tuple[str, str, int]]:
        """The files to import as (namespace, key, bytes), namespaces checked new; raises ``_Failed``."""
        from botocore.exceptions import BotoCoreError, ClientError

        parts = urlsplit(job.uri)
        bucket, prefix = parts.netloc, parts.path.lstrip("/")
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        suffix = ".jsonl" if self.service.spec.documents is not None else ".parquet"
        client = self._client(job, storage)
        job_files: list[tuple[str, str, int]] = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    rest = item["Key"][len(prefix) :].split("/")
                    if len(rest) == 2 and rest[0] and rest[1].endswith(suffix):
                        job_files.append((rest[0], item["Key"], int(item["Size"])))
        except (ClientError, BotoCoreError) as e:
            raise _Failed(f"Unable to access {job.uri}: {e}") from e
        namespaces = sorted({ns for ns, _, _ in job_files})
        if not job_files:
            raise _Failed(
                f"No {suffix} files found in a namespace directory of {job.uri}: lay out one directory per namespace "
                f"({DEFAULT_NAMESPACE_DIR} for the default namespace) holding the {suffix} files"
            )
        if len(namespaces) > MAX_NAMESPACES:
            raise _Failed(f"The import names {len(namespaces)} namespaces; one import takes at most {MAX_NAMESPACES}")
        if len(job_files) > MAX_FILES:
            raise _Failed(f"The import holds {len(job_files)} files; one import takes at most {MAX_FILES}")
        big = [key for _, key, size in job_files if size > MAX_FILE_BYTES]
        if big:
            raise _Failed(f"File {big[0]} is larger than {MAX_FILE_BYTES // 10**9} GB, the most one file may hold")
        counts = self.service.store.counts(latest=True)
        for ns in namespaces:
            name = "" if ns == DEFAULT_NAMESPACE_DIR else ns
            if name == "" and counts.get(name, 0):
                raise _Failed(
                    "The default namespace is not empty: an import writes only into an empty default namespace"
                )
            if name and (name in counts or self.service.store._ns(name) is not None):
                raise _Failed(f"Namespace {name} already exists: an import writes only into new namespaces")
        return [("" if ns == DEFAULT_NAMESPACE_DIR else ns, key, size) for ns, key, size in sorted(job_files)]

    def _import_file(self, job: _Import, storage: ObjectStorage | None, namespace: str, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket = urlsplit(job.uri).netloc
        try:
            body = self._client(job, storage).get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as e:
            raise _Failed(f"Unable to access s3://{bucket}/{key}: {e}") from e
        read = (
            _documents(self.service, body, key) if self.service.spec.documents is not None else self._vectors(body, key)
        )
        records: list[tuple[str, _Record]] = []
        for row, got in enumerate(read):
            if isinstance(got, str):
                if job.on_error == "abort":
                    self._put(job, namespace, records)
                    raise _Failed(f"{key}, record {row}: {got}")
                job.errors += 1
                continue
            records.append(got)
        self._put(job, namespace, records)

    def _put(self, job: _Import, namespace: str, records: builtins.list[tuple[str, _Record]]) -> None:
        with self._lock:
            if job.cancelled.is_set():
                raise _Cancelled
            self.service.store.put(namespace, records)
            job.imported += len(records)

    def _vectors(self, body: bytes, key: str) -> Iterator[tuple[str, _Record] | str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(body))
        except (pa.ArrowException, OSError) as e:
            raise _Failed(f"{key} is not a Parquet file: {e}") from e
        columns = set(table.column_names)
        if "id" not in columns or "values" not in columns:
            raise _Failed(f"{key} lacks the required columns id and values (it has {sorted(columns)})")
        if not pa.types.is_string(table.schema.field("id").type):
            raise _Failed(f"{key}: column id must be STRING, not {table.schema.field('id').type}")
        if "metadata" in columns and not pa.types.is_string(table.schema.field("metadata").type):
            raise _Failed(f"{key}: column metadata must be STRING (JSON), not {table.schema.field('metadata').type}")
        ids = table.column("id").to_pylist()
        values = table.column("values").to_pylist()
        metadata = table.column("metadata").to_pylist() if "metadata" in columns else [None] * len(ids)
        sparse = table.column("sparse_values").to_pylist() if "sparse_values" in columns else [None] * len(ids)
        dimension = self.service.spec.dimension
        for vector_id, vector, meta, sparse_values in zip(ids, values, metadata, sparse, strict=True):
            if not (isinstance(vector_id, str) and 0 < len(vector_id) <= MAX_ID_LENGTH and is_ascii_name(vector_id)):
                yield f"id {vector_id!r} is not 1 to {MAX_ID_LENGTH} ASCII characters without NUL"
                continue
            if vector is None or len(vector) != dimension or any(v is None for v in vector):
                yield f"vector {vector_id!r} has {len(vector or [])} values; the index has dimension {dimension}"
                continue
            try:
                dense = _dense_values(np.asarray(vector, dtype=np.float32), "Vector")
                parsed = orjson.loads(meta) if meta is not None else None
                checked = validate_metadata(parsed)
                sparse_checked = _sparse_values(
                    {"indices": sparse_values["indices"], "values": sparse_values["values"]} if sparse_values else None,
                    self.service.spec.metric,
                )
            except (ValueError, _Refusal) as e:
                yield f"vector {vector_id!r}: {getattr(e, 'message', e)}"
                continue
            yield vector_id, _Record(dense, checked, sparse_checked)


def _documents(service: IndexService, body: bytes, key: str) -> Iterator[tuple[str, _Record] | str]:
    from nsmigrate_sandbox.document_schema import check_document

    schema = service.spec.documents
    assert schema is not None
    # Parsed as the Documents API's upsert parses its body: strict JSON in UTF-8 (no NaN, no undecodable bytes).
    for position, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            doc = check_document(schema, orjson.loads(line), position)
        except orjson.JSONDecodeError as e:
            yield f"line {position + 1} is not JSON: {e}"
            continue
        except _Refusal as refusal:
            yield refusal.message
            continue
        yield doc.id, _Record(doc.values, doc.fields, doc.sparse)


class _Cancelled(Exception):
    """The import was cancelled (or the index reset) while it ran."""
