"""Erasure in backups: an nsmigrate export directory rewritten without the subject's rows.

A file whose namespace is wholly the subject's is removed; any other file is rewritten without the rows whose
metadata is theirs (``Subject.owns_record``), its count and ids fingerprint updated; then ``manifest.json`` is written
again from the files that are left, or removed when none is (and the directory with it, when nothing else is in it).
Every file is written as ``.partial`` and renamed, and the manifest is rebuilt from the files' own headers, so an
erasure killed half-way leaves a readable backup and running it again finishes the job.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers.stores.backup.manifest_paths import listed_file
from nsmigrate.workers.stores.backup.parquet import (
    _KEY,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ids_fingerprint,
    nsmigrate_version,
)

IsWhole = Callable[[str], bool]


def _entries(directory: Path) -> list[tuple[dict[str, object], Path]]:
    """The manifest's entries, each with the file it names: every one checked inside ``directory`` before any is
    read or changed (``listed_file``)."""
    manifest = directory / MANIFEST_NAME
    if not manifest.is_file():
        return []
    data = json.loads(manifest.read_text())
    entries = list(data.get("namespaces") or []) if data.get("format") == FORMAT else []
    return [(entry, listed_file(directory, entry, manifest)) for entry in entries]


def _theirs(table: pa.Table, subject: Subject) -> pa.Array:
    """A boolean mask: which rows of ``table`` are the subject's, by their metadata JSON (and id)."""
    ids, metadata = table.column("id").to_pylist(), table.column("metadata").to_pylist()
    return pa.array([subject.owns_record(json.loads(m or "{}"), i) for i, m in zip(ids, metadata, strict=True)])


def rows_of(directory: Path, subject: Subject, is_whole: IsWhole) -> int:
    """How many rows of the backup in ``directory`` are the subject's (0 for a directory that is gone)."""
    directory = Path(directory)
    total = 0
    for entry, path in _entries(directory):
        if not path.is_file():
            continue
        if is_whole(str(entry["namespace"])):
            total += pq.read_metadata(path).num_rows
        else:
            total += int(pc.sum(_theirs(pq.read_table(path, columns=["id", "metadata"]), subject)).as_py() or 0)
    return total


def erase_rows(directory: Path, subject: Subject, is_whole: IsWhole) -> int:
    """Remove the subject's rows from the backup in ``directory``; returns how many rows went. Idempotent."""
    directory = Path(directory)
    entries = _entries(directory)
    removed = 0
    for entry, path in entries:
        if not path.is_file():
            continue
        if is_whole(str(entry["namespace"])):
            removed += pq.read_metadata(path).num_rows
            path.unlink()
            continue
        table = pq.read_table(path)
        mask = _theirs(table, subject)
        gone = int(pc.sum(mask).as_py() or 0)
        if gone:
            removed += gone
            _rewrite(path, table.filter(pc.invert(mask)))
    _write_manifest(directory, entries)
    return removed


def _rewrite(path: Path, kept: pa.Table) -> None:
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    meta.update(
        {
            f"{_KEY}count": str(kept.num_rows),
            f"{_KEY}ids_fingerprint": ids_fingerprint(kept.column("id").to_pylist()),
            f"{_KEY}rewritten_by": f"nsmigrate {nsmigrate_version()} erase",
        }
    )
    partial = path.with_name(path.name + ".partial")
    pq.write_table(kept.replace_schema_metadata(meta), partial, compression="zstd")
    os.replace(partial, path)


def _write_manifest(directory: Path, entries: list[tuple[dict[str, object], Path]]) -> None:
    """The manifest again, from the files that are left (their own headers: counts and fingerprints as written);
    the manifest goes when no file is left, and the directory with it when nothing else is there."""
    left = []
    for entry, path in entries:
        if not path.is_file():
            continue
        kv = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
        left.append(
            {
                **entry,
                "count": int(kv[f"{_KEY}count"]),
                "fingerprint": kv[f"{_KEY}ids_fingerprint"],
                "bytes": path.stat().st_size,
            }
        )
    if not left:
        # Only what the export wrote goes: the directory too when that leaves it empty, never an operator's file or
        # another backup made inside it.
        (directory / MANIFEST_NAME).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            directory.rmdir()
        return
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    manifest.update({"format": FORMAT, "format_version": FORMAT_VERSION, "namespaces": left})
    partial = directory / (MANIFEST_NAME + ".partial")
    partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(partial, directory / MANIFEST_NAME)
