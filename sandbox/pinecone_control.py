"""The local Pinecone control plane: indexes (create, describe, list, configure, delete) and collections.

Served by :class:`sandbox.pinecone_server.PineconeSandbox` on its own port. It follows the 2026-04 OpenAPI spec in
``tests/fixtures/reference/pinecone-api`` and what SDK 10.2.0 (API version 2026-07) sends, and it is no kinder than
the service:

- **API versions.** The ``X-Pinecone-Api-Version`` header decides what a create request may do. From ``2026-07`` on
  (what SDK 10.x sends) a pod index cannot be created (400 ``deployment_type 'pod' is not supported on this API
  version``) and neither can an index from a collection (400 ``Creating an index from collection or backup is not
  yet supported``); both are the service's own words, quoted by the SDK. An earlier version (e.g. ``2026-04``) may
  create a serverless or pod index from a Ready collection, with the collection's dimension.
- **Readiness.** A created index reports ``status.ready: false`` (``Initializing``) for ``ready_delay_s``, and its
  data plane answers 503 until then; a collection is ``Initializing`` for ``collection_delay_s`` (its size, vector
  count and dimension appear when it is ``Ready``). Both delays are 0 by default so tests stay fast; set them with
  :meth:`ControlPlane.set_delays` (or the ``PineconeSandbox`` arguments) to see the waits.
- **Conversions** into a document index (``POST /indexes/{name}/convert``, ``GET /conversion-jobs[/{id}]``; API
  2026-07 only): a snapshot of a serverless vector index, ``InProgress`` for ``conversion_delay_s``
  (``sandbox.conversions``); refused for pods, document indexes and plans below Standard (``Conversions.set_plan``).
- **Collections** are point-in-time copies of a **pod** index (a serverless source is refused, as Pinecone does);
  an index with a collection still ``Initializing`` cannot be deleted (412). An index created from a collection holds
  the collection's namespaces and records as they were when the collection was made.
- **Deletion protection** ``enabled`` refuses ``DELETE /indexes/{name}`` with 403 until ``PATCH`` disables it.
- **Faults** (:class:`ControlFaults`, set with :meth:`ControlPlane.set_faults`): a run of 5xx answers, answers
  that are not JSON, and collections described without their optional fields, for tests of what nsmigrate does
  when the control plane misbehaves. None by default.
- **Tags** follow the spec's rules (keys ≤ 80 characters of letters, digits, ``_`` and ``-``; values ≤ 120
  characters); ``PATCH`` merges them and an empty value removes a key.

Control-plane errors use the spec's ``ErrorResponse``: ``{"error": {"code": "NOT_FOUND", "message": ...},
"status": 404}``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from nsmigrate_sandbox.embedding import read_embed_config
from nsmigrate_sandbox.pinecone_server import (
    IndexSpec,
    _bad,
    _check_api_key,
    _control_error,
    _object,
    _parse_json,
    _Record,
    _Refusal,
    _Reply,
)

if TYPE_CHECKING:
    from nsmigrate_sandbox.pinecone_server import PineconeSandbox

#: The first API version that refuses pod indexes and indexes from collections (what SDK 10.x sends).
API_VERSION_2026_07 = "2026-07"
API_VERSION_HEADER = "X-Pinecone-Api-Version"
POD_ENVIRONMENT = "us-east-1-aws"
#: How a pod index (one p1.x1 pod) is described under 2026-07.
POD_DEPLOYMENT = {
    "deployment_type": "pod",
    "environment": POD_ENVIRONMENT,
    "pod_type": "p1.x1",
    "replicas": 1,
    "shards": 1,
}
#: cloud → regions a serverless index may be created in (a subset of Pinecone's; others answer 404 as the spec says).
SERVERLESS_REGIONS: dict[str, tuple[str, ...]] = {
    "aws": ("us-east-1", "us-west-2", "eu-west-1"),
    "gcp": ("us-central1", "europe-west4"),
    "azure": ("eastus2",),
}
_RESOURCE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?")
_TAG_KEY = re.compile(r"[A-Za-z0-9_-]{1,80}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9;@_\-.+ ]{0,120}")


def _now() -> float:
    return time.monotonic()


@dataclass
class IndexMeta:
    """What the control plane knows of an index beyond its data: where it runs, protection, tags, readiness."""

    cloud: str = "aws"
    region: str = "us-east-1"
    deletion_protection: str = "disabled"
    tags: dict[str, str] = field(default_factory=dict)
    ready_at: float = 0.0  # monotonic time from which the index is Ready
    source_collection: str | None = None
    #: Its making fails (a conversion that aborts): ``InitializationFailed`` from ``ready_at`` on, never Ready.
    fails: bool = False

    @property
    def ready(self) -> bool:
        return not self.fails and _now() >= self.ready_at

    @property
    def state(self) -> str:
        if _now() < self.ready_at:
            return "Initializing"
        return "InitializationFailed" if self.fails else "Ready"


@dataclass
class Collection:
    """A point-in-time copy of a pod index: its records per namespace (stored names, default ``""``)."""

    name: str
    source: str
    dimension: int
    metric: str
    records: dict[str, dict[str, _Record]]
    ready_at: float

    @property
    def status(self) -> str:
        return "Ready" if _now() >= self.ready_at else "Initializing"

    @property
    def vector_count(self) -> int:
        return sum(len(ns) for ns in self.records.values())

    def size_bytes(self) -> int:
        # A stand-in for bytes on disk: 4 per value plus the metadata as JSON.
        per_vector = 4 * self.dimension
        return sum(per_vector + len(str(r.metadata or "")) for ns in self.records.values() for r in ns.values())

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "status": self.status, "environment": POD_ENVIRONMENT}
        body["dimension"] = self.dimension
        if self.status == "Ready":
            body["size"] = self.size_bytes()
            body["vector_count"] = self.vector_count
        return body


@dataclass(frozen=True)
class ControlFaults:
    """What the control plane does wrong on purpose. The defaults do nothing wrong.

    - ``errors_5xx``: the next this many requests to an operation of ``error_ops`` (``None``: any) are answered
      ``status_5xx``, each using one up; a large number is an outage that does not end.
    - ``garbled_ops``: requests to these operations are carried out, but a success is answered 200 with an HTML page
      instead of the service's JSON (what a proxy or load balancer in trouble sends): the client cannot tell what
      happened, and the worst case, that it happened, is the one it gets.
    - ``collection_fields_left_out``: fields a collection's description leaves out (``dimension``, ``size``,
      ``vector_count``): the spec requires only its name, status and environment, whatever its status.

    Operations are named as the SDK's methods: ``describe_collection``, ``create_collection``, ``describe_index``,
    ``create_index`` (from a collection too), ``list_indexes``, …
    """

    errors_5xx: int = 0
    status_5xx: int = 503
    error_ops: tuple[str, ...] | None = None
    garbled_ops: tuple[str, ...] = ()
    collection_fields_left_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.errors_5xx, bool) or not isinstance(self.errors_5xx, int) or self.errors_5xx < 0:
            raise ValueError(f"errors_5xx must be a non-negative integer, got {self.errors_5xx!r}")
        if not 500 <= self.status_5xx <= 599:
            raise ValueError(f"status_5xx must be a 5xx status, got {self.status_5xx!r}")
        optional = {"dimension", "size", "vector_count"}
        if not set(self.collection_fields_left_out) <= optional:
            raise ValueError(f"collection_fields_left_out may name only {sorted(optional)}")


#: What ``ControlFaults.garbled_ops`` answer: a proxy's page, not the service's JSON.
GARBLED_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def control_op(method: str, path: str) -> str:
    """The operation a control-plane request is, named as the SDK's method (for ``ControlFaults.error_ops``)."""
    parts = path.strip("/").split("/")
    kind = {"indexes": "index", "collections": "collection"}.get(parts[0], parts[0])
    if len(parts) == 1:
        return {"GET": f"list_{parts[0]}", "POST": f"create_{kind}"}.get(method, f"{method.lower()}_{kind}")
    verb = {"GET": "describe", "PATCH": "configure", "DELETE": "delete", "POST": "create"}.get(method, method.lower())
    return f"{verb}_{kind}"


