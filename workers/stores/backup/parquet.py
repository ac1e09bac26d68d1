"""Export namespaces to Parquet and import them back: backups before a migration, restores, moving data by hand.

One file per namespace, columns ``id`` (string), ``values`` (list<float32>) and ``metadata`` (string: the record's
metadata as JSON, so every shape round-trips exactly: lists of strings, booleans, ints vs floats). File-level
key/value metadata (keys ``nsmigrate.*``) records the format, the nsmigrate version, the source store, the namespace,
the dimension, the count, when it was exported and an order-independent fingerprint of the ids, so an import can tell
a complete nsmigrate export from any other Parquet file before it writes anything. A directory export adds
``manifest.json`` listing its files.

Memory stays bounded for big namespaces: ids are listed page by page, records fetched ≤ 1,000 at a time and written
as one row group each; an import reads ``batch_size`` rows at a time. Nothing here retries: pass a store that does
(``workers.stores.open_retrying_store``, a ``GuardedStore``), as the CLI does.

Values are float32 in the file, as both stores keep them: an export → import round trip is bit-exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nsmigrate.orchestrator.errors import BackupError, NsmigrateError, StoreError
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.listing.paging import iter_all_ids
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.workers.stores.backup.manifest_paths import listed_file
from nsmigrate.workers.stores.base import Record, Store
from nsmigrate.workers.transfer.chunking import chunk_for_upsert

FORMAT = "nsmigrate-export"
FORMAT_VERSION = "1"
MANIFEST_NAME = "manifest.json"
DEFAULT_FILE_STEM = "__default__"

#: Rows read from the file per step of an import (then split into upserts under 1,000 vectors / 2 MB).
IMPORT_BATCH_ROWS = 500

_KEY = "nsmigrate."
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("values", pa.list_(pa.float32()), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),
    ]
)

#: ``progress(namespace, vectors_done_so_far)`` after every row group written or upsert batch sent.
Progress = Callable[[str, int], None]
#: ``hold_back(namespace, records)``: the records an import may write into ``namespace``; the rest are held back
#: (the erasure ledger's, asked by the caller before each batch is written).
HoldBack = Callable[[str, list[Record]], list[Record]]


@dataclass(frozen=True)
class ExportResult:
    """One exported namespace: how many vectors went into which file (``bytes`` is the file size)."""

    namespace: str
    count: int
    path: Path
    fingerprint: str
    bytes: int
    dimension: int = 0


@dataclass(frozen=True)
class ImportResult:
    """One imported file: ``count`` vectors upserted into ``namespace`` (``source_namespace`` is the one recorded),
    ``held_back`` of its vectors not written (``HoldBack``)."""

    namespace: str
    count: int
    path: Path
    source_namespace: str
    held_back: int = 0


@dataclass(frozen=True)
class ExportHeader:
    """What an export file says about itself (its ``nsmigrate.*`` key/value metadata)."""

    path: Path
    namespace: str
    dimension: int
    count: int
    fingerprint: str
    source: str
    exported_at: str
    nsmigrate_version: str


@dataclass(frozen=True)
class ImportTarget:
    """One checked file of an import and where it goes: ``stored`` vectors are in ``namespace`` now, ``replaces`` of
    them have an id of the file (counted only with ``overwrite``; an import without it needs an empty namespace)."""

    header: ExportHeader
    namespace: str
    stored: int = 0
    replaces: int = 0


def nsmigrate_version() -> str:
    try:
        return importlib_metadata.version("nsmigrate")
    except importlib_metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


# --------------------------------------------------------------------------------------------------- pure helpers


class IdsFingerprint:
    """An order-independent fingerprint of a multiset of ids: the sum, modulo 2**256, of each id's SHA-256.

    Listing order differs between stores (and between pages of a live namespace), so a hash of the concatenation
    would not do; a sum does not care about order, and unlike XOR a repeated id does not cancel itself out.
    """

    _MOD = 1 << 256

    def __init__(self) -> None:
        self._sum = 0

    def update(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._sum = (self._sum + int.from_bytes(hashlib.sha256(i.encode()).digest(), "big")) % self._MOD

    def hexdigest(self) -> str:
        return f"sha256-sum:{self._sum:064x}"


def ids_fingerprint(ids: Iterable[str]) -> str:
    """The ``IdsFingerprint`` of ``ids`` (the same whatever their order)."""
    fp = IdsFingerprint()
    fp.update(ids)
    return fp.hexdigest()


_PLAIN_FILE_STEM = re.compile(r"[a-z0-9][a-z0-9.-]*(_[a-z0-9.-]+)*")  # used with fullmatch: "$" accepts a final "\n"


def file_name_for(namespace: str) -> str:
    """A safe, unique file name for ``namespace``'s export.

    The default namespace is ``__default__.parquet``. A name that is lower case letters, digits, ``.``, ``-`` and
    single ``_`` (≤ 100 characters) is used as it is; anything else (upper case: case-insensitive file systems;
    ``/``, ``:``, spaces; long names) is sanitised and gets ``__`` plus a hash of the real name. A plain name never
    contains ``__``, so a hashed name can never equal a plain one, and the manifest maps each file to its namespace.
    """
    if namespace == "":
        return f"{DEFAULT_FILE_STEM}.parquet"
    if len(namespace) <= 100 and _PLAIN_FILE_STEM.fullmatch(namespace):
        return f"{namespace}.parquet"
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:12]
    readable = re.sub(r"[^a-z0-9.-]+", "_", namespace.lower()).strip("_.-")[:60] or "ns"
    return f"{readable}__{digest}.parquet"


def _metadata_json(record: Record, path: Path) -> str:
    try:
        return json.dumps(record.metadata or {}, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise BackupError(
            f"metadata of record {record.id!r} cannot be written as JSON: {e}",
            hint="metadata values must be strings, numbers, booleans or lists of strings",
            file=str(path),
            record_id=record.id,
        ) from e


def records_to_table(records: Sequence[Record], dimension: int, path: Path) -> pa.Table:
    """Records as one Arrow table of ``SCHEMA`` (values cast to float32)."""
    for r in records:
        if len(r.values) != dimension:
            raise BackupError(
                f"record {r.id!r} has {len(r.values)} values, the namespace has dimension {dimension}",
                file=str(path),
                record_id=r.id,
            )
        if r.sparse_values is not None:
            # The format has no sparse column: a backup without them would restore less than was there.
            raise BackupError(
                f"record {r.id!r} has sparse values, which an nsmigrate export cannot hold; nothing was written",
                hint="back this index up with a Pinecone collection or backup instead",
                file=str(path),
                record_id=r.id,
            )
    flat = np.asarray([r.values for r in records], dtype=np.float32).reshape(-1)
    offsets = pa.array(np.arange(len(records) + 1, dtype=np.int32) * dimension)
    values = pa.ListArray.from_arrays(offsets, pa.array(flat, type=pa.float32()))
    return pa.Table.from_arrays(
        [
            pa.array([r.id for r in records], type=pa.string()),
            values,
            pa.array([_metadata_json(r, path) for r in records], type=pa.string()),
        ],
        schema=SCHEMA,
    )


def table_to_records(batch: pa.RecordBatch | pa.Table, header: ExportHeader) -> list[Record]:
    """Rows of an export back into records; values are the exact float32 numbers of the file (as Python floats)."""
    ids = batch.column("id").to_pylist()
    column = batch.column("values")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    # A null list (a damaged or hand-made file) counts as length -1, so it is refused like a wrong length.
    lengths = pc.fill_null(pc.list_value_length(column), -1).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != header.dimension)
    if len(bad):
        i = int(bad[0])
        raise BackupError(
            f"{header.path}: record {ids[i]!r} has {int(lengths[i])} values, the file says dimension "
            f"{header.dimension}",
            hint="the file is damaged; export the namespace again",
        )
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    rows = flat.reshape(len(ids), header.dimension).tolist() if ids else []
    metadata = batch.column("metadata").to_pylist()
    try:
        return [Record(id=i, values=v, metadata=json.loads(m)) for i, v, m in zip(ids, rows, metadata, strict=True)]
    except json.JSONDecodeError as e:
        raise BackupError(
            f"{header.path}: a metadata value is not JSON: {e}", hint="the file is damaged; export the namespace again"
        ) from e


# --------------------------------------------------------------------------------------------------------- export


def _id_chunks(store: Store, namespace: str, size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for vector_id in iter_all_ids(store, namespace):
        chunk.append(vector_id)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _store_dimension(store: Store) -> int | None:
    """The store's dimension, or None when it cannot know yet (a pgvector store without tables)."""
    try:
        return int(store.dimension())
    except StoreError:
        return None


