"""The backup format: namespaces as Parquet files, for backups before a migration, restores and moving data by hand
(``exporting`` writes them, ``importing`` reads them back).

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

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nsmigrate.orchestrator.errors import BackupError, StoreError
from nsmigrate.workers.stores.base import Record, Store

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


def _store_dimension(store: Store) -> int | None:
    """The store's dimension, or None when it cannot know yet (a pgvector store without tables)."""
    try:
        return int(store.dimension())
    except StoreError:
        return None