def api_version(headers: Mapping[str, str]) -> str | None:
    """The request's ``X-Pinecone-Api-Version`` (any capitalisation), or None."""
    for name, value in headers.items():
        if name.lower() == API_VERSION_HEADER.lower():
            return str(value).strip()
    return None


def is_2026_07_or_later(version: str | None) -> bool:
    # Versions are dates written YYYY-MM, so they compare as strings. No header: the service's oldest behaviour.
    return version is not None and version >= API_VERSION_2026_07


def _check_name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not _RESOURCE_NAME.fullmatch(name):
        raise _bad(
            f"{what} name must contain only lowercase alphanumeric characters or hyphens, and must not begin or end "
            "with a hyphen (1-45 characters)"
        )
    return name


def check_tags(tags: Any, *, removing: bool = False) -> dict[str, str]:
    """Tags as the spec allows them; ``removing``: an empty value (unset that key) is allowed."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise _bad("tags must be an object of string keys and values")
    for key, value in tags.items():
        if not _TAG_KEY.fullmatch(str(key)):
            raise _bad(f"Tag key {key!r} must be 1-80 characters of letters, digits, '_' or '-'")
        if not isinstance(value, str) or not _TAG_VALUE.fullmatch(value) or (value == "" and not removing):
            raise _bad(f"Tag value {value!r} of key {key!r} must be 1-120 characters of letters, digits, ';@_-.+ '")
    return dict(tags)


def _deletion_protection(value: Any) -> str:
    if value is None:
        return "disabled"
    if value not in ("enabled", "disabled"):
        raise _bad(f"deletion_protection must be 'enabled' or 'disabled', got {value!r}")
    return str(value)


def index_model(spec: IndexSpec, host: str, meta: IndexMeta, version: str | None = None) -> dict[str, Any]:
    """An index description as the request's API version writes it: 2026-07's (``sandbox.index_model_2026_07``),
    or one both the 2026-04 spec (spec/dimension/metric) and SDK 10.x (schema/deployment) accept."""
    if is_2026_07_or_later(version):
        from nsmigrate_sandbox.index_model_2026_07 import index_model_2026_07

        return index_model_2026_07(spec, host, meta)
    vector_field: dict[str, Any] = {"type": "dense_vector", "dimension": spec.dimension, "metric": spec.metric}
    fields: dict[str, Any] = {"_values": vector_field}
    if spec.embed is not None:
        # An integrated index: 2026-07 describes its embedding as one semantic_text field named after field_map.text
        # (and no dense field); 2026-04 as `embed`.
        fields = {spec.embed.field: {"type": "semantic_text", "model": spec.embed.model, "metric": spec.metric}}
    if spec.documents is not None:
        fields = spec.documents.fields_json()
    on_demand = {"mode": "OnDemand", "status": {"state": "Ready"}}
    ready = meta.ready
    model: dict[str, Any] = {
        "name": spec.name,
        "dimension": spec.dimension,
        "metric": spec.metric,
        "vector_type": "dense",
        # The SDK keeps a host that carries a scheme and prepends https:// to one that does not.
        "host": host,
        "deletion_protection": meta.deletion_protection,
        "status": {"ready": ready, "state": meta.state},
        "schema": {"fields": fields},
        "tags": dict(meta.tags) or {"sandbox": "true"},
    }
    if spec.embed is not None:
        model["embed"] = {
            "model": spec.embed.model,
            "metric": spec.metric,
            "dimension": spec.dimension,
            "vector_type": "dense",
            "field_map": {"text": spec.embed.field},
        }
    if spec.kind == "pod":
        model["spec"] = {
            "pod": {"environment": POD_ENVIRONMENT, "pod_type": "p1.x1", "pods": 1, "replicas": 1, "shards": 1}
        }
        model["deployment"] = dict(POD_DEPLOYMENT)
    else:
        model["spec"] = {"serverless": {"cloud": meta.cloud, "region": meta.region, "read_capacity": on_demand}}
        model["deployment"] = {"deployment_type": "managed", "cloud": meta.cloud, "region": meta.region}
        model["read_capacity"] = on_demand
    return model


@dataclass(frozen=True)
class CreateRequest:
    """What a create-index body asks for, whichever API version's shape it came in."""

    spec: IndexSpec
    meta: IndexMeta
    source_collection: str | None


