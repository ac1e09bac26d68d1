"""The control plane's index model as API 2026-07 reads and writes it (``db_control_2026-07.oas.yaml``).

- **Create** (``CreateIndexRequest``) takes a ``schema`` and an optional ``deployment`` (managed ``aws``
  ``us-east-1`` when left out), nothing of 2026-04's ``dimension``, ``metric``, ``spec`` or ``vector_type``: those are
  refused as a body that does not deserialize (422, the service's wording). A schema of only ``_values`` /
  ``_sparse_values`` makes a classic vector index (served by the vectors API); any other schema a document index
  (``sandbox.documents``). Pod indexes and indexes from a collection cannot be created (400, the service's words,
  quoted by the SDK); legacy pod indexes that exist keep working and are described with a ``pod`` deployment.
- **Describe** (``IndexModel``) writes ``deployment``, ``schema`` and ``read_capacity``, never ``spec``,
  ``dimension`` or ``metric``. A vectors-API index reports its vectors as ``_values`` and ``_sparse_values`` (a
  dense one always both), an integrated index its ``semantic_text`` field, a document index its own fields.

What the local data plane does not host is refused rather than pretended: a sparse-only classic index, a BYOC
deployment, dedicated read capacity (403, as for an organization without it) and a ``cmek_id`` (CMEK not enabled).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from nsmigrate_sandbox.document_schema import ClassicSchema, read_schema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import IndexSpec, _bad, _object, _Refusal

if TYPE_CHECKING:
    from nsmigrate_sandbox.pinecone_control import CreateRequest, IndexMeta

CREATE_FIELDS = ("name", "deployment", "schema", "cmek_id", "read_capacity", "tags", "deletion_protection")
_MANAGED_FIELDS = {"deployment_type", "cloud", "region"}
NOT_FROM_COLLECTION = "Creating an index from collection or backup is not yet supported"
NO_PODS = "deployment_type 'pod' is not supported on this API version"


def _not_deserialized(detail: str) -> _Refusal:
    return _Refusal(422, f"Failed to deserialize the JSON body into the target type: {detail}")


def _source_collection(body: dict[str, Any]) -> Any:
    legacy, deployment = body.get("spec"), body.get("deployment")
    places = [body, deployment if isinstance(deployment, dict) else {}]
    places += [v for v in legacy.values() if isinstance(v, dict)] if isinstance(legacy, dict) else []
    return next((p["source_collection"] for p in places if p.get("source_collection") is not None), None)


def read_create_2026_07(body: Any) -> CreateRequest:
    """A 2026-07 ``POST /indexes`` body as a ``CreateRequest``, refused as the service refuses it."""
    from nsmigrate_sandbox.pinecone_control import (
        SERVERLESS_REGIONS,
        CreateRequest,
        IndexMeta,
        _check_name,
        _deletion_protection,
        check_tags,
    )

    body = _object(body)
    # The service's own refusals of what 2026-07 no longer creates come first (the SDK quotes them).
    if _source_collection(body) is not None:
        raise _bad(NOT_FROM_COLLECTION)
    deployment = body.get("deployment", {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"})
    legacy_spec = body.get("spec")
    if (isinstance(deployment, dict) and deployment.get("deployment_type") == "pod") or (
        isinstance(legacy_spec, dict) and "pod" in legacy_spec
    ):
        raise _bad(NO_PODS)
    unknown = [key for key in body if key not in CREATE_FIELDS]
    if unknown:
        expected = ", ".join(f"`{f}`" for f in CREATE_FIELDS)
        raise _not_deserialized(f"unknown field `{unknown[0]}`, expected one of {expected}")
    if "schema" not in body:
        raise _not_deserialized("missing field `schema`")
    name = _check_name("Index", body["name"]) if "name" in body else f"index-{uuid.uuid4().hex[:12]}"
    cloud, region = _deployment(deployment)
    if region not in SERVERLESS_REGIONS.get(cloud, ()):
        raise _Refusal(404, f"Resource cloud: {cloud} region: {region} not found.")
    _read_capacity(body.get("read_capacity"))
    schema = read_schema(body["schema"])
    if body.get("cmek_id") is not None:
        raise _bad("cmek_id requires customer-managed encryption keys, which are not enabled for this organization")
    if isinstance(schema, ClassicSchema):
        if schema.dimension is None:
            raise _bad("the local data plane does not serve sparse-only vector indexes (a schema of _sparse_values)")
        spec = IndexSpec(name, schema.dimension, schema.metric)
    else:
        spec = document_index(name, schema)
    meta = IndexMeta(
        cloud=cloud,
        region=region,
        deletion_protection=_deletion_protection(body.get("deletion_protection")),
        tags=check_tags(body.get("tags")),
    )
    return CreateRequest(spec=spec, meta=meta, source_collection=None)


def _deployment(deployment: Any) -> tuple[str, str]:
    if not isinstance(deployment, dict):
        raise _not_deserialized("deployment: expected an object")
    kind = deployment.get("deployment_type")
    if kind == "byoc":
        raise _bad("BYOC deployments are not served by the local data plane; use deployment_type managed")
    if kind != "managed":
        raise _not_deserialized(f"deployment: unknown variant `{kind}`, expected `managed` or `byoc`")
    unknown = sorted(set(deployment) - _MANAGED_FIELDS)
    if unknown:
        raise _not_deserialized(f"deployment: unknown field `{unknown[0]}`")
    for key in ("cloud", "region"):
        if not isinstance(deployment.get(key), str) or not deployment[key]:
            raise _not_deserialized(f"deployment: missing field `{key}`")
    return deployment["cloud"], deployment["region"]


def _read_capacity(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("mode") not in ("OnDemand", "Dedicated"):
        raise _bad("read_capacity.mode must be OnDemand or Dedicated")
    if value["mode"] == "Dedicated":
        raise _Refusal(403, "Dedicated read capacity is not enabled for this organization")


def _schema_fields(spec: IndexSpec) -> dict[str, Any]:
    if spec.documents is not None:
        return spec.documents.fields_json()
    if spec.embed is not None:
        semantic = {"type": "semantic_text", "model": spec.embed.model, "metric": spec.metric}
        return {spec.embed.field: {**semantic, "dimension": spec.dimension}}
    dense = {"type": "dense_vector", "dimension": spec.dimension, "metric": spec.metric}
    return {"_values": dense, "_sparse_values": {"type": "sparse_vector"}}


def index_model_2026_07(spec: IndexSpec, host: str, meta: IndexMeta) -> dict[str, Any]:
    """``IndexModel`` as 2026-07 writes it (see the module docstring)."""
    from nsmigrate_sandbox.pinecone_control import POD_DEPLOYMENT

    ready = meta.ready
    model: dict[str, Any] = {
        "name": spec.name,
        "host": host,  # the SDK keeps a host that carries a scheme
        "status": {"ready": ready, "state": meta.state},
        "deletion_protection": meta.deletion_protection,
        "schema": {"fields": _schema_fields(spec)},
        "tags": dict(meta.tags) or None,
    }
    if spec.kind == "pod":
        model["deployment"] = dict(POD_DEPLOYMENT)
    else:
        model["deployment"] = {"deployment_type": "managed", "cloud": meta.cloud, "region": meta.region}
        model["read_capacity"] = {"mode": "OnDemand", "status": {"state": "Ready"}}
    if meta.source_collection is not None:
        model["source_collection"] = meta.source_collection
    return model
