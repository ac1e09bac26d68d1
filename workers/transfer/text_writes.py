"""What a copy writes when its job writes text (``spec.text_from``): text records for an integrated target
(``target.records``), vectors made anew from the text for a re-embedding (``reembed``), and which ids cannot be
written because they have no text. The rules are ``orchestrator.routing.text``'s, shared with verification.

The embedder of a re-embedding is opened once per process and spec (a real model is expensive to load).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from nsmigrate.orchestrator.limits import UPSERT_MAX_VECTORS, UPSERT_RECORDS_MAX
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.text import as_text_record, estimate_tokens, record_text, split_by_text
from nsmigrate.orchestrator.spec.jobspec import JobSpec, Reembed
from nsmigrate.workers.transfer.embedders import Embedder, open_embedder

_embedders: dict[tuple[str, int], Embedder] = {}
_lock = threading.Lock()


def embedder_for(reembed: Reembed) -> Embedder:
    """This process's embedder for ``reembed`` (opened on first use)."""
    key = (reembed.embedder, reembed.dimension)
    with _lock:
        if key not in _embedders:
            _embedders[key] = open_embedder(reembed.embedder, reembed.dimension)
        return _embedders[key]


def reembedded(records: Sequence[Record], embedder: Embedder, text_from: str) -> list[Record]:
    """The records with their values made anew from their text (all must have text), metadata kept."""
    texts = [record_text(r.metadata, text_from) or "" for r in records]
    vectors = embedder.embed(texts) if records else []
    return [Record(id=r.id, values=v, metadata=r.metadata) for r, v in zip(records, vectors, strict=True)]


def for_target(
    spec: JobSpec, by_target: dict[str, list[Record]]
) -> tuple[dict[str, list[Record]], dict[str, list[str]]]:
    """Routed records as the target takes them, and per target namespace the ids set aside for having no text.
    A job that writes no text gets its records back as they are."""
    text_from = spec.text_from
    if text_from is None:
        return by_target, {}
    writable: dict[str, list[Record]] = {}
    unwritable: dict[str, list[str]] = {}
    text_records = spec.text_records
    for namespace, records in by_target.items():
        split = split_by_text(records, text_from)
        if split.without_text:
            unwritable[namespace] = split.without_text
        if not split.with_text:
            continue
        if text_records is not None:
            writable[namespace] = [as_text_record(r, text_from, text_records.field) for r in split.with_text]
        else:
            assert spec.reembed is not None  # text_from is set: one of the two
            writable[namespace] = reembedded(split.with_text, embedder_for(spec.reembed), text_from)
    return writable, unwritable


def records_per_request(spec: JobSpec) -> int:
    """Records in one upsert request: 96 text records for an integrated index, else 1,000 vectors."""
    return UPSERT_RECORDS_MAX if spec.text_records is not None else UPSERT_MAX_VECTORS


def tokens_of(spec: JobSpec, records: Sequence[Record]) -> int | None:
    """The embedding tokens an integrated index's model takes for these text records (an upper bound), else None."""
    if spec.text_records is None:
        return None
    field = spec.text_records.field
    return sum(estimate_tokens(str(r.metadata.get(field, ""))) for r in records)
