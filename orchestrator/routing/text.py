"""Records as text: what an integrated target is written with, and what a re-embedding reads. Pure, no I/O.

One rule for the copy and for verification: a record's text is the value of source metadata field ``text_from`` when
it is a string with something in it besides whitespace. A record without text cannot be written as text (Pinecone
refuses the whole request) nor re-embedded: it is set aside and reported by id, never written empty.

An integrated index keeps a record as fields: its text under the index's text field (``field``, its ``field_map``)
and every other metadata field as it was, so ``text_fields`` of the metadata the copy would write is exactly what the
target must hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import JobSpec

#: Why a record is set aside; said in reports and audit events.
NO_TEXT = "no text"


def record_text(metadata: Mapping[str, Any] | None, text_from: str) -> str | None:
    """The record's text, or None when ``text_from`` is absent, not a string, or blank."""
    value = (metadata or {}).get(text_from)
    return value if isinstance(value, str) and value.strip() else None


def missing_text_reason(text_from: str) -> str:
    return f"{NO_TEXT}: metadata field {text_from!r} is absent, not a string or blank"


@dataclass(frozen=True)
class TextSplit:
    """Records that have text, in order, and the ids of those that have none."""

    with_text: list[Record]
    without_text: list[str]


def split_by_text(records: Iterable[Record], text_from: str) -> TextSplit:
    split = TextSplit([], [])
    for record in records:
        if record_text(record.metadata, text_from) is None:
            split.without_text.append(record.id)
        else:
            split.with_text.append(record)
    return split


def text_fields(metadata: Mapping[str, Any], text_from: str, field: str) -> dict[str, Any]:
    """The fields an integrated index holds for a record of this metadata: the text under ``field``, ``text_from``
    no longer under its own name (unless it is the same), every other field as it is."""
    text = record_text(metadata, text_from)
    if text is None:
        raise ValueError(f"a record without text has no fields ({missing_text_reason(text_from)})")
    fields = {k: v for k, v in metadata.items() if k != text_from}
    fields[field] = text
    return fields


def as_text_record(record: Record, text_from: str, field: str) -> Record:
    """The record as an integrated index is written with it: id and fields, no values (the index embeds the text)."""
    return Record(id=record.id, values=(), metadata=text_fields(record.metadata, text_from, field))


def estimate_tokens(text: str) -> int:
    """An upper bound of the embedding tokens a model counts for ``text``, for the rate budget: one per two bytes of
    UTF-8 plus two (start and end). A BPE model counts about a quarter of the bytes for English; the budget errs on
    the side that never exceeds a per-minute limit."""
    return math.ceil(len(text.encode()) / 2) + 2


def check_text_target(spec: JobSpec, target_label: str, target_dimension: int) -> None:
    """A job that writes text (integrated target) or re-embeds makes new vectors: the source's dimension and metric
    do not matter, but a re-embedding's target must have its dimension (≤ 0: not known yet).

    Raises:
        PlanError: the target's dimension is not ``reembed.dimension``.
    """
    if spec.reembed is not None and target_dimension > 0 and target_dimension != spec.reembed.dimension:
        raise PlanError(
            f"dimension mismatch: reembed makes {spec.reembed.dimension}-dimension vectors, target {target_label} "
            f"has {target_dimension}",
            hint="set reembed.dimension to the target's, or name a target index of that dimension",
            target=target_label,
        )
