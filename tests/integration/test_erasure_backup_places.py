"""A backup place of an erasure is checked on what the erasure could read, never on what it could not: a backup
directory this host cannot see (another host's, a volume not mounted, a mistyped --backup-dir) fails its place and
is named as not searched by a plan, unless an erasure removed it itself; an erasure keeps listing a file the backup
had already lost, so the damaged backup is not made to look complete; a damaged manifest stops `erase` with one line.
The erasure's own code (plan, places, `nsmigrate erase`) on real services: the job table, Redis, exports written
from the local Pinecone data plane through the real SDK."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.backup import record_export
from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import BackupError, ErasureFailed
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import erasing
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.stores.backup.exporting import export_namespaces
from nsmigrate.workers.stores.backup.importing import import_path
from nsmigrate.workers.stores.backup.parquet import MANIFEST_NAME
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.test_erasure_and_copies import Dispatcher, shared_namespace
from tests.integration.test_verify_cleanup import make_records, make_spec
from tests.settling import settle

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_ERASE_BACKUPS_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=Dispatcher())


@pytest.fixture
def stores(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-backups-test")
    return {name: {"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst")}


def exported(stores: dict[str, dict[str, Any]], tmp_path: Path, out: Path, job_table_url: str) -> Path:
    """`nsmigrate export` of the source's namespaces into ``out``, recorded in the job table as `export` does."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "archive", "source": stores["src"], "target": stores["dst"]}))
    result = CliRunner().invoke(app, ["export", str(spec_file), "--out", str(out), "--database-url", job_table_url])
    assert result.exit_code == 0, result.output
    return out


def backup_place(directory: Path, whole: list[str], planned: int) -> dict[str, Any]:
    """A backup place as `erase` plans one (``whole``: the namespaces wholly the subject's)."""
    return {
        "kind": "backup",
        "store": "backup",
        "store_spec": {"whole": whole},
        "namespace": None,
        "path": str(directory.resolve()),
        "planned": planned,
    }


