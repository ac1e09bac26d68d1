"""Erasure in backups: an nsmigrate export directory rewritten without the subject's rows.

A file whose namespace is wholly the subject's is removed; any other file is rewritten without the rows whose
metadata is theirs (``Subject.owns_record``), its count and ids fingerprint updated; then ``manifest.json`` is written
again: the entries of files an erasure rewrote from their own headers, those of files it removed dropped, every other
entry as it was (a listed file that was already missing stays listed: the backup stays damaged, and import refuses
it, as before). The manifest is removed when the erasure removed every file (and the directory with it, when nothing
else is in it). Every file is written as ``.partial`` and renamed, and a file is marked in the manifest before it is
removed, so an erasure killed half-way is finished by running it again, and still tells the files it removed from
files that were lost.

A directory or manifest that cannot be read is never taken for an empty backup (``BackupUnreadable``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nsmigrate.orchestrator.errors import BackupError
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
Entries = list[tuple[dict[str, Any], Path]]

#: An entry's mark, written before its file is removed: a file gone with it was removed by an erasure, not lost.
REMOVED_MARK = "removed_by_erasure"
#: A file header's key an erasure sets when it rewrites the file: its entry is refreshed from the header.
_REWRITTEN = f"{_KEY}rewritten_by"


class BackupUnreadable(BackupError):
    """The backup's directory or manifest cannot be read here: another host's, a volume not mounted, a mistyped
    path, no permission. Its rows are not known to be gone."""


@dataclass(frozen=True)
class BackupErasure:
    """What ``erase_backup`` did: the subject's rows it removed, the listed files that were missing (kept listed),
    and whether it removed every file, and so the manifest."""

    rows: int
    missing: list[str] = field(default_factory=list)
    emptied: bool = False


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the backup in ``directory``: nsmigrate's, with a list of entries that are objects.

    Raises:
        BackupUnreadable: the directory or its manifest is not there, or cannot be read.
        BackupError: the manifest is not an nsmigrate manifest. Nothing was changed.
    """
    directory = Path(directory)
    manifest = directory / MANIFEST_NAME
    where = "is it on another host, or its volume not mounted?"
    if not directory.is_dir():
        raise BackupUnreadable(f"backup directory {directory} is not there ({where})")
    if not manifest.is_file():
        raise BackupUnreadable(f"backup directory {directory} has no {MANIFEST_NAME} ({where})")
    try:
        data = json.loads(manifest.read_text())
    except OSError as e:
        raise BackupUnreadable(f"cannot read {manifest}: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _not_ours(manifest, f"not JSON: {e}") from e
    entries = data.get("namespaces") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(entries, list):
        raise _not_ours(manifest, f"no format={FORMAT!r} and namespaces list")
    bad = [i for i, entry in enumerate(entries) if not isinstance(entry, dict)]
    if bad:
        raise _not_ours(manifest, f"namespaces entry {bad[0]} is not an object")
    return dict(data)


def _not_ours(manifest: Path, why: str) -> BackupError:
    return BackupError(
        f"{manifest} is not an nsmigrate manifest ({why}); nothing was changed",
        hint="restore the manifest.json nsmigrate wrote (or move the damaged backup away), then run the command again",
    )


def _entries(directory: Path) -> tuple[dict[str, Any], Entries]:
    """The manifest and its entries, each with the file it names: every one checked inside ``directory`` before any
    is read or changed (``listed_file``)."""
    manifest = read_manifest(directory)
    path = directory / MANIFEST_NAME
    return manifest, [(entry, listed_file(directory, entry, path)) for entry in manifest["namespaces"]]


def _theirs(table: pa.Table, subject: Subject) -> pa.Array:
    """A boolean mask: which rows of ``table`` are the subject's, by their metadata JSON (and id)."""
    ids, metadata = table.column("id").to_pylist(), table.column("metadata").to_pylist()
    return pa.array([subject.owns_record(json.loads(m or "{}"), i) for i, m in zip(ids, metadata, strict=True)])


def rows_of(directory: Path, subject: Subject, is_whole: IsWhole) -> int:
    """How many rows of the backup in ``directory`` are the subject's, in the listed files that are there.

    Raises:
        BackupUnreadable, BackupError: as ``read_manifest``.
    """
    directory = Path(directory)
    total = 0
    for entry, path in _entries(directory)[1]:
        if not path.is_file():
            continue
        if is_whole(str(entry.get("namespace", ""))):
            total += pq.read_metadata(path).num_rows
        else:
            total += int(pc.sum(_theirs(pq.read_table(path, columns=["id", "metadata"]), subject)).as_py() or 0)
    return total


def erase_rows(directory: Path, subject: Subject, is_whole: IsWhole) -> int:
    """Remove the subject's rows from the backup in ``directory``; returns how many rows went (``erase_backup``)."""
    return erase_backup(directory, subject, is_whole).rows


def erase_backup(
    directory: Path, subject: Subject, is_whole: IsWhole, *, before_emptying: Callable[[], object] | None = None
) -> BackupErasure:
    """Remove the subject's rows from the backup in ``directory``. Idempotent.

    ``before_emptying``: called before the manifest is removed (every file gone), to record that the erasure itself
    removed the backup: once it is gone, nothing else tells it from a backup that cannot be seen.

    Raises:
        BackupUnreadable, BackupError: as ``read_manifest`` (nothing was changed), or ``listed_file``.
    """
    directory = Path(directory)
    manifest, entries = _entries(directory)
    missing = [str(e.get("file")) for e, path in entries if not path.is_file() and not e.get(REMOVED_MARK)]
    whole = {i for i, (e, path) in enumerate(entries) if path.is_file() and is_whole(str(e.get("namespace", "")))}
    if any(not entries[i][0].get(REMOVED_MARK) for i in whole):
        # Marked before they go: a kill between their removal and the manifest's rewrite must not look like loss.
        marked = [{**e, REMOVED_MARK: True} if i in whole else e for i, (e, _) in enumerate(entries)]
        _save(directory, {**manifest, "namespaces": marked})
        entries = [(e, path) for e, (_, path) in zip(marked, entries, strict=True)]
    removed = 0
    for i, (_, path) in enumerate(entries):
        if i in whole:
            removed += pq.read_metadata(path).num_rows
            path.unlink()
        elif path.is_file():
            table = pq.read_table(path)
            mask = _theirs(table, subject)
            gone = int(pc.sum(mask).as_py() or 0)
            if gone:
                removed += gone
                _rewrite(path, table.filter(pc.invert(mask)))
    kept = [_entry_now(entry, path) for entry, path in entries if path.is_file() or not entry.get(REMOVED_MARK)]
    if kept:
        if kept != manifest["namespaces"]:
            _save(directory, {**manifest, "format_version": FORMAT_VERSION, "namespaces": kept})
        return BackupErasure(removed, missing)
    if before_emptying is not None:
        before_emptying()
    # Only what the export wrote goes: the directory too when that leaves it empty, never an operator's file or
    # another backup made inside it.
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()
    return BackupErasure(removed, missing, emptied=True)


def _entry_now(entry: dict[str, Any], path: Path) -> dict[str, Any]:
    """``entry`` as the manifest should list it: from the file's own header when an erasure rewrote the file (this
    one, or one killed before it rewrote the manifest), else as it was (a missing file stays listed)."""
    if not path.is_file():
        return entry
    kv = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    if _REWRITTEN not in kv:
        return entry
    return {
        **entry,
        "count": int(kv[f"{_KEY}count"]),
        "fingerprint": kv[f"{_KEY}ids_fingerprint"],
        "bytes": path.stat().st_size,
    }


def _rewrite(path: Path, kept: pa.Table) -> None:
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
    meta.update(
        {
            f"{_KEY}count": str(kept.num_rows),
            f"{_KEY}ids_fingerprint": ids_fingerprint(kept.column("id").to_pylist()),
            _REWRITTEN: f"nsmigrate {nsmigrate_version()} erase",
        }
    )
    partial = path.with_name(path.name + ".partial")
    pq.write_table(kept.replace_schema_metadata(meta), partial, compression="zstd")
    os.replace(partial, path)


def _save(directory: Path, manifest: dict[str, Any]) -> None:
    partial = directory / (MANIFEST_NAME + ".partial")
    partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(partial, directory / MANIFEST_NAME)