def export_namespace(
    store: Store,
    namespace: str,
    path: Path,
    *,
    progress: Progress | None = None,
    fetch_ids: int = FETCH_MAX_IDS,
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
            for ids in _id_chunks(store, namespace, fetch_ids):
                records = store.fetch(namespace, ids)
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


def export_namespaces(
    store: Store,
    namespaces: Sequence[str],
    directory: Path,
    *,
    progress: Progress | None = None,
) -> list[ExportResult]:
    """Export each namespace to its own file in ``directory`` (see ``file_name_for``), then write ``manifest.json``.

    ``directory`` must not exist yet or be empty: a backup never overwrites or mixes with another. If an export
    fails, the files this call wrote are removed again (and the directory, if it made it), so a directory with a
    manifest is always a complete export.

    Raises:
        BackupError: ``directory`` is not empty, or a namespace is named twice.
        RetryableError, StoreError: as ``export_namespace``.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(
            f"{directory} already exists and is not an empty directory",
            hint="give a new directory: an export never overwrites or mixes with another",
        )
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
            results.append(export_namespace(store, ns, directory / name, progress=progress))
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
    (unless ``overwrite``). Returns how many vectors the namespace holds. Writes nothing.

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
    if existing and not overwrite:
        raise BackupError(
            f"namespace {display_namespace(namespace)} of {store.name} already holds {existing} "
            f"vectors; refusing to import {header.path} into it",
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
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["namespaces"] if manifest.get("format") == FORMAT else None
    except (json.JSONDecodeError, AttributeError, KeyError, UnicodeDecodeError) as e:
        raise BackupError(f"{manifest_path} is not an nsmigrate manifest ({e})") from e
    if not isinstance(entries, list):
        raise BackupError(f"{manifest_path} is not an nsmigrate manifest (no format={FORMAT!r} and namespaces list)")
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
