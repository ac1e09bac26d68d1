"""Target indexes nsmigrate creates: what shape an index must have, whether to create it or use the one that exists,
and waiting until it is ready.

The decisions are pure (``wanted_shape``, ``shape_problems``, ``plan_target_index``); the control plane is reached
through the ``IndexControl`` protocol the entry point passes in (``workers.stores.pinecone.control`` implements it),
so the orchestrator never imports a store SDK.

An ``IndexShape`` is everything an index is created with. It is the one object other index kinds extend (an
integrated index adds its embedding model and field map): ``shape_problems`` compares what matters for a copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from nsmigrate.orchestrator.errors import PlanError, StoreError
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import CreateIndex, DocumentMapping

#: ``wait_until_ready`` asks the control plane after 0.25 s, then twice as late each time, up to this (Pinecone's
#: SDK polls every 5 s): a sandbox index is seen ready at once, a real one is not asked about too often.
READY_POLL_S = 5.0
FIRST_POLL_S = 0.25


@dataclass(frozen=True)
class IndexShape:
    """What an index is created with: vectors (dimension, metric, type), where it runs, protection, tags; for an
    integrated index its embedding ``model`` and ``text_field`` (its field map), dimension and metric 0 and "" when
    the model's own defaults apply."""

    dimension: int
    metric: str
    vector_type: str = "dense"
    cloud: str = "aws"
    region: str = "us-east-1"
    deletion_protection: str = "disabled"
    tags: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    text_field: str | None = None
    #: A document index: its dense_vector field (dimension and metric above), sparse_vector and full-text fields.
    dense_field: str | None = None
    sparse_field: str | None = None
    text_fields: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for plans and messages, e.g. ``serverless aws/us-east-1, 3072-dim cosine, …``."""
        tags = ", ".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        vectors = f"{self.dimension}-dim {self.metric} {self.vector_type}"
        if self.model is not None:
            vectors = (
                f"integrated: model {self.model} embeds field {self.text_field!r}"
                + (f", {self.dimension}-dim" if self.dimension else "")
                + (f" {self.metric}" if self.metric else "")
            )
        if self.dense_field is not None:
            vectors = f"document index: {self.document_fields()}"
        return f"serverless {self.cloud}/{self.region}, {vectors}, deletion protection {self.deletion_protection}" + (
            f", tags {tags}" if tags else ""
        )

    def document_fields(self) -> str:
        """A document index's schema in a few words, e.g. ``dense_vector 'embedding' 3072-dim cosine, …``."""
        parts = [f"dense_vector {self.dense_field!r} {self.dimension}-dim {self.metric}"]
        if self.sparse_field is not None:
            parts.append(f"sparse_vector {self.sparse_field!r}")
        parts += [f"full-text string {name!r}" for name in self.text_fields]
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = dict(self.tags)
        data["text_fields"] = list(self.text_fields)
        return data


@dataclass(frozen=True)
class IndexInfo:
    """An index as the control plane describes it."""

    name: str
    dimension: int | None
    metric: str | None
    kind: Literal["pod", "serverless"]
    ready: bool
    state: str
    host: str | None = None
    model: str | None = None  # an integrated index's embedding model
    text_field: str | None = None  # and the field it embeds (field_map.text)
    dense_field: str | None = None  # a document index's dense_vector field (None: a legacy index)
    sparse_field: str | None = None  # and its sparse_vector field
    cloud: str | None = None  # where a serverless index runs (None: not said)
    region: str | None = None


class IndexControl(Protocol):
    """The control-plane calls index creation needs (a Pinecone project)."""

    def describe_index(self, name: str) -> IndexInfo | None:
        """The index, or None when it does not exist."""
        ...

    def create_index(self, name: str, shape: IndexShape) -> IndexInfo:
        """Start creating a serverless index; returns at once (it is usually not ready yet)."""
        ...


@dataclass(frozen=True)
class TargetIndex:
    """The plan's decision about a target index: ``create`` it, or ``use`` the one that exists (same shape)."""

    name: str
    shape: IndexShape
    action: Literal["create", "use"]

    def describe(self) -> str:
        verb = "will be created" if self.action == "create" else "exists with this shape and is used as it is"
        return f"target index {self.name} {verb}: {self.shape.describe()}"


