"""Converting an index into a document index (API 2026-07), as Pinecone documents it: ``POST
/indexes/{index_name}/convert`` starts a conversion job, ``GET /conversion-jobs`` lists them newest first and ``GET
/conversion-jobs/{job_id}`` describes one (docs ``reference/api/2026-07/control-plane/convert_index``,
``describe_conversion_job``, ``list_conversion_jobs``; the guide ``guides/index-data/convert-an-index``). The
OpenAPI files of ``tests/fixtures/reference`` predate it; the errors use their ``ErrorResponse``.

What the service does, and so what happens here (never kinder):

- **What converts.** A serverless vector index in the Ready state; a pod index, a document index, an index that is
  not Ready, and one on a plan below Standard are refused (400, 400, 412, 403). A legacy integrated index converts on
  Pinecone; the local data plane refuses it (400) rather than pretend to re-describe its embedding.
- **A snapshot.** The source's namespaces are copied as they stand when the request is answered; writes to the source
  after it do not reach the new index. Namespaces without records are skipped; each other keeps its name.
- **Mapping.** Each record becomes a document with the same id: its values fill the schema's dense_vector field
  (which must have the source's dimension and metric), its sparse values the sparse_vector field, and each metadata
  key the field of its name, under the Documents API's own rules (``document_schema.check_document``: no ``_`` or
  ``$`` names, full-text values are text, …). A record the index cannot take fails the job (``error_mode.on_error``
  ``abort``, the default) or is skipped and counted (``continue``).
- **Time.** The new index is ``Initializing`` (its data plane answers 503) while the job is ``InProgress``, for
  ``ControlPlane.conversion_delay_s``; ``percent_complete`` and ``records_converted`` grow with the elapsed share of
  it. Then the job is ``Completed`` and the index Ready, its documents written as one write at that moment, so
  lagging reads (``Faults.freshness_lag_s``) see them that much later, like any write. A job that fails ends
  ``Failed`` with its ``error``, and its index stays ``InitializationFailed`` with no data until it is deleted.

The field naming when the job ended is described in the docs without its name in the pages copied here;
``finished_at`` is the sandbox's choice, and ``error`` (the reason of a ``Failed`` job) is the import jobs' field.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nsmigrate_sandbox.document_schema import ClassicSchema, DocumentSchema, check_document, read_schema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import (
    _bad,
    _decode_token,
    _display_name,
    _encode_token,
    _object,
    _Record,
    _Refusal,
    _Reply,
)

if TYPE_CHECKING:
    from nsmigrate_sandbox.pinecone_control import ControlPlane, IndexMeta

CONVERT_FIELDS = ("name", "schema", "error_mode", "tags", "deletion_protection")
ON_ERROR = ("abort", "continue")
#: Plans on which converting is available (docs: "Standard and Enterprise plans").
CONVERTING_PLANS = ("standard", "enterprise")
PLANS = ("starter", "builder", *CONVERTING_PLANS)
MAX_LIST_LIMIT = 100


def _timestamp(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def index_id(name: str) -> str:
    """An index's id as the conversion jobs name it (the sandbox's indexes have none of their own)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nsmigrate-sandbox-index:{name}"))