def read_create_request(body: Any, version: str | None, *, for_model: bool = False) -> CreateRequest:
    """Read a create body as the request's API version writes it: 2026-07's schema + deployment
    (``sandbox.index_model_2026_07``), or 2026-04's dimension + metric + spec; ``for_model``: a create-for-model
    request turned into such a body."""
    if is_2026_07_or_later(version) and not for_model:
        from nsmigrate_sandbox.index_model_2026_07 import read_create_2026_07

        return read_create_2026_07(body)
    body = _object(body)
    name = _check_name("Index", body.get("name"))
    dimension, metric = body.get("dimension"), body.get("metric", "cosine")
    schema = body.get("schema")
    for config in ((schema or {}).get("fields") or {}).values() if isinstance(schema, dict) else ():
        if isinstance(config, dict) and config.get("type") == "dense_vector":
            dimension, metric = config.get("dimension"), config.get("metric", "cosine")
    deployment = body.get("deployment") or {}
    legacy_spec = body.get("spec") or {}
    if not isinstance(deployment, dict) or not isinstance(legacy_spec, dict):
        raise _bad("deployment and spec must be objects")
    is_pod = deployment.get("deployment_type") == "pod" or "pod" in legacy_spec
    where = (legacy_spec.get("pod") if is_pod else legacy_spec.get("serverless")) or {}
    source_collection = where.get("source_collection") or deployment.get("source_collection")
    source_collection = source_collection or body.get("source_collection")
    if is_2026_07_or_later(version):
        if source_collection is not None:
            raise _bad("Creating an index from collection or backup is not yet supported")
        if is_pod:
            raise _bad("deployment_type 'pod' is not supported on this API version")
    cloud = str(deployment.get("cloud") or where.get("cloud") or "aws")
    region = str(deployment.get("region") or where.get("region") or "us-east-1")
    if not is_pod and region not in SERVERLESS_REGIONS.get(cloud, ()):
        raise _Refusal(404, f"Resource cloud: {cloud} region: {region} not found.")
    meta = IndexMeta(
        cloud=cloud,
        region=region,
        deletion_protection=_deletion_protection(body.get("deletion_protection")),
        tags=check_tags(body.get("tags")),
        source_collection=source_collection,
    )
    embed = body.get("embed")
    try:
        integrated = read_embed_config(embed) if embed is not None else None
        if integrated is not None:
            dimension, metric = integrated.dimension, integrated.metric
        spec = IndexSpec(name, int(dimension), str(metric), "pod" if is_pod else "serverless", integrated)
    except (TypeError, ValueError) as exc:
        raise _bad(f"Invalid index definition: {exc}") from exc
    return CreateRequest(spec=spec, meta=meta, source_collection=source_collection)