def wanted_shape(
    create: CreateIndex,
    source_dimension: int,
    source_metric: str | None,
    *,
    text_field: str | None = None,
    reembed_dimension: int | None = None,
    documents: DocumentMapping | None = None,
) -> IndexShape:
    """The shape ``create`` asks for, with the source's dimension and metric where it gives none (a re-embedding:
    its own dimension; an integrated index: the model's defaults)."""
    if create.model is not None:
        return IndexShape(
            dimension=create.dimension or 0,
            metric=create.metric or "",
            cloud=create.cloud,
            region=create.region,
            deletion_protection=create.deletion_protection,
            tags=dict(create.tags),
            model=create.model,
            text_field=text_field,
        )
    return IndexShape(
        dimension=create.dimension or reembed_dimension or source_dimension,
        metric=create.metric or source_metric or "cosine",
        cloud=create.cloud,
        region=create.region,
        deletion_protection=create.deletion_protection,
        tags=dict(create.tags),
        dense_field=documents.dense_field if documents is not None else None,
        sparse_field=documents.sparse_field if documents is not None else None,
        text_fields=tuple(documents.text_fields) if documents is not None else (),
    )


def shape_problems(wanted: IndexShape, dimension: int | None, metric: str | None) -> list[str]:
    """What differs between the shape a copy needs and an index's (empty: it can hold the copy as it is)."""
    problems = []
    if wanted.model is not None:  # an integrated index: the model's dimension and metric, unless asked for
        dimension = dimension if wanted.dimension else None
        metric = metric if wanted.metric else None
    if dimension is not None and dimension != wanted.dimension:
        problems.append(f"dimension {dimension}, not {wanted.dimension}")
    if metric is not None and metric != wanted.metric:
        problems.append(f"metric {metric}, not {wanted.metric}")
    return problems


def command_creates_target(spec: JobSpec) -> bool:
    """Whether the command makes ``spec``'s ``target.create`` index before the job: the fleet's and an import's,
    which write into an index that exists (Pinecone makes a collection's or a conversion's in the job's steps)."""
    target = spec.target
    return target.kind == "pinecone" and target.create is not None and spec.strategy in ("fleet", "import")


def plan_target_index(
    spec: JobSpec, source_label: str, source_dimension: int, source_metric: str | None, control: IndexControl | None
) -> TargetIndex | None:
    """Decide about ``spec.target.create``: None when the spec asks for no index, else create or use.

    Raises:
        PlanError: the asked shape differs from the source's (a copy cannot change dimension, and a metric change
            would rank differently), an existing index of that name has another shape, or it is a pod index.
    """
    target = spec.target
    if target.kind == "pinecone" and target.create is None and target.records is not None:
        _check_integrated(target.index, target.records.field, control)
    if target.kind == "pinecone" and target.create is None and target.documents is not None:
        _check_document_index(target.index, target.documents, source_dimension, source_metric, control)
    if target.kind != "pinecone" or target.create is None:
        return None
    name = str(target.index)
    reembed = spec.reembed.dimension if spec.reembed is not None else None
    text_field = target.records.field if target.records is not None else None
    shape = wanted_shape(
        target.create,
        source_dimension,
        source_metric,
        text_field=text_field,
        reembed_dimension=reembed,
        documents=target.documents,
    )
    # A copy keeps the vectors, so the shape must be the source's; text (integrated or re-embedded) makes new ones.
    differs = shape_problems(shape, source_dimension, source_metric) if spec.text_from is None else []
    if differs:
        raise PlanError(
            f"target.create asks for an index of {_wanted(shape)} but the source {source_label} has dimension "
            f"{source_dimension} and metric {source_metric}",
            hint="leave target.create.dimension and .metric out (they default to the source's), or set them to the "
            "source's",
            target=name,
        )
    if control is None:
        raise PlanError("target.create needs the Pinecone control plane, and none was given", target=name)
    existing = control.describe_index(name)
    if existing is None:
        return TargetIndex(name=name, shape=shape, action="create")
    problems = shape_problems(shape, existing.dimension, existing.metric)
    if existing.kind != "serverless":
        problems.append(f"a {existing.kind} index, not serverless")
    if (existing.model, existing.text_field) != (shape.model, shape.text_field):
        has = f"model {existing.model} embedding {existing.text_field!r}" if existing.model else "no integrated model"
        wants = f"model {shape.model} embedding {shape.text_field!r}" if shape.model else "a plain vector index"
        problems.append(f"{has}, not {wants}")
    problems += _document_problems(shape, existing)
    if problems:
        raise PlanError(
            f"target index {name} exists with {', '.join(problems)}; the copy needs {_wanted(shape)}",
            hint="name another index in target.index, or delete that one if it is not needed",
            target=name,
        )
    return TargetIndex(name=name, shape=shape, action="use")


def _existing(name: str | None, control: IndexControl | None, create: str) -> IndexInfo | None:
    """The existing target index ``name``; None when it cannot be asked (a ``host`` target, no control plane).

    Raises:
        PlanError: it does not exist (``create``: what makes the job create it).
    """
    if name is None or control is None:
        return None
    existing = control.describe_index(name)
    if existing is None:
        raise PlanError(f"target index {name} does not exist", hint=f"{create} to have the job create it", target=name)
    return existing