@dataclass
class Conversion:
    """One conversion job: the snapshot already turned into documents, put into the target when it completes."""

    source: str
    target: str
    on_error: str
    started_at: float  # monotonic
    created_epoch: float
    ends_at: float  # monotonic
    documents: dict[str, list[tuple[str, _Record]]]  # namespace (stored name) → the documents it gets
    skipped: int
    error: str | None  # why it fails (on_error abort), known from the snapshot; reported once it ended
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    written: bool = False
    service: Any = None  # the index it writes into (not another one made later under the same name)

    @property
    def converted(self) -> int:
        return sum(len(docs) for docs in self.documents.values())

    def status(self, now: float) -> str:
        if now < self.ends_at:
            return "InProgress"
        return "Failed" if self.error is not None else "Completed"

    def as_json(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        span = self.ends_at - self.started_at
        share = 1.0 if status != "InProgress" or span <= 0 else min(1.0, max(0.0, (now - self.started_at) / span))
        body: dict[str, Any] = {
            "conversion_job_id": self.job_id,
            "created_at": _timestamp(self.created_epoch),
            "error_mode": {"on_error": self.on_error},
            "percent_complete": round(100.0 * share, 1),
            "records_converted": math.floor(self.converted * share),
            "records_skipped": math.floor(self.skipped * share),
            "source_index_id": index_id(self.source),
            "source_index_name": self.source,
            "status": status,
            "target_index_id": index_id(self.target),
            "target_index_name": self.target,
            "finished_at": None if status == "InProgress" else _timestamp(self.created_epoch + span),
        }
        if status == "Failed":
            body["error"] = self.error
        return body


def convert_records(
    schema: DocumentSchema, namespaces: Mapping[str, Mapping[str, _Record]], on_error: str
) -> tuple[dict[str, list[tuple[str, _Record]]], int, str | None]:
    """The snapshot's records as documents of ``schema``: (namespace → documents, records skipped, why the job fails
    or None; a failing job's documents are those converted before it stopped). A record is mapped by name and checked
    as an upsert of it would be."""
    documents: dict[str, list[tuple[str, _Record]]] = {}
    skipped = 0
    for namespace, records in namespaces.items():
        for position, (record_id, record) in enumerate(records.items()):
            raw: dict[str, Any] = {"_id": record_id, **(record.metadata or {})}
            if schema.dense is not None:
                raw[schema.dense.name] = record.values.tolist()
            if record.sparse is not None:
                if schema.sparse is None:
                    problem = "it has sparse values and the schema declares no sparse_vector field"
                    skipped, error = _cannot_take(namespace, record_id, problem, on_error, skipped)
                    if error is not None:
                        return documents, skipped, error
                    continue
                raw[schema.sparse.name] = record.sparse
            try:
                document = check_document(schema, raw, position)
            except _Refusal as refusal:
                skipped, error = _cannot_take(namespace, record_id, refusal.message, on_error, skipped)
                if error is not None:
                    return documents, skipped, error
                continue
            documents.setdefault(namespace, []).append(
                (record_id, _Record(document.values, document.fields, document.sparse))
            )
    return documents, skipped, None


def _cannot_take(namespace: str, record_id: str, problem: str, on_error: str, skipped: int) -> tuple[int, str | None]:
    if on_error == "continue":
        return skipped + 1, None
    where = f"record {record_id!r} of namespace {_display_name(namespace)!r}"
    return skipped, f"{where} cannot be a document of the new index: {problem} (error_mode.on_error is abort)"


class Conversions:
    """The conversion jobs of one control plane."""

    def __init__(self, control: ControlPlane, clock: Callable[[], float] = time.monotonic) -> None:
        self.control = control
        self.clock = clock
        self._lock = threading.RLock()
        self._jobs: list[Conversion] = []  # oldest first
        #: The organization's plan: converting needs Standard or Enterprise.
        self.plan = "standard"

    def set_plan(self, plan: str) -> None:
        if plan not in PLANS:
            raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
        self.plan = plan

    def names(self) -> list[str]:
        """The conversion jobs' ids, oldest first."""
        with self._lock:
            return [job.job_id for job in self._jobs]

    # -- HTTP

    def start(self, source: str, body: Any, delay_s: float) -> _Reply:
        """``POST /indexes/{source}/convert``: answered 202 with the job once its index exists, ``Initializing``."""
        from nsmigrate_sandbox.pinecone_control import IndexMeta, _check_name, _deletion_protection, check_tags

        body = _object(body)
        unknown = [key for key in body if key not in CONVERT_FIELDS]
        if unknown:
            expected = ", ".join(f"`{f}`" for f in CONVERT_FIELDS)
            detail = f"unknown field `{unknown[0]}`, expected one of {expected}"
            raise _Refusal(422, f"Failed to deserialize the JSON body into the target type: {detail}")
        for required in ("name", "schema"):
            if required not in body:
                raise _Refusal(422, f"Failed to deserialize the JSON body into the target type: missing `{required}`")
        sandbox = self.control.sandbox
        if source not in sandbox.names():
            raise _Refusal(404, f"Resource {source} not found")
        service = sandbox.service(source)
        if self.plan not in CONVERTING_PLANS:
            raise _Refusal(
                403,
                "Converting an index is available on the Standard and Enterprise plans; upgrade your plan to convert "
                f"index {source}",
            )
        self._check_source(source, service.spec)
        name = _check_name("Index", body["name"])
        on_error = self._on_error(body.get("error_mode"))
        schema = read_schema(body["schema"])
        if isinstance(schema, ClassicSchema):
            raise _bad("A converted index is a document index: declare its fields, not _values or _sparse_values")
        self._check_schema(source, service.spec.dimension, service.spec.metric, schema)
        source_meta = self.control.meta(source)
        meta = IndexMeta(
            cloud=source_meta.cloud,  # the docs: created in the source's cloud and region
            region=source_meta.region,
            deletion_protection=_deletion_protection(body.get("deletion_protection")),
            tags=check_tags(body.get("tags")),
        )
        with service.store.lock:
            # Records are replaced, never changed in place, on write: a copy of each namespace's dict is the
            # snapshot (as for a collection). Namespaces that never held records are skipped.
            snapshot = {ns: dict(data.records) for ns, data in service.store.namespaces.items() if data.records}
        documents, skipped, error = convert_records(schema, snapshot, on_error)
        with self._lock:
            now = self.clock()
            conversion = Conversion(
                source=source,
                target=name,
                on_error=on_error,
                started_at=now,
                created_epoch=time.time(),
                ends_at=now + max(0.0, delay_s),
                documents=documents,
                skipped=skipped,
                error=error,
            )
            self.control.add_converted_index(document_index(name, schema), meta, conversion)
            self._jobs.append(conversion)
        return _Reply(202, conversion.as_json(self.clock()))

    def describe(self, job_id: str) -> _Reply:
        self.settle()
        with self._lock:
            for job in self._jobs:
                if job.job_id == job_id:
                    return _Reply(200, job.as_json(self.clock()))
        raise _Refusal(404, f"Conversion job {job_id} not found")

    def listed(self, query: Mapping[str, list[str]]) -> _Reply:
        """``GET /conversion-jobs``: newest first, ``limit`` (≤ 100) a page, ``paginationToken`` the next."""
        self.settle()
        limit_text = (query.get("limit") or ["100"])[-1]
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
            raise _bad(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit_text!r}")
        limit = int(limit_text)
        token = (query.get("paginationToken") or [""])[-1]
        with self._lock:
            newest_first = list(reversed(self._jobs))
            start = 0
            if token:
                after = _decode_token(token)
                ids = [job.job_id for job in newest_first]
                if after not in ids:
                    raise _bad(f"Invalid pagination token {token!r}")
                start = ids.index(after) + 1
            page = newest_first[start : start + limit]
            body: dict[str, Any] = {"data": [job.as_json(self.clock()) for job in page]}
            if start + limit < len(newest_first):
                body["pagination"] = {"next": _encode_token(page[-1].job_id)}
        return _Reply(200, body)

    # -- completion

    def settle(self) -> None:
        """Write the documents of every job that completed and has not written them yet (asked on each request)."""
        with self._lock:
            due = [job for job in self._jobs if not job.written and job.status(self.clock()) != "InProgress"]
        for job in due:
            self.complete(job)

    def complete(self, job: Conversion) -> None:
        """The job ended: a completed one's documents go into its index as one write (visible to lagging reads after
        the lag, like any write); a failed one's index keeps nothing."""
        with self._lock:  # held while writing: a read of the new index waits for its documents
            if job.written or job.status(self.clock()) == "InProgress":
                return
            job.written = True
            names = self.control.sandbox.names()
            if (
                job.error is not None
                or job.target not in names
                or self.control.sandbox.service(job.target) is not job.service
            ):
                return
            store = job.service.store
            if store.freshness is not None:  # the index's lag applies to this write too (its faults may have changed)
                store.freshness.lag_s = job.service.faults.lag_s
            for namespace, documents in job.documents.items():
                store.put(namespace, documents)

    # -- checks

    def _check_source(self, name: str, spec: Any) -> None:
        meta: IndexMeta = self.control.meta(name)
        if spec.kind == "pod":
            raise _bad(f"Index {name} is a pod-based index; only serverless indexes can be converted")
        if spec.documents is not None:
            raise _bad(f"Index {name} is already a document index; only vector and integrated indexes are converted")
        if spec.embed is not None:
            raise _bad("the local data plane does not convert integrated indexes; convert a serverless vector index")
        if not meta.ready:
            raise _Refusal(412, f"Index {name} is {meta.state}; only an index in the Ready state can be converted")

    @staticmethod
    def _on_error(value: Any) -> str:
        if value is None:
            return "abort"
        mode = _object(value).get("on_error", "abort")
        if mode not in ON_ERROR or set(value) - {"on_error"}:
            raise _bad(f"error_mode must be {{on_error: abort | continue}}, got {value!r}")
        return str(mode)

    @staticmethod
    def _check_schema(source: str, dimension: int, metric: str, schema: DocumentSchema) -> None:
        dense = schema.dense
        if dense is None:
            raise _bad(f"The schema needs a dense_vector field for the values of index {source}'s records")
        if (dense.dimension, dense.metric) != (dimension, metric):
            raise _bad(
                f"Field '{dense.name}' is {dense.dimension}-dim {dense.metric}; the records of index {source} are "
                f"{dimension}-dim {metric}"
            )
