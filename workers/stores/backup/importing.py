"""Import a backup back into a store: each file's self-description read and checked before any row is read
(read_header), a directory's manifest (read_manifest), then rows batch_size at a time, split under the
upsert limits. Nothing is written for a file that is not a complete nsmigrate export, or whose target namespace
holds other data.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nsmigrate.orchestrator.errors import BackupError, NsmigrateError
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.workers.stores.backup.manifest_paths import listed_file
from nsmigrate.workers.stores.backup.parquet import (
    _KEY,
    FORMAT,
    FORMAT_VERSION,
    IMPORT_BATCH_ROWS,
    MANIFEST_NAME,
    ExportHeader,
    HoldBack,
    IdsFingerprint,
    ImportResult,
    ImportTarget,
    Progress,
    _store_dimension,
    table_to_records,
)
from nsmigrate.workers.stores.base import Store
from nsmigrate.workers.transfer.chunking import chunk_for_upsert

# --------------------------------------------------------------------------------------------------------- import


def read_header(path: Path) -> ExportHeader:
    """Read and check an export file's self-description (no rows are read).

    Raises:
        BackupError: the file is missing, not Parquet, not an nsmigrate export, of a newer format, or its columns or
            row count do not match what it says.
    """
    path = Path(path)
    if not path.exists():
        raise BackupError(f"{path} does not exist", hint="give an export file (.parquet) or an export directory")
    if path.is_dir():
        raise BackupError(f"{path} is a directory", hint="give one export file, or import the directory as a whole")
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as e:
        raise BackupError(
            f"{path} is not an nsmigrate export: it is not a Parquet file ({e})",
            hint="give a file written by `nsmigrate export`",
        ) from e
    kv = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (meta.metadata or {}).items()}
    if kv.get(f"{_KEY}format") != FORMAT:
        raise BackupError(
            f"{path} is a Parquet file but not an nsmigrate export (it has no {_KEY}format={FORMAT} key)",
            hint="give a file written by `nsmigrate export`",
        )
    if kv.get(f"{_KEY}format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path} has export format {kv.get(f'{_KEY}format_version')!r}; this nsmigrate reads "
            f"format {FORMAT_VERSION!r}",
            hint="import it with the nsmigrate version that wrote it",
        )
    problems = []
    for name, ok in (
        ("id", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
        (
            "values",
            lambda t: (
                (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))
                and pa.types.is_float32(t.value_type)
            ),
        ),
        ("metadata", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
    ):
        index = schema.get_field_index(name)
        if index < 0 or not ok(schema.field(index).type):
            problems.append(name)
    try:
        header = ExportHeader(
            path=path,
            namespace=kv[f"{_KEY}namespace"],
            dimension=int(kv[f"{_KEY}dimension"]),
            count=int(kv[f"{_KEY}count"]),
            fingerprint=kv[f"{_KEY}ids_fingerprint"],
            source=kv.get(f"{_KEY}source", ""),
            exported_at=kv.get(f"{_KEY}exported_at", ""),
            nsmigrate_version=kv.get(f"{_KEY}version", ""),
        )
    except (KeyError, ValueError) as e:
        raise BackupError(
            f"{path}: its nsmigrate metadata is incomplete or damaged ({e})", hint="export the namespace again"
        ) from e
    if problems:
        raise BackupError(f"{path}: column(s) {problems} are missing or of the wrong type", hint="export it again")
    if meta.num_rows != header.count:
        raise BackupError(f"{path} holds {meta.num_rows} rows but says {header.count}", hint="export it again")
    return header


def check_ids(header: ExportHeader) -> None:
    """Recompute the ids' fingerprint from the file (reads only the ``id`` column, row group by row group).

    Raises:
        BackupError: the ids are not the ones that were exported.
    """
    fingerprint = IdsFingerprint()
    parquet = pq.ParquetFile(header.path)
    for i in range(parquet.num_row_groups):
        fingerprint.update(parquet.read_row_group(i, columns=["id"]).column("id").to_pylist())
    if fingerprint.hexdigest() != header.fingerprint:
        raise BackupError(
            f"{header.path}: its ids do not match the fingerprint recorded at export",
            hint="the file is damaged or was edited; export the namespace again",
        )


def check_importable(
    store: Store,
    header: ExportHeader,
    namespace: str,
    *,
    overwrite: bool = False,
) -> int:
    """Refuse an import that would mix data up: a dimension mismatch, or a namespace that already holds vectors
    (unless ``overwrite``): by its count, or, where that says none, by a fetch of the file's ids. Returns how many
    vectors the namespace holds (by the fetch: of the file's ids). Writes nothing.

    Raises:
        BackupError: naming the file, the store and the namespace.
    """
    dimension = _store_dimension(store)
    if dimension is not None and header.count and dimension != header.dimension:
        raise BackupError(
            f"{header.path} holds vectors of dimension {header.dimension} but {store.name} has dimension {dimension}",
            hint="import it into a store of the same dimension",
        )
    existing = store.count(namespace)
    held = "vectors"
    if not existing and header.count:
        # A count lags writes (Pinecone's reads do): one of fresh writes may still read 0. A fetch of the file's own
        # ids does not lag, and finds every vector the import would replace.
        existing = stored_ids_of_file(store, header, namespace)
        held = "of the file's ids (its count, which lags writes, said none)"
    if existing and not overwrite:
        raise BackupError(
            f"namespace {display_namespace(namespace)} of {store.name} already holds {existing} "
            f"{held}; refusing to import {header.path} into it",
            hint="import into an empty namespace, or pass overwrite (--overwrite) to upsert over it: "
            "ids in the file replace the stored ones, other vectors are kept",
        )
    return existing


def stored_ids_of_file(store: Store, header: ExportHeader, namespace: str) -> int:
    """How many of the file's ids ``namespace`` holds now: the vectors an import with overwrite would replace.
    Fetched by the file's ids (≤ 1,000 a request), so it works on stores that cannot list and costs what the
    import's own writes cost, not what the namespace holds. Writes nothing."""
    parquet = pq.ParquetFile(header.path)
    found = 0
    for i in range(parquet.num_row_groups):
        ids = parquet.read_row_group(i, columns=["id"]).column("id").to_pylist()
        for start in range(0, len(ids), FETCH_MAX_IDS):
            found += len(store.fetch(namespace, ids[start : start + FETCH_MAX_IDS]))
    return found


def import_file(
    store: Store,
    path: Path,
    *,
    namespace: str | None = None,
    overwrite: bool = False,
    batch_size: int = IMPORT_BATCH_ROWS,
    progress: Progress | None = None,
    checked: bool = False,
    hold_back: HoldBack | None = None,
) -> ImportResult:
    """Upsert the vectors of an export file into ``namespace`` (default: the namespace recorded in the file).

    Before writing anything the header, the ids' fingerprint, the dimension and the target namespace are checked
    (``read_header``, ``check_ids``, ``check_importable``). Rows are read ``batch_size`` at a time and upserted in
    chunks of ≤ 1,000 vectors and ≤ 2 MB (``chunk_for_upsert``). Upserts are idempotent: an import that failed half
    way can be repeated with ``overwrite=True``.

    Parameters:
        store: a store that retries (``GuardedStore``); this function does not.
        overwrite: allow a namespace that already holds vectors (ids in the file replace the stored ones; other
            vectors are kept).
        checked: the caller already ran the three checks (``prepare_import`` does, for every file at once).
        hold_back: asked before each batch is written; what it leaves out is not written, and counted.

    Raises:
        BackupError: the file is not an intact nsmigrate export, the dimension differs, the namespace is not empty.
        RetryableError, StoreError: a store call failed.
    """
    header = read_header(path)
    target = header.namespace if namespace is None else namespace
    if not checked:
        check_ids(header)
        check_importable(store, header, target, overwrite=overwrite)
    count = held = 0
    parquet = pq.ParquetFile(header.path)
    for batch in parquet.iter_batches(batch_size=batch_size, columns=["id", "values", "metadata"]):
        records = table_to_records(batch, header)
        kept = records if hold_back is None else hold_back(target, records)
        for chunk in chunk_for_upsert(kept):
            store.upsert(target, chunk)
        count += len(kept)
        held += len(records) - len(kept)
        if progress is not None:
            progress(target, count + held)
    return ImportResult(
        namespace=target, count=count, path=header.path, source_namespace=header.namespace, held_back=held
    )


def read_manifest(directory: Path) -> list[ExportHeader]:
    """The headers of every file listed in an export directory's ``manifest.json``, in manifest order.

    Raises:
        BackupError: no manifest, a manifest that is not nsmigrate's, a listed file that is missing or does not say
            what the manifest says.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BackupError(
            f"{directory} is not an nsmigrate export directory: it has no {MANIFEST_NAME}",
            hint="give a directory written by `nsmigrate export`, or one .parquet file of it",
        )
    again = "restore the manifest.json nsmigrate wrote, or export again"
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["namespaces"] if manifest.get("format") == FORMAT else None
    except OSError as e:
        raise BackupError(
            f"cannot read {manifest_path}: {e.strerror or e}; nothing was written",
            hint="check that it can be read here (its permissions, the disk), then run the import again",
        ) from e
    except (json.JSONDecodeError, AttributeError, KeyError, UnicodeDecodeError) as e:
        raise BackupError(f"{manifest_path} is not an nsmigrate manifest ({e})", hint=again) from e
    if not isinstance(entries, list):
        raise BackupError(
            f"{manifest_path} is not an nsmigrate manifest (no format={FORMAT!r} and namespaces list)", hint=again
        )
    bad = [i for i, entry in enumerate(entries) if not isinstance(entry, dict)]
    if bad:
        raise BackupError(
            f"{manifest_path} is not an nsmigrate manifest (namespaces entry {bad[0]} is not an object: "
            f"{repr(entries[bad[0]])[:80]}); nothing was written",
            hint=again,
        )
    files = [listed_file(directory, entry, manifest_path) for entry in entries]  # all inside before any is read
    headers = []
    for entry, file in zip(entries, files, strict=True):
        header = read_header(file)
        if header.namespace != entry.get("namespace") or header.count != entry.get("count"):
            raise BackupError(
                f"{header.path} does not match {manifest_path}: it holds {header.count} vectors of "
                f"{display_namespace(header.namespace)}",
                hint="the export is damaged; export again",
            )
        headers.append(header)
    return headers


def prepare_import(
    store: Store,
    path: Path,
    *,
    namespaces: Sequence[str] | None = None,
    into: str | None = None,
    overwrite: bool = False,
) -> list[ImportTarget]:
    """Select and check the files of an export directory (every file its manifest lists) or of one export file,
    and say where each goes. Writes nothing: a caller shows what an overwrite replaces before ``import_targets``.

    Every selected file is checked (header, ids' fingerprint, dimension, empty target namespace unless
    ``overwrite``); with ``overwrite`` the stored ids the file would replace are counted (``stored_ids_of_file``).

    Parameters:
        namespaces: only the files of these recorded namespaces (``""`` = default).
        into: write into this namespace instead of the recorded one (exactly one file must be selected).

    Raises:
        BackupError: as ``import_file``, or a selected namespace that is not in the export.
    """
    path = Path(path)
    headers = read_manifest(path) if path.is_dir() else [read_header(path)]
    if namespaces is not None:
        recorded = {h.namespace for h in headers}
        unknown = [n for n in namespaces if n not in recorded]
        if unknown:
            raise BackupError(
                f"{path} has no export of namespace(s) {[display_namespace(n) for n in unknown]}; "
                f"it has {[display_namespace(n) for n in sorted(recorded)]}"
            )
        headers = [h for h in headers if h.namespace in set(namespaces)]
    if into is not None and len(headers) != 1:
        raise BackupError(
            f"a target namespace can only be given for one file; {path} selects {len(headers)}",
            hint="select one namespace of the export (--namespace) as well",
        )
    targets = []
    for header in headers:
        namespace = header.namespace if into is None else into
        check_ids(header)
        stored = check_importable(store, header, namespace, overwrite=overwrite)
        replaces = stored_ids_of_file(store, header, namespace) if stored else 0
        targets.append(ImportTarget(header, namespace, stored=stored, replaces=replaces))
    return targets


def import_targets(
    store: Store,
    targets: Sequence[ImportTarget],
    *,
    batch_size: int = IMPORT_BATCH_ROWS,
    progress: Progress | None = None,
    on_start: Callable[[ExportHeader, str], None] | None = None,
    hold_back: HoldBack | None = None,
) -> list[ImportResult]:
    """Upsert the files ``prepare_import`` checked, in order.

    Parameters:
        on_start: called with ``(header, target namespace)`` before each file is imported (for progress displays).
        hold_back: as ``import_file``.
    """
    results = []
    for target in targets:
        if on_start is not None:
            on_start(target.header, target.namespace)
        results.append(
            import_file(
                store,
                target.header.path,
                namespace=target.namespace,
                batch_size=batch_size,
                progress=progress,
                checked=True,
                hold_back=hold_back,
            )
        )
    return results


def import_path(
    store: Store,
    path: Path,
    *,
    namespaces: Sequence[str] | None = None,
    into: str | None = None,
    overwrite: bool = False,
    batch_size: int = IMPORT_BATCH_ROWS,
    progress: Progress | None = None,
    on_start: Callable[[ExportHeader, str], None] | None = None,
) -> list[ImportResult]:
    """Import an export directory or one export file: ``prepare_import``, then ``import_targets``. Every selected
    file is checked first: when any check fails nothing is written at all."""
    targets = prepare_import(store, path, namespaces=namespaces, into=into, overwrite=overwrite)
    return import_targets(store, targets, batch_size=batch_size, progress=progress, on_start=on_start)


def close_store(store: Store) -> None:
    """Close a store's connections (a failure to is no failure of the command)."""
    with contextlib.suppress(NsmigrateError):
        store.close()
