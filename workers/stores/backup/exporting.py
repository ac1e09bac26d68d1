"""Export namespaces to Parquet files: ids listed page by page, records fetched at most 1,000 at a time and written
as one row group each, so memory stays bounded; a directory export adds manifest.json listing its files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.listing.paging import iter_all_ids
from nsmigrate.orchestrator.records.namespaces import display_namespace
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
) -> ExportResult:
    """Write every vector of ``namespace`` to the Parquet file ``path`` (replaced if it exists).

    The file is written as ``<path>.partial`` and renamed when complete, so ``path`` is never a half export.
    Ids deleted between listing and fetching are skipped (the count is what was written).

    Parameters:
        store: a store that retries (``GuardedStore``); this function does not.
        namespace: ``""`` for the default namespace.
        path: the file to write; its folder is created.
        progress: called with ``(namespace, vectors written so far)`` after each row group.
        fetch_ids: ids per fetch and rows per row group (≤ 1,000 for Pinecone).
        keep: only the records it keeps are written (one creator's records of a shared namespace); default: all.

    Raises:
        RetryableError: a store call kept failing with 429/5xx.
        StoreError: the store refused a request.
        BackupError: a record does not fit the format (wrong dimension, metadata that is not JSON).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dimension = _store_dimension(store)
    partial = path.with_name(path.name + ".partial")
    fingerprint = IdsFingerprint()
    count = 0
    try:
        with pq.ParquetWriter(partial, SCHEMA, compression="zstd") as writer:
            for ids in id_chunks(store, namespace, fetch_ids):
                records = store.fetch(namespace, ids)
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
) -> list[ExportResult]:
    """Export each namespace to its own file in ``directory`` (see ``file_name_for``), then write ``manifest.json``.

    ``keep``: per namespace, which of its records are written (see ``export_namespace``); others are written whole.
    ``before_listing``: called with each namespace before it is listed (``workers.steps.freshness.awaiting_reads``:
    a lagging index's reads awaited, so a record written a moment before is in the file).
    ``directory`` must not exist yet or be empty: a backup never overwrites or mixes with another. If an export
    fails, the files this call wrote are removed again (and the directory, if it made it), so a directory with a
    manifest is always a complete export.

    Raises:
        BackupError: ``directory`` is not empty, or a namespace is named twice.
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
            results.append(export_namespace(store, ns, directory / name, progress=progress, keep=only))
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