def ids_in(directory: Path) -> set[str]:
    return {i for f in directory.glob("*.parquet") for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()}


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` → a digest of its bytes: what "nothing changed" compares."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_a_backup_this_host_cannot_see_fails_its_place_and_is_erased_once_seen(
    ctx: WorkerContext, stores: dict[str, dict[str, Any]], tmp_path: Path, job_table_url: str
) -> None:
    """`erase --yes` planned the backup; its place ran only later (`erase --resume`), on a host where the backup's
    volume is not mounted: it found no manifest, and checked the place erased while a.1's rows were still there."""
    shared_namespace(ctx, make_spec((stores["src"], stores["src"])))  # a.1's m-000…m-002, a.10's o-…
    backup = exported(stores, tmp_path, tmp_path / "archive", job_table_url)
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    [place] = [p for p in plan.places if p["kind"] == "backup"]
    job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), [place])
    [place_id] = [p.id for p in jobs_erasure.places_of(ctx.db, job)]
    unmounted = backup.rename(tmp_path / "volume-not-mounted")

    with pytest.raises(ErasureFailed, match=re.escape(str(backup.resolve()))):
        erasing.erase_place(ctx, place_id)

    receipt = jobs_erasure.erasure_receipt(ctx.db, job)
    assert receipt is not None and not receipt["verified"], receipt
    [row] = receipt["places"]
    assert row["state"] == "failed" and not row["check"]["passed"], row
    assert str(backup.resolve()) in row["error"] and f"erase --resume {job}" in row["error"]
    assert {"m-000", "m-001", "m-002"} <= ids_in(unmounted)  # still there: never to be called erased

    unmounted.rename(backup)  # mounted again, `erase --resume`
    assert jobs_erasure.retry_places(ctx.db, job) == [place_id]
    assert erasing.erase_place(ctx, place_id) == 3

    receipt = jobs_erasure.erasure_receipt(ctx.db, job)
    assert receipt is not None and receipt["verified"] and receipt["backup_rows_erased"] == 3, receipt
    assert ids_in(backup) == {"o-000", "o-001", "o-002"}


def test_a_plan_names_each_backup_it_cannot_read_as_not_searched_but_not_one_an_erasure_removed(
    ctx: WorkerContext, stores: dict[str, dict[str, Any]], tmp_path: Path, job_table_url: str
) -> None:
    spec = make_spec((stores["src"], stores["src"]))
    source = ctx.store(spec.source)
    source.upsert("mine", make_records(2, prefix="m", creator_id="a.1"))
    settle(spec.source)
    # Emptied by an erasure (every file wholly theirs): recorded as written, then removed by the erasure itself.
    emptied, reused = tmp_path / "emptied", tmp_path / "reused"
    for directory in (emptied, reused):
        results = export_namespaces(source, ["mine"], directory)
        record_export(job_table_url, (directory / MANIFEST_NAME).resolve(), results)
    places = [backup_place(emptied, ["mine"], 2), backup_place(reused, ["mine"], 2)]
    earlier = jobs_erasure.create_erasure(ctx.db, "erase-a.1", Subject("a.1").to_json(), places)
    place_ids = [p.id for p in jobs_erasure.places_of(ctx.db, earlier)]
    assert [erasing.erase_place(ctx, i) for i in place_ids] == [2, 2]
    assert not emptied.exists() and not reused.exists()
    # Run again, as after a kill between the removal and the place's check: it removed the backup, so it passes.
    jobs_erasure.fail_place(ctx.db, place_ids[0], "killed before its check was recorded")
    assert jobs_erasure.retry_places(ctx.db, earlier) == place_ids[:1]
    erasing.erase_place(ctx, place_ids[0])
    receipt = jobs_erasure.erasure_receipt(ctx.db, earlier)
    assert receipt is not None and receipt["verified"], receipt
    # A new backup in a directory an erasure removed before, on a volume not mounted here: not the one removed.
    record_export(job_table_url, (reused / MANIFEST_NAME).resolve(), export_namespaces(source, ["mine"], reused))
    reused.rename(tmp_path / "reused-elsewhere")
    # Recorded, on a volume not mounted here; and one named on the command line with a typo.
    archive = exported(stores, tmp_path, tmp_path / "archive", job_table_url)
    archive.rename(tmp_path / "volume-not-mounted")
    typo = tmp_path / "archiv"

    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store, None, [typo])

    assert [p for p in plan.places if p["kind"] == "backup"] == []
    assert set(plan.skipped) == {
        f"backup {d.resolve()}: backup directory {d.resolve()} is not there (is it on another host, or its volume "
        "not mounted?)"
        for d in (archive, typo, reused)
    }
    assert plan.spec("tester")["not_searched"] == plan.skipped  # and so in the receipt


def test_an_erasure_keeps_listing_a_file_the_backup_had_lost_so_import_still_refuses_it(
    ctx: WorkerContext, stores: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    spec = make_spec((stores["src"], stores["dst"]))
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    source.upsert("a", make_records(3, prefix="m", creator_id="a.1") + make_records(3, prefix="o", creator_id="a.10"))
    source.upsert("b", make_records(2, prefix="p", seed=2, creator_id="a.10"))
    source.upsert("c", make_records(2, prefix="q", seed=3, creator_id="a.1"))  # a namespace wholly theirs
    settle(spec.source)
    backup = tmp_path / "backup"
    export_namespaces(source, ["a", "b", "c"], backup)
    listed = json.loads((backup / MANIFEST_NAME).read_text())["namespaces"]
    (backup / "b.parquet").unlink()  # lost
    with pytest.raises(BackupError, match=r"b\.parquet does not exist"):
        import_path(target, backup)
    job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", Subject("a.1").to_json(), [backup_place(backup, ["c"], 5)])
    [place_id] = [p.id for p in jobs_erasure.places_of(ctx.db, job)]

    assert erasing.erase_place(ctx, place_id) == 5

    entries = json.loads((backup / MANIFEST_NAME).read_text())["namespaces"]
    assert [(e["namespace"], e["count"]) for e in entries] == [("a", 3), ("b", 2)]  # c removed, b still listed
    assert entries[1] == listed[1]
    with pytest.raises(BackupError, match=r"b\.parquet does not exist"):
        import_path(target, backup)
    assert target.namespaces() == {}
    [place] = jobs_erasure.places_of(ctx.db, job)
    assert place.verification is not None and place.verification["files_missing"] == ["b.parquet"]
    assert "b.parquet" in place.verification["note"]


def test_a_recorded_backup_with_a_damaged_manifest_stops_erase_with_one_line_and_changes_nothing(
    ctx: WorkerContext,
    stores: dict[str, dict[str, Any]],
    tmp_path: Path,
    job_table_url: str,
    redis_url: str,
) -> None:
    shared_namespace(ctx, make_spec((stores["src"], stores["src"])))
    backup = exported(stores, tmp_path, tmp_path / "archive", job_table_url)
    (backup / MANIFEST_NAME).write_text('{"format": "nsmigrate-export", "namespaces": [')  # cut short
    before = fingerprint(tmp_path)

    command = ["erase", "--creator", "a.1", "--yes", "--database-url", job_table_url, "--redis-url", redis_url]
    result = CliRunner().invoke(app, command)

    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert f"{(backup / MANIFEST_NAME).resolve()} is not an nsmigrate manifest" in output
    assert "restore the manifest.json nsmigrate wrote" in output
    assert fingerprint(tmp_path) == before
    db = jobs_database.Database(job_table_url)
    assert jobs_status.list_jobs(db) == []  # no erasure job was written
    db.dispose()