def _check_integrated(name: str | None, field: str, control: IndexControl | None) -> None:
    """An existing target named by ``index`` that records are written to as text must embed ``field`` (a ``host``
    target cannot be asked: Pinecone refuses its first text upsert instead, failing the batch with that message)."""
    existing = _existing(name, control, "add target.create.model (an embedding model Pinecone hosts)")
    if existing is None:
        return
    if existing.text_field != field:
        has = f"embeds field {existing.text_field!r}" if existing.model else "has no integrated embedding"
        raise PlanError(
            f"target index {name} {has}, but target.records.field is {field!r}",
            hint="set target.records.field to the index's text field, or name an integrated index that embeds it",
            target=name,
        )


def _document_problems(shape: IndexShape, existing: IndexInfo) -> list[str]:
    """How an existing index differs from the document index ``shape`` asks for (or the legacy one)."""
    if shape.dense_field is None:
        return [f"a document index (dense field {existing.dense_field!r})"] if existing.dense_field else []
    if existing.dense_field is None:
        return ["a legacy vector index, not a document index"]
    problems = []
    if existing.dense_field != shape.dense_field:
        problems.append(f"dense_vector field {existing.dense_field!r}, not {shape.dense_field!r}")
    if shape.sparse_field is not None and existing.sparse_field != shape.sparse_field:
        problems.append(f"sparse_vector field {existing.sparse_field!r}, not {shape.sparse_field!r}")
    return problems


def _check_document_index(
    name: str | None, fields: DocumentMapping, dimension: int, metric: str | None, control: IndexControl | None
) -> None:
    """An existing document index named by ``index`` must have the dense (and sparse) field the mapping writes, of
    the source's dimension and metric (a ``host`` target cannot be asked: its first upsert would be refused)."""
    existing = _existing(name, control, "add target.create (cloud, region), from target.documents,")
    if existing is None:
        return
    wanted = IndexShape(dimension, metric or "cosine", dense_field=fields.dense_field, sparse_field=fields.sparse_field)
    problems = _document_problems(wanted, existing) + shape_problems(wanted, existing.dimension, existing.metric)
    if problems:
        raise PlanError(
            f"target index {name} has {', '.join(problems)}; the copy needs a document index with "
            f"{wanted.document_fields()}",
            hint="set target.documents to the index's fields, or name another document index",
            target=name,
        )


def _wanted(shape: IndexShape) -> str:
    if shape.model is not None:
        return f"model {shape.model} embedding field {shape.text_field!r}"
    return f"dimension {shape.dimension} and metric {shape.metric}"


def wait_until_ready(
    control: IndexControl,
    name: str,
    *,
    timeout_s: float,
    poll_s: float = READY_POLL_S,
    on_wait: Callable[[float, IndexInfo], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> IndexInfo:
    """Ask the control plane until index ``name`` is ready; ``on_wait(elapsed_s, info)`` after each not-ready answer.

    Raises:
        StoreError: the index is gone, failed to initialize, or is not ready after ``timeout_s``.
    """
    start = clock()
    pause = FIRST_POLL_S
    while True:
        info = control.describe_index(name)
        if info is None:
            raise StoreError(f"index {name} disappeared while nsmigrate waited for it to be ready", target=name)
        if info.ready:
            return info
        if info.state == "InitializationFailed":
            raise StoreError(f"index {name} failed to initialize", hint="see the Pinecone console", target=name)
        elapsed = clock() - start
        if elapsed >= timeout_s:
            raise StoreError(
                f"index {name} is still {info.state} after {timeout_s:.0f} s",
                hint="run again later: the index exists now and will be used as it is once ready",
                target=name,
            )
        if on_wait is not None:
            on_wait(elapsed, info)
        sleep(min(pause, poll_s, max(0.0, timeout_s - elapsed)))
        pause *= 2


def ensure_target_index(
    control: IndexControl,
    target: TargetIndex,
    *,
    timeout_s: float,
    poll_s: float = READY_POLL_S,
    on_wait: Callable[[float, IndexInfo], None] | None = None,
) -> tuple[IndexInfo, float]:
    """Create the index when the plan says so, then wait until it is ready. Returns it and the seconds waited."""
    start = time.monotonic()
    if target.action == "create":
        control.create_index(target.name, target.shape)
    info = wait_until_ready(control, target.name, timeout_s=timeout_s, poll_s=poll_s, on_wait=on_wait)
    return info, time.monotonic() - start
