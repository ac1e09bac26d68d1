"""Export namespaces to Parquet files: ids listed page by page, records fetched at most 1,000 at a time and written
as one row group each, so memory stays bounded; a directory export adds manifest.json listing its files.

A source whose ids are not listed but enumerated (a Pinecone pod: a ``catalogue`` or a ``sweep`` of queries,
``workers.stores.enumeration``) may hand out fewer ids than the namespace holds. Its export is held against the
namespace's own count, read after it was written and polled until it settles (``enumerated_in_full``): one that found
fewer records fails, so no file of it, and no manifest, ever says a backup is complete when it is not.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.listing.paging import iter_all_ids
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.jobspec import Verification
from nsmigrate.orchestrator.verification.comparisons import counts_stable
from nsmigrate.workers.stores.backup.parquet import (
    _KEY,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SCHEMA,
    ExportResult,
    IdsFingerprint,
    Progress,
    _store_dimension,
    file_name_for,
    nsmigrate_version,
    records_to_table,
)
from nsmigrate.workers.stores.base import Record, Store

# --------------------------------------------------------------------------------------------------------- export


def enumerated_in_full(
    store: Store,
    namespace: str,
    found: int,
    *,
    vanished: int = 0,
    timeout_s: float | None = None,
    poll_s: float = 0.25,
) -> None:
    """Check that the export of ``namespace`` from a store whose ids are enumerated (``capabilities.enumeration``
    ``catalogue`` or ``sweep``) holds every record: ``found`` (the records its ids fetched) against the namespace's
    count, read now. A listed store's listing is the namespace: nothing is read, nothing checked.

    The count is polled until three readings agree (stats are eventually consistent; ``counts_stable``), unless the
    first one equals ``found``: two independent views (the ids enumerated and fetched, the index's stats) then name
    the same number. ``vanished``: ids the enumeration handed out that fetch did not find (deleted a moment ago, or
    a stale catalogue's); then a settled count above ``found`` may be one that does not show those deletes yet, and
    is given until ``timeout_s`` to catch up, as verification gives a target's count. A count still moving after
    ``timeout_s`` (None: the spec's default ``verify.count_timeout_s``) is judged by its largest recent reading, so a
    count that never settles cannot make a short export pass. Readings are ``poll_s`` apart, as verification's
    (``workers.steps.verifying.COUNT_POLL_INTERVAL_S``).

    Raises:
        BackupError: the count exceeds ``found``: the enumeration missed records (a sweep that could not cover the
            namespace, a catalogue that does not name every id); the message names the namespace, both numbers and
            what to change.
    """
    how = store.capabilities.enumeration
    if how == "list":
        return
    if timeout_s is None:
        timeout_s = float(Verification.model_fields["count_timeout_s"].default)
    readings = [store.count(namespace)]
    deadline = time.monotonic() + timeout_s
    agreed = readings[0] == found
    while not agreed and time.monotonic() < deadline:
        if counts_stable(readings) and (readings[-1] <= found or not vanished):
            break
        time.sleep(poll_s)
        readings.append(store.count(namespace))
    settled = agreed or counts_stable(readings)
    count = readings[-1] if settled else max(readings[-3:])
    if count <= found:
        return
    hint = (
        "raise enumerate.max_queries (or enumerate.top_k) so the sweep covers the namespace, or name its ids in a "
        "catalogue (enumerate.mode: catalogue)"
        if how == "sweep"
        else "bring the catalogue (enumerate.catalogue) up to date: it must name every id the namespace holds"
    )
    if not settled:  # a count still moving is an application writing the namespace: no enumeration catches up
        hint = "the namespace is being written (its count is still moving): export it once the application stopped"

    raise BackupError(
        f"namespace {display_namespace(namespace)!r} of {store.name}: the {how} found {found} records, but the "
        f"namespace's count, read after the export, is {count}"
        + ("" if settled else f" (it did not settle within {timeout_s:g} s: {readings[-3:]})")
        + (f" ({vanished} of the ids it named are not in the namespace)" if vanished else "")
        + f"; a backup without the other {count - found} would not be complete, so the export failed and nothing "
        "of it is kept (no file, no manifest)",
        hint=hint,
    )


def id_chunks(store: Store, namespace: str, size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for vector_id in iter_all_ids(store, namespace):
        chunk.append(vector_id)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def export_namespace(
    store: Store,
    namespace: str,
    path: Path,
    *,
    progress: Progress | None = None,
    fetch_ids: int = FETCH_MAX_IDS,
    keep: Callable[[Record], bool] | None = None,
    count_timeout_s: float | None = None,
) -> ExportResult:
    """Write every vector of ``namespace`` to the Parquet file ``path`` (replaced if it exists).

    The file is written as ``<path>.partial`` and renamed when complete, so ``path`` is never a half export.
    Ids deleted between listing and fetching are skipped (the count is what was written). The ids of a store that
    enumerates them (a catalogue, a sweep) must have found every record the namespace counts
    (``enumerated_in_full``), else nothing is written.

    Parameters:
        store: a store that retries (``GuardedStore``); this function does not.
        namespace: ``""`` for the default namespace.
        path: the file to write; its folder is created.
        progress: called with ``(namespace, vectors written so far)`` after each row group.
        fetch_ids: ids per fetch and rows per row group (≤ 1,000 for Pinecone).
        keep: only the records it keeps are written (one creator's records of a shared namespace); default: all.
        count_timeout_s: how long an enumerated namespace's count is polled while it keeps moving (None: the spec's
            default ``verify.count_timeout_s``).

    Raises:
        RetryableError: a store call kept failing with 429/5xx.
        StoreError: the store refused a request.
        BackupError: a record does not fit the format (wrong dimension, metadata that is not JSON), or an enumerated
            namespace holds more records than its ids found.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dimension = _store_dimension(store)
    partial = path.with_name(path.name + ".partial")
    fingerprint = IdsFingerprint()
    count = 0
    listed = found = 0  # ids handed out; records they fetched, before ``keep``: what the count is held against
    try:
        with pq.ParquetWriter(partial, SCHEMA, compression="zstd") as writer:
            for ids in id_chunks(store, namespace, fetch_ids):
                records = store.fetch(namespace, ids)
                listed, found = listed + len(ids), found + len(records)
                if keep is not None:
                    records = [r for r in records if keep(r)]
                if not records:
                    continue
                if dimension is None:
                    dimension = len(records[0].values)
                writer.write_table(records_to_table(records, dimension, path))
                fingerprint.update(r.id for r in records)
                count += len(records)
                if progress is not None:
                    progress(namespace, count)
            writer.add_key_value_metadata(
                {
                    f"{_KEY}format": FORMAT,
                    f"{_KEY}format_version": FORMAT_VERSION,
                    f"{_KEY}version": nsmigrate_version(),
                    f"{_KEY}source": store.name,
                    f"{_KEY}namespace": namespace,
                    f"{_KEY}dimension": str(dimension or 0),
                    f"{_KEY}count": str(count),
                    f"{_KEY}exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    f"{_KEY}ids_fingerprint": fingerprint.hexdigest(),
                }
            )
        enumerated_in_full(store, namespace, found, vanished=listed - found, timeout_s=count_timeout_s)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportResult(
        namespace=namespace,
        count=count,
        path=path,
        fingerprint=fingerprint.hexdigest(),
        bytes=path.stat().st_size,
        dimension=dimension or 0,
    )


def unused_directory(directory: Path) -> Path:
    """``directory`` as a Path, when it does not exist yet or is empty: an export never overwrites or mixes.

    Raises:
        BackupError: ``directory`` exists and is not an empty directory.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(
            f"{directory} already exists and is not an empty directory",
            hint="give a new directory: an export never overwrites or mixes with another",
        )
    return directory


def export_namespaces(
    store: Store,
    namespaces: Sequence[str],
    directory: Path,
    *,
    progress: Progress | None = None,
    keep: Mapping[str, Callable[[Record], bool]] | None = None,
    before_listing: Callable[[str], object] | None = None,
    count_timeout_s: float | None = None,
) -> list[ExportResult]:
    """Export each namespace to its own file in ``directory`` (see ``file_name_for``), then write ``manifest.json``.

    ``keep``: per namespace, which of its records are written (see ``export_namespace``); others are written whole.
    ``before_listing``: called with each namespace before it is listed (``workers.steps.freshness.awaiting_reads``:
    a lagging index's reads awaited, so a record written a moment before is in the file).
    ``directory`` must not exist yet or be empty: a backup never overwrites or mixes with another. If an export
    fails, the files this call wrote are removed again (and the directory, if it made it), so a directory with a
    manifest is always a complete export: a namespace whose enumerated ids (a catalogue, a sweep) found fewer records
    than it counts fails the export (``enumerated_in_full``).

    Raises:
        BackupError: ``directory`` is not empty, a namespace is named twice, or an enumeration fell short.
        RetryableError, StoreError: as ``export_namespace``.
    """
    directory = unused_directory(directory)
    if len(set(namespaces)) != len(namespaces):
        raise BackupError(f"a namespace is named twice in {[display_namespace(n) for n in namespaces]}")
    names = [file_name_for(ns) for ns in namespaces]
    if len({n.lower() for n in names}) != len(names):  # cannot happen with the hashed names; checked, not assumed
        raise BackupError(f"two namespaces map to the same file name: {names}", hint="export them one by one")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    results: list[ExportResult] = []
    try:
        for ns, name in zip(namespaces, names, strict=True):
            only = (keep or {}).get(ns)
            if before_listing is not None:
                before_listing(ns)
            results.append(
                export_namespace(
                    store, ns, directory / name, progress=progress, keep=only, count_timeout_s=count_timeout_s
                )
            )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "nsmigrate_version": nsmigrate_version(),
            "source": store.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "namespaces": [
                {
                    "namespace": r.namespace,
                    "file": r.path.name,
                    "count": r.count,
                    "dimension": r.dimension,
                    "fingerprint": r.fingerprint,
                    "bytes": r.bytes,
                }
                for r in results
            ],
        }
        partial = directory / (MANIFEST_NAME + ".partial")
        partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        os.replace(partial, directory / MANIFEST_NAME)
    except BaseException:
        for r in results:
            r.path.unlink(missing_ok=True)
        (directory / (MANIFEST_NAME + ".partial")).unlink(missing_ok=True)
        if created and not any(directory.iterdir()):
            directory.rmdir()
        raise
    return results