def read_for_model_request(body: Any) -> dict[str, Any]:
    """A ``POST /indexes/create-for-model`` body (name, cloud, region, embed, …) as the create body it amounts to:
    a serverless index with integrated embedding, of the model's dimension and metric."""
    body = _object(body)
    if not isinstance(body.get("embed"), dict):
        raise _bad("embed is required: an object with model and field_map")
    for key in ("cloud", "region"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise _bad(f"{key} is required")
    return {
        **{k: v for k, v in body.items() if k not in ("cloud", "region")},
        "deployment": {"deployment_type": "managed", "cloud": body["cloud"], "region": body["region"]},
    }


class ControlPlane:
    """The control plane's state (index metadata, collections) and its HTTP routes, for one ``PineconeSandbox``."""

    def __init__(
        self,
        sandbox: PineconeSandbox,
        *,
        ready_delay_s: float = 0.0,
        collection_delay_s: float = 0.0,
        conversion_delay_s: float = 0.0,
    ) -> None:
        from nsmigrate_sandbox.conversions import Conversions

        self.sandbox = sandbox
        self._lock = threading.RLock()
        self._meta: dict[str, IndexMeta] = {}
        self._collections: dict[str, Collection] = {}
        self.conversions = Conversions(self)
        self.faults = ControlFaults()
        self._errors_left = 0
        self.set_delays(
            ready_delay_s=ready_delay_s, collection_delay_s=collection_delay_s, conversion_delay_s=conversion_delay_s
        )

    def set_delays(
        self,
        *,
        ready_delay_s: float | None = None,
        collection_delay_s: float | None = None,
        conversion_delay_s: float | None = None,
    ) -> None:
        """How long a created index stays Initializing, a new collection, and a conversion job ``InProgress`` (its
        index Initializing); applies to what is created next."""
        with self._lock:
            if ready_delay_s is not None:
                self.ready_delay_s = max(0.0, ready_delay_s)
            if collection_delay_s is not None:
                self.collection_delay_s = max(0.0, collection_delay_s)
            if conversion_delay_s is not None:
                self.conversion_delay_s = max(0.0, conversion_delay_s)

    def set_faults(self, faults: ControlFaults) -> None:
        """Misbehave from now on as ``faults`` says (``ControlFaults()``: not at all)."""
        with self._lock:
            self.faults = faults
            self._errors_left = faults.errors_5xx

    def _injected(self, op: str) -> _Refusal | None:
        with self._lock:
            faults = self.faults
            if self._errors_left == 0 or (faults.error_ops is not None and op not in faults.error_ops):
                return None
            self._errors_left -= 1
            return _Refusal(faults.status_5xx, "Service unavailable (sandbox fault injection)")

    def meta(self, name: str) -> IndexMeta:
        with self._lock:
            return self._meta.setdefault(name, IndexMeta())  # indexes given at start: ready, unprotected

    def forget(self, name: str) -> None:
        with self._lock:
            self._meta.pop(name, None)

    def collection(self, name: str) -> Collection:
        with self._lock:
            if name not in self._collections:
                raise _Refusal(404, f"Collection {name} not found.")
            return self._collections[name]

    def collection_names(self) -> list[str]:
        with self._lock:
            return list(self._collections)

    # -- HTTP

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        reply = self._handle(method, target, headers, body)
        if reply.status < 300 and control_op(method, urlsplit(target).path.rstrip("/")) in self.faults.garbled_ops:
            return _Reply(200, GARBLED_PAGE, {"Content-Type": "text/html"})
        return reply

    def _handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        path = urlsplit(target).path.rstrip("/")
        try:
            if path == "/_sandbox/hosts" and method == "GET":
                if self.sandbox.api_key is not None:  # like the data planes' admin endpoints
                    _check_api_key(headers, self.sandbox.api_key)
                return _Reply(200, self.sandbox.describe_hosts())
            _check_api_key(headers, self.sandbox.api_key)
            op = control_op(method, path)
            injected = self._injected(op)
            if injected is not None:
                raise injected
            version = api_version(headers)
            self.conversions.settle()
            if path.startswith("/conversion-jobs") or (path.startswith("/indexes/") and path.endswith("/convert")):
                return self._conversion(method, path, urlsplit(target).query, body, version)
            if path == "/indexes" and method == "GET":
                return _Reply(200, {"indexes": [self._model(s.name, version) for s in self.sandbox.specs()]})
            if path == "/indexes" and method == "POST":
                return self._create_index(read_create_request(_parse_json(body), version), version)
            if path == "/indexes/create-for-model" and method == "POST":
                for_model = read_for_model_request(_parse_json(body))
                return self._create_index(read_create_request(for_model, version, for_model=True), version)
            if path.startswith("/indexes/") and path.count("/") == 2:
                return self._one_index(method, unquote(path.split("/")[2]), body, version)
            if path == "/collections" and method == "GET":
                with self._lock:
                    return _Reply(200, {"collections": [self._described(c) for c in self._collections.values()]})
            if path == "/collections" and method == "POST":
                return self._create_collection(_parse_json(body))
            if path.startswith("/collections/") and path.count("/") == 2:
                return self._one_collection(method, unquote(path.split("/")[2]))
            raise _Refusal(404, f"Not Found: {path}")
        except _Refusal as refusal:
            return _control_error(refusal)

    def _conversion(self, method: str, path: str, query: str, body: bytes, version: str | None) -> _Reply:
        """The conversion routes (``sandbox.conversions``), which API versions before 2026-07 do not have."""
        parts = path.strip("/").split("/")
        if not is_2026_07_or_later(version):
            raise _Refusal(404, f"Not Found: {path}")
        if parts[0] == "indexes" and len(parts) == 3 and method == "POST":
            return self.conversions.start(unquote(parts[1]), _parse_json(body), self.conversion_delay_s)
        if parts == ["conversion-jobs"] and method == "GET":
            return self.conversions.listed(parse_qs(query, keep_blank_values=True))
        if parts[0] == "conversion-jobs" and len(parts) == 2 and method == "GET":
            return self.conversions.describe(unquote(parts[1]))
        raise _Refusal(404, f"Not Found: {method} {path}")

    def add_converted_index(self, spec: IndexSpec, meta: IndexMeta, conversion: Any) -> None:
        """The index a conversion makes: Initializing until the conversion ends, then Ready with its documents (or
        ``InitializationFailed``, empty, when it fails); 409 if the name is taken."""
        with self._lock:
            if spec.name in self.sandbox.names():
                raise _Refusal(409, "Resource already exists.")
            meta.ready_at = conversion.ends_at
            meta.fails = conversion.error is not None
            self._meta[spec.name] = meta
            self.sandbox.add_index(spec, ready_at=math.inf if meta.fails else conversion.ends_at)
            conversion.service = self.sandbox.service(spec.name)
            conversion.service.on_ready = lambda: self.conversions.complete(conversion)

    def _model(self, name: str, version: str | None) -> dict[str, Any]:
        return index_model(self.sandbox.service(name).spec, self.sandbox.host(name), self.meta(name), version)

    def _create_index(self, request: CreateRequest, version: str | None) -> _Reply:
        spec, meta = request.spec, request.meta
        records: dict[str, dict[str, _Record]] = {}
        if request.source_collection is not None:
            source = self.collection(request.source_collection)
            if source.status != "Ready":
                raise _bad(f"Collection {source.name} is not ready; wait until its status is Ready")
            if source.dimension != spec.dimension:
                raise _bad(
                    f"Index dimension {spec.dimension} does not match the dimension of collection {source.name} "
                    f"({source.dimension})"
                )
            records = source.records
        with self._lock:
            if spec.name in self.sandbox.names():
                raise _Refusal(409, "Resource already exists.")
            meta.ready_at = _now() + self.ready_delay_s
            self._meta[spec.name] = meta
            self.sandbox.add_index(spec, ready_at=meta.ready_at)
        store = self.sandbox.service(spec.name).store
        for namespace, by_id in records.items():
            store.put(namespace, by_id.items())
        return _Reply(201, self._model(spec.name, version))

    def _one_index(self, method: str, name: str, body: bytes, version: str | None) -> _Reply:
        if name not in self.sandbox.names():
            raise _Refusal(404, f"Resource {name} not found")
        if method == "GET":
            return _Reply(200, self._model(name, version))
        if method == "PATCH":
            return self._configure(name, _object(_parse_json(body)), version)
        if method == "DELETE":
            with self._lock:
                if self.meta(name).deletion_protection == "enabled":
                    raise _Refusal(
                        403,
                        "Deletion protection is enabled for this index. Disable deletion protection before retrying.",
                    )
                pending = sorted(c.name for c in self._collections.values() if c.source == name and c.status != "Ready")
                if pending:
                    raise _Refusal(
                        412, f"Unable to delete an index. There are pending collections for this index: {pending}"
                    )
                self.sandbox.remove_index(name)
                self.forget(name)
            return _Reply(202)
        raise _Refusal(404, f"Not Found: {method} /indexes/{name}")

    def _configure(self, name: str, body: dict[str, Any], version: str | None) -> _Reply:
        with self._lock:
            meta = self.meta(name)
            if "deletion_protection" in body:
                meta.deletion_protection = _deletion_protection(body["deletion_protection"])
            if body.get("tags") is not None:
                for key, value in check_tags(body["tags"], removing=True).items():
                    if value == "":
                        meta.tags.pop(key, None)
                    else:
                        meta.tags[key] = value
        return _Reply(202, self._model(name, version))

    def _create_collection(self, body: Any) -> _Reply:
        body = _object(body)
        name = _check_name("Collection", body.get("name"))
        source = body.get("source")
        if not isinstance(source, str) or not source:
            raise _bad("source is required: the name of the pod-based index to copy")
        if source not in self.sandbox.names():
            raise _Refusal(404, f"Resource {source} not found")
        service = self.sandbox.service(source)
        if service.spec.kind != "pod":
            raise _bad(f"Serverless indexes do not support collections: {source} is a serverless index")
        with self._lock:
            if name in self._collections:
                raise _Refusal(409, "Resource already exists.")
            with service.store.lock:
                # Records are replaced, never changed in place, on write: a copy of each namespace's dict is the
                # collection's point-in-time snapshot.
                records = {ns: dict(data.records) for ns, data in service.store.namespaces.items() if data.records}
            collection = Collection(
                name=name,
                source=source,
                dimension=service.spec.dimension,
                metric=service.spec.metric,
                records=records,
                ready_at=_now() + self.collection_delay_s,
            )
            self._collections[name] = collection
        return _Reply(201, self._described(collection))

    def _described(self, collection: Collection) -> dict[str, Any]:
        body = collection.as_json()
        for left_out in self.faults.collection_fields_left_out:
            body.pop(left_out, None)
        return body

    def _one_collection(self, method: str, name: str) -> _Reply:
        collection = self.collection(name)
        if method == "GET":
            return _Reply(200, self._described(collection))
        if method == "DELETE":
            with self._lock:
                self._collections.pop(name, None)
            return _Reply(202)
        raise _Refusal(404, f"Not Found: {method} /collections/{name}")
