"""Which file an export manifest's entry names: a file inside the manifest's own directory, or a refusal.

A ``manifest.json`` is text anyone with the directory can edit, and erasure rewrites and deletes the files it lists,
import reads them. So a ``file`` field is followed only to a file inside the directory, symlinks resolved: a
``../victim/v.parquet``, an absolute path or a link to a file elsewhere is refused before anything is read or
changed. No pyarrow here: the plan of an erasure and an import both ask it before they open a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.orchestrator.records.namespaces import display_namespace


def listed_file(directory: Path, entry: Mapping[str, object], manifest: Path) -> Path:
    """The file ``entry`` of ``manifest`` names, resolved (symlinks followed), inside ``directory``.

    Raises:
        BackupError: the name is missing, or it resolves outside ``directory`` (``..``, an absolute path, a symlink
            to a file elsewhere). Nothing was read or changed.
    """
    name = entry.get("file")
    namespace = display_namespace(str(entry.get("namespace", "")))
    if not isinstance(name, str) or not name or "\x00" in name:
        raise BackupError(
            f"{manifest}: the entry of namespace {namespace!r} names no file ({name!r}); nothing was changed",
            hint="the manifest is damaged; export again",
        )
    root = Path(directory).resolve()
    path = (root / name).resolve()
    if path == root or not path.is_relative_to(root):
        raise BackupError(
            f"{manifest}: the entry of namespace {namespace!r} names {name!r}, which is {path}, outside the "
            f"backup directory {root}; refused, nothing was read or changed",
            hint="a manifest lists only files of its own directory; restore the manifest nsmigrate wrote, or "
            "export again",
        )
    return path
