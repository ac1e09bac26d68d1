"""A backup's ``manifest.json`` is text anyone with the directory can edit: every file it names must resolve inside
its own directory (symlinks followed), or the command refuses with one message and changes nothing. Erasure rewrites
and deletes the files a manifest lists, import reads them: a ``../victim/v.parquet``, an absolute path or a link to
a file elsewhere must never be either. Real parts: exports written from the local data plane through the real SDK,
`nsmigrate erase` and `nsmigrate import` run in process against a real job table and Redis."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers.stores.backup.erasure import erase_rows
from nsmigrate.workers.stores.backup.exporting import export_namespaces
from nsmigrate.workers.stores.backup.parquet import MANIFEST_NAME
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

DIM = 4
API_KEY = "sandbox-manifest-key"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture
def source(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedStore]:
    monkeypatch.setenv("PINECONE_API_KEY", API_KEY)
    store = GuardedStore(PineconeStore(PineconeStoreSpec(host=sandbox.host("src"))), attempts=3, max_wait_s=0.05)
    rows = [Record(f"m-{i}", [0.1 * (i + 1)] * DIM, {"creator_id": "a.1"}) for i in range(2)]
    store.upsert("shared", [*rows, Record("o-1", [0.5] * DIM, {"creator_id": "a.10"})])
    yield store
    store.close()


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links as links) → a digest of its bytes: what "nothing changed" compares."""
    return {
        str(p.relative_to(root)): "link:" + str(p.readlink())
        if p.is_symlink()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def forged_backup(source: GuardedStore, tmp_path: Path, how: str) -> Path:
    """A real export of ``shared`` in ``victim/`` (another team's backup, holding a.1's rows), and a backup
    directory whose manifest names that file: by ``..``, by its absolute path, or through a symlink."""
    export_namespaces(source, ["shared"], tmp_path / "victim")
    victim = tmp_path / "victim" / "shared.parquet"
    backup = tmp_path / "backup"
    export_namespaces(source, ["shared"], backup)  # a genuine backup, then its manifest edited
    manifest = json.loads((backup / MANIFEST_NAME).read_text())
    [entry] = manifest["namespaces"]
    if how == "dotdot":
        entry["file"] = "../victim/shared.parquet"
    elif how == "absolute":
        entry["file"] = str(victim)
    else:
        (backup / "shared.parquet").unlink()
        (backup / "shared.parquet").symlink_to(victim)
    (backup / MANIFEST_NAME).write_text(json.dumps(manifest))
    return backup


HOW = ["dotdot", "absolute", "symlink"]


@pytest.mark.parametrize("how", HOW)
def test_erase_refuses_a_manifest_naming_a_file_outside_its_directory(
    source: GuardedStore, tmp_path: Path, database_url: str, redis_url: str, how: str
) -> None:
    backup = forged_backup(source, tmp_path, how)
    before = fingerprint(tmp_path)

    command = ["erase", "--creator", "a.1", "--backup-dir", str(backup), "--yes"]
    result = CliRunner().invoke(app, [*command, "--database-url", database_url, "--redis-url", redis_url])

    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert str(backup / MANIFEST_NAME) in output and "outside the backup directory" in output
    assert "nothing was read or changed" in output
    assert fingerprint(tmp_path) == before  # the victim's file, the backup and its manifest as they were
    db = jobs_database.Database(database_url)
    assert jobs_status.list_jobs(db) == []  # no erasure job was written
    db.dispose()


@pytest.mark.parametrize("how", HOW)
def test_import_refuses_a_manifest_naming_a_file_outside_its_directory(
    source: GuardedStore, sandbox: PineconeSandbox, tmp_path: Path, how: str
) -> None:
    backup = forged_backup(source, tmp_path, how)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "restore",
                "source": {"kind": "pinecone", "host": sandbox.host("src")},
                "target": {"kind": "pinecone", "host": sandbox.host("dst")},
            }
        )
    )

    result = CliRunner().invoke(app, ["import", str(backup), str(spec)])

    assert result.exit_code == 2, result.output
    assert "outside the backup directory" in " ".join(result.output.split())
    store = GuardedStore(PineconeStore(PineconeStoreSpec(host=sandbox.host("dst"))), attempts=3, max_wait_s=0.05)
    assert store.namespaces() == {}  # nothing was read into the target
    store.close()


def test_one_bad_entry_stops_the_erasure_of_a_backup_before_any_file_changes(
    source: GuardedStore, tmp_path: Path
) -> None:
    """The erasure step itself (what `erase --resume` runs on a backup place): a manifest edited after the plan, its
    first file genuine and its second outside, is refused before the first is rewritten."""
    source.upsert("more", [Record("m-9", [0.9] * DIM, {"creator_id": "a.1"})])
    export_namespaces(source, ["more"], tmp_path / "victim")
    backup = tmp_path / "backup"
    export_namespaces(source, ["shared"], backup)
    manifest = json.loads((backup / MANIFEST_NAME).read_text())
    manifest["namespaces"].append({**manifest["namespaces"][0], "namespace": "more", "file": "../victim/more.parquet"})
    (backup / MANIFEST_NAME).write_text(json.dumps(manifest))
    before = fingerprint(tmp_path)

    with pytest.raises(BackupError, match="outside the backup directory"):
        erase_rows(backup, Subject("a.1"), lambda ns: ns == "more")

    assert fingerprint(tmp_path) == before
