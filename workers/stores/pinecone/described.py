"""What a Pinecone index description says about the index, read from API 2026-07 or 2026-04.

2026-07's ``IndexModel`` has ``deployment`` and ``schema`` instead of ``spec``, ``dimension`` and ``metric``: a legacy
vector index reports its vectors as schema fields (``_values``), so its dimension and metric are read there (SDK 10
keeps the old names only as deprecated properties computed from the schema). Both shapes are read: the SDK's models
and plain JSON alike.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal


def _get(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def index_kind(model: Any) -> Literal["pod", "serverless"]:
    """``"pod"`` or ``"serverless"``: from the 2026-07 ``deployment`` (``deployment_type``) when the description
    has one, else from the 2026-04 ``spec``."""
    kind = _get(_get(model, "deployment"), "deployment_type")
    if kind is not None:
        return "pod" if kind == "pod" else "serverless"
    return "pod" if _get(_get(model, "spec"), "pod") is not None else "serverless"


def deployment_place(model: Any) -> tuple[str | None, str | None]:
    """(cloud, region) of a serverless index's 2026-07 ``deployment`` (or 2026-04 ``spec.serverless``); Nones when
    the description does not say (a pod index names an environment instead)."""
    deployment = _get(model, "deployment")
    if deployment is None:
        deployment = _get(_get(model, "spec"), "serverless")
    cloud, region = _get(deployment, "cloud"), _get(deployment, "region")
    return (str(cloud) if cloud else None), (str(region) if region else None)


def dense_shape(model: Any, *, fallback: bool = True) -> tuple[int | None, str | None]:
    """(dimension, metric) of an index description: its schema's one dense vector field (2026-07: a legacy index
    reports it as ``_values``), else (``fallback``) the description's own ``dimension`` and ``metric`` (2026-04)."""
    fields = _get(_get(model, "schema"), "fields") or {}
    dense = [f for f in dict(fields).values() if _get(f, "type") == "dense_vector" or _is_dense_model(f)]
    if len(dense) == 1:
        return int(_get(dense[0], "dimension")), str(_get(dense[0], "metric"))
    if not fallback:
        return None, None
    with contextlib.suppress(AttributeError):  # SDK 10's deprecated accessors refuse an ambiguous schema
        dimension, metric = _get(model, "dimension"), _get(model, "metric")
        return (int(dimension) if dimension else None), (str(metric) if metric else None)
    return None, None


def _is_dense_model(field: Any) -> bool:
    # The SDK's field models carry their wire tag as a class setting, not an attribute.
    return type(field).__name__ == "DenseVectorField"
