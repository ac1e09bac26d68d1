"""Export to Parquet and import back, on real stores: the Pinecone SDK against the local data plane and pgvector on
real Postgres. A round trip must be exact (ids, float32 values bit for bit, metadata with its types); an import that
would mix data up must be refused before it writes anything; `nsmigrate run` with `backup.enabled` must have the
backup on disk before it enqueues any work; and the export of a pod, whose ids a sweep or a catalogue finds, must hold
every record the namespace counts, or fail and keep nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis as redis_lib
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.workers.stores.backup.exporting import export_namespace, export_namespaces
from nsmigrate.workers.stores.backup.importing import import_file, import_path, read_header
from nsmigrate.workers.stores.backup.parquet import MANIFEST_NAME, file_name_for, ids_fingerprint
from nsmigrate.workers.stores.base import Record, Store, iter_all_ids
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pgvector.store import PgvectorStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.settling import settle

DIM = 8
API_KEY = "sandbox-backup-key"
ODD_NAMESPACE = "Creator.A-1/twin:ünï code " + "x" * 80  # upper case, '/', ':', a space, non-ASCII, > 100 characters
NAMESPACES = {"": 1_234, ODD_NAMESPACE: 7, "plain": 3}  # the default one spans two fetches and two row groups


def quick(store: Store) -> GuardedStore:
    """The backup functions do not retry: like the CLI, the tests hand them a store that does."""
    return GuardedStore(store, attempts=3, max_wait_s=0.05)


def make_records(n: int, prefix: str, seed: int) -> list[Record]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, DIM)) * 10.0 ** rng.integers(-30, 30, size=(n, 1))  # wide exponents
    values[0, :3] = [1 / 3, -0.0, 3.4e38]  # not representable / negative zero / near float32 max
    values[:, -1] = rng.uniform(1, 2, size=n)  # Pinecone refuses a vector whose values are all below 1e-8
    return [
        Record(
            id=f"{prefix}-{i:05d}",
            values=[float(v) for v in values[i]],
            metadata={
                "n": i,
                "score": i + 0.5,
                "whole": 2.0,
                "flag": i % 2 == 0,
                "tags": ["a", f"t{i % 3}"],
                "text": f"chunk {i} — ünï",
                "big": 2**40 + i,
            },
        )
        for i in range(n)
    ]


def seed_store(store: Store, counts: dict[str, int] = NAMESPACES) -> dict[str, list[Record]]:
    """``store`` seeded with ``make_records``; returns them as the store keeps them."""
    data = {}
    for k, (ns, n) in enumerate(counts.items()):
        records = make_records(n, f"r{k}", seed=k)
        for start in range(0, n, 500):
            store.upsert(ns, records[start : start + 500])
        data[ns] = [kept(store, r) for r in records]
    settled(store)
    return data


def settled(store: Store) -> None:
    """Let a Pinecone index's reads show the test's own writes: what is exported or imported was written long
    before (``tests.settling``); pgvector's reads never lag."""
    inner = getattr(store, "inner", store)
    if isinstance(inner, PineconeStore):
        settle(inner.spec)


def kept(store: Store, record: Record) -> Record:
    """``record`` as ``store`` gives it back: Pinecone keeps every metadata number as a 64-bit float (2 → 2.0)."""
    if not isinstance(getattr(store, "inner", store), PineconeStore):
        return record
    metadata = {k: float(v) if type(v) is int else v for k, v in (record.metadata or {}).items()}
    return Record(record.id, record.values, metadata)


def typed(value: Any) -> Any:
    """A value with the type of every leaf next to it, so 2 != 2.0 and 1 != True."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return type(value).__name__, value


def bits(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def assert_exact(got: list[Record], want: list[Record]) -> None:
    got_by_id = {r.id: r for r in got}
    assert sorted(got_by_id) == sorted(r.id for r in want)
    for w in want:
        g = got_by_id[w.id]
        np.testing.assert_array_equal(bits(g.values), bits(w.values))  # float32, bit for bit
        assert typed(g.metadata) == typed(w.metadata)


def read_all(store: Store, namespace: str) -> list[Record]:
    ids = list(iter_all_ids(store, namespace))
    return [r for start in range(0, len(ids), 1000) for r in store.fetch(namespace, ids[start : start + 1000])]


def read_file_records(path: Path) -> list[Record]:
    table = pq.read_table(path)
    return [
        Record(i, v, json.loads(m))
        for i, v, m in zip(
            table.column("id").to_pylist(),
            table.column("values").to_pylist(),
            table.column("metadata").to_pylist(),
            strict=True,
        )
    ]


# --- the stores -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM), IndexSpec("wide", DIM * 2), IndexSpec("pod", DIM, kind="pod")]


@pytest.fixture
def pinecone(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, GuardedStore]]:
    monkeypatch.setenv("PINECONE_API_KEY", API_KEY)
    stores = {name: quick(PineconeStore(PineconeStoreSpec(host=sandbox.host(name)))) for name in ("src", "dst", "wide")}
    yield stores
    for store in stores.values():
        store.close()


@pytest.fixture
def pgvector(database_url: str) -> Iterator[dict[str, GuardedStore]]:
    stores = {
        "src": quick(
            PgvectorStore(PgvectorStoreSpec(layout="single_table", table="legacy", dimension=DIM), database_url)
        ),
        "dst": quick(PgvectorStore(PgvectorStoreSpec(layout="table_per_namespace", table="restored"), database_url)),
        "wide": quick(
            PgvectorStore(
                PgvectorStoreSpec(layout="table_per_namespace", table="wide", dimension=DIM * 2), database_url
            )
        ),
    }
    stores["wide"].upsert("w", [Record("w-1", [0.5] * DIM * 2)])  # so its dimension is on record
    yield stores
    for store in stores.values():
        store.close()


@pytest.fixture(params=["pinecone", "pgvector"])
def stores(request: pytest.FixtureRequest) -> dict[str, Store]:
    return request.getfixturevalue(request.param)


# --- round trips ----------------------------------------------------------------------------------------------------


def test_export_then_import_round_trips_exactly(stores: dict[str, Store], tmp_path: Path) -> None:
    src, dst = stores["src"], stores["dst"]
    data = seed_store(src)
    seen: list[tuple[str, int]] = []

    results = export_namespaces(src, list(NAMESPACES), tmp_path / "exp", progress=lambda ns, n: seen.append((ns, n)))

    assert [(r.namespace, r.count) for r in results] == list(NAMESPACES.items())
    manifest = json.loads((tmp_path / "exp" / MANIFEST_NAME).read_text())
    assert [e["namespace"] for e in manifest["namespaces"]] == list(NAMESPACES)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == sorted(
        [MANIFEST_NAME, "__default__.parquet", "plain.parquet", file_name_for(ODD_NAMESPACE)]
    )
    for r in results:
        header = read_header(r.path)
        assert (header.namespace, header.count, header.dimension, header.source) == (
            r.namespace,
            r.count,
            DIM,
            src.name,
        )
        assert header.fingerprint == r.fingerprint == ids_fingerprint(x.id for x in reversed(data[r.namespace]))
        assert_exact(read_file_records(r.path), data[r.namespace])  # the file itself is exact
    assert pq.ParquetFile(results[0].path).num_row_groups == 2  # streamed: ≤ 1,000 rows per row group
    assert seen[-1] == ("plain", 3) and ("", 1_000) in seen

    imported = import_path(dst, tmp_path / "exp")

    assert [(r.namespace, r.count) for r in imported] == list(NAMESPACES.items())
    settled(dst)  # its reads lag the import's writes
    assert dst.namespaces() == NAMESPACES
    for ns, records in data.items():
        assert_exact(read_all(dst, ns), records)


def test_import_into_another_namespace(stores: dict[str, Store], tmp_path: Path) -> None:
    data = seed_store(stores["src"], {"plain": 5})
    export_namespace(stores["src"], "plain", tmp_path / "plain.parquet")

    result = import_file(stores["dst"], tmp_path / "plain.parquet", namespace="restored")

    assert (result.namespace, result.source_namespace, result.count) == ("restored", "plain", 5)
    settled(stores["dst"])  # its reads lag the import's writes
    assert stores["dst"].namespaces() == {"restored": 5}
    assert_exact(read_all(stores["dst"], "restored"), data["plain"])


def test_exporting_an_empty_namespace_writes_an_empty_file_that_imports(
    pinecone: dict[str, GuardedStore], tmp_path: Path
) -> None:
    result = export_namespace(pinecone["src"], "nothing-here", tmp_path / "e.parquet")

    assert (result.count, read_header(result.path).count) == (0, 0)
    assert import_file(pinecone["dst"], result.path).count == 0


# --- refusals: nothing written --------------------------------------------------------------------------------------


def test_import_refuses_a_dimension_mismatch(stores: dict[str, Store], tmp_path: Path) -> None:
    seed_store(stores["src"], {"plain": 3})
    before = stores["wide"].namespaces()
    path = export_namespace(stores["src"], "plain", tmp_path / "plain.parquet").path

    with pytest.raises(BackupError) as info:
        import_file(stores["wide"], path)

    assert str(path) in str(info.value)
    assert f"dimension {DIM}" in str(info.value) and f"dimension {DIM * 2}" in str(info.value)
    settled(stores["wide"])
    assert stores["wide"].namespaces() == before


def test_import_refuses_a_non_empty_namespace_unless_overwrite(stores: dict[str, Store], tmp_path: Path) -> None:
    src, dst = stores["src"], stores["dst"]
    data = seed_store(src, {"a": 4, "b": 2})
    export_namespaces(src, ["a", "b"], tmp_path / "exp")
    kept = Record("r1-00000", [9.0] * DIM, {"old": True})  # same id as one in the file
    extra = Record("only-in-target", [1.0] * DIM, {})
    dst.upsert("b", [kept, extra])
    settled(dst)

    with pytest.raises(BackupError) as info:
        import_path(dst, tmp_path / "exp")

    assert "already holds 2 vectors" in str(info.value) and "overwrite" in str(info.value)
    settled(dst)
    assert dst.namespaces() == {"b": 2}  # not even the empty namespace "a" was written

    import_path(dst, tmp_path / "exp", overwrite=True)

    settled(dst)  # its reads lag the import's writes
    assert dst.namespaces() == {"a": 4, "b": 3}
    assert_exact(read_all(dst, "b"), [*data["b"], extra])  # the file's version replaced the stored one


def test_files_that_are_not_nsmigrate_exports_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["a"], "values": [[1.0]], "metadata": ["{}"]}), plain)
    text = tmp_path / "notes.parquet"
    text.write_text("id,values\n")
    (tmp_path / "empty-dir").mkdir()

    cases = {
        plain: "not an nsmigrate export",
        text: "not a Parquet file",
        tmp_path / "missing.parquet": "does not exist",
        tmp_path / "empty-dir": "no manifest.json",
    }
    for path, message in cases.items():
        with pytest.raises(BackupError) as info:
            import_path(object(), path)  # type: ignore[arg-type]  # refused before any store call
        assert message in str(info.value) and str(path) in str(info.value)


def test_a_damaged_export_is_refused(pinecone: dict[str, GuardedStore], tmp_path: Path) -> None:
    seed_store(pinecone["src"], {"plain": 3})
    path = export_namespace(pinecone["src"], "plain", tmp_path / "plain.parquet").path
    table = pq.read_table(path)
    edited = table.set_column(0, "id", pa.array(["x", "y", "z"]))  # same count, different ids
    pq.write_table(edited.replace_schema_metadata(pq.read_metadata(path).metadata), path)

    with pytest.raises(BackupError, match="fingerprint"):
        import_file(pinecone["dst"], path)

    assert pinecone["dst"].namespaces() == {}


def test_export_refuses_a_directory_that_is_not_empty(pinecone: dict[str, GuardedStore], tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "something").write_text("x")

    with pytest.raises(BackupError, match="not an empty directory"):
        export_namespaces(pinecone["src"], ["plain"], tmp_path / "exp")


# --- the CLI --------------------------------------------------------------------------------------------------------


def write_spec(tmp_path: Path, sandbox: PineconeSandbox, target: str = "dst", **extra: Any) -> Path:
    spec = {
        "name": "backup-job",
        "source": {"kind": "pinecone", "host": sandbox.host("src")},
        "target": {"kind": "pinecone", "host": sandbox.host(target)},
        **extra,
    }
    path = tmp_path / f"spec-{target}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def job_table(job_table_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`import` asks the erasure ledger of the job table before it writes: one it can reach."""
    monkeypatch.setenv("NSMIGRATE_DATABASE_URL", job_table_url)
    return job_table_url


@pytest.mark.usefixtures("job_table")
def test_cli_export_then_import(pinecone: dict[str, GuardedStore], sandbox: PineconeSandbox, tmp_path: Path) -> None:
    data = seed_store(pinecone["src"])
    spec = write_spec(tmp_path, sandbox, namespaces={"exclude": ["plain"]})
    runner = CliRunner()

    exported = runner.invoke(app, ["export", str(spec), "--out", str(tmp_path / "exp")])

    assert exported.exit_code == 0, exported.output
    assert "manifest" in exported.output
    assert {e["namespace"] for e in json.loads((tmp_path / "exp" / MANIFEST_NAME).read_text())["namespaces"]} == {
        "",
        ODD_NAMESPACE,
    }  # the spec's selection

    imported = runner.invoke(app, ["import", str(tmp_path / "exp"), str(spec)])

    assert imported.exit_code == 0, imported.output
    settled(pinecone["dst"])  # its reads lag the import's writes
    assert pinecone["dst"].namespaces() == {"": 1_234, ODD_NAMESPACE: 7}
    assert_exact(read_all(pinecone["dst"], ODD_NAMESPACE), data[ODD_NAMESPACE])

    again = runner.invoke(app, ["import", str(tmp_path / "exp"), str(spec)])

    assert again.exit_code == 2
    assert "already holds" in again.output and "--overwrite" in again.output

    one = runner.invoke(app, ["import", str(tmp_path / "exp"), str(spec), "-n", "__default__", "--into", "copy"])

    assert one.exit_code == 0, one.output
    settled(pinecone["dst"])
    assert pinecone["dst"].count("copy") == 1_234


@pytest.mark.usefixtures("job_table")
def test_cli_export_right_after_a_write_holds_it(
    pinecone: dict[str, GuardedStore], sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    """The index's listing lags writes: a record written a moment before the export is not listed yet. The export
    lists each namespace once its reads show every write before it (an LSN probe), so the file holds the record."""
    seed_store(pinecone["src"], {"plain": 3})
    sandbox.set_faults("src", Faults(freshness_lag_s=3.0))
    [late] = make_records(1, "late", seed=9)
    pinecone["src"].upsert("plain", [late])

    result = CliRunner().invoke(
        app, ["export", str(write_spec(tmp_path, sandbox)), "-n", "plain", "--out", str(tmp_path / "exp")]
    )

    assert result.exit_code == 0, result.output
    [entry] = json.loads((tmp_path / "exp" / MANIFEST_NAME).read_text())["namespaces"]
    assert entry["count"] == 4
    assert late.id in pq.read_table(tmp_path / "exp" / entry["file"]).column("id").to_pylist()


@pytest.mark.usefixtures("job_table")
def test_cli_export_of_named_namespaces_and_restore_to_source(
    pinecone: dict[str, GuardedStore], sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    data = seed_store(pinecone["src"], {"plain": 3, "other": 2})
    spec = write_spec(tmp_path, sandbox)
    runner = CliRunner()

    unknown = runner.invoke(app, ["export", str(spec), "-n", "nope", "--out", str(tmp_path / "x")])
    assert unknown.exit_code == 2 and "nope" in unknown.output and not (tmp_path / "x").exists()

    result = runner.invoke(app, ["export", str(spec), "-n", "plain", "--out", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    pinecone["src"].delete_namespace("plain")  # lost …
    settled(pinecone["src"])

    restored = runner.invoke(app, ["import", str(tmp_path / "exp" / "plain.parquet"), str(spec), "--to-source"])

    assert restored.exit_code == 0, restored.output  # … and restored
    settled(pinecone["src"])
    assert_exact(read_all(pinecone["src"], "plain"), data["plain"])
    assert pinecone["dst"].namespaces() == {}


@pytest.mark.usefixtures("job_table")
def test_cli_import_overwrite_shows_what_it_replaces_and_needs_yes(
    pinecone: dict[str, GuardedStore], sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    data = seed_store(pinecone["src"], {"a": 4, "b": 2})
    spec = write_spec(tmp_path, sandbox)
    runner = CliRunner()
    exported = runner.invoke(app, ["export", str(spec), "-n", "a", "-n", "b", "--out", str(tmp_path / "exp")])
    assert exported.exit_code == 0, exported.output
    old = Record("r1-00000", [9.0] * DIM, {"old": True})  # an id of b's file
    other = Record("only-in-target", [1.0] * DIM, {})
    pinecone["dst"].upsert("b", [old, other])
    pinecone["dst"].upsert("c", [other])
    settled(pinecone["dst"])
    overwrite = ["import", str(tmp_path / "exp"), str(spec), "--overwrite"]

    refused = runner.invoke(app, overwrite)  # no terminal, no --yes

    assert refused.exit_code == 2, refused.output
    assert "b: 1 of its 2 stored vectors would be replaced by b.parquet (2 vectors)" in refused.stdout
    assert "a:" not in refused.stdout  # an empty namespace replaces nothing
    assert "Traceback" not in refused.output
    assert refused.stderr.startswith("error: import --overwrite replaces 1 stored vectors in 1 namespaces of ")
    assert "pass --yes" in refused.stderr and "nothing was written" in refused.stderr
    settled(pinecone["dst"])
    assert pinecone["dst"].namespaces() == {"b": 2, "c": 1}  # not even the empty namespace "a" was written
    assert_exact(read_all(pinecone["dst"], "b"), [old, other])

    confirmed = runner.invoke(app, [*overwrite, "--yes"])

    assert confirmed.exit_code == 0, confirmed.output
    assert "b: 1 of its 2 stored vectors would be replaced" in confirmed.stdout
    settled(pinecone["dst"])  # its reads lag the import's writes
    assert pinecone["dst"].namespaces() == {"a": 4, "b": 3, "c": 1}
    assert_exact(read_all(pinecone["dst"], "b"), [*data["b"], other])

    disjoint = runner.invoke(app, [*overwrite, "-n", "a", "--into", "c"])  # replaces nothing: no question

    assert disjoint.exit_code == 0, disjoint.output
    assert "c: 0 of its 1 stored vectors would be replaced by a.parquet (4 vectors)" in disjoint.stdout
    settled(pinecone["dst"])  # its reads lag the import's writes
    assert pinecone["dst"].namespaces() == {"a": 4, "b": 3, "c": 5}


def test_cli_import_errors_exit_2_and_write_nothing(
    pinecone: dict[str, GuardedStore], sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    seed_store(pinecone["src"], {"plain": 3})
    runner = CliRunner()
    assert (
        runner.invoke(app, ["export", str(write_spec(tmp_path, sandbox)), "--out", str(tmp_path / "exp")]).exit_code
        == 0
    )
    wide_spec = write_spec(tmp_path, sandbox, target="wide")
    not_export = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), not_export)

    cases = {
        str(tmp_path / "exp"): f"dimension {DIM * 2}",
        str(tmp_path / "missing"): "does not exist",
        str(not_export): "not an nsmigrate export",
    }
    for path, message in cases.items():
        result = runner.invoke(app, ["import", path, str(wide_spec)])
        assert result.exit_code == 2, result.output
        assert message in result.output and path in result.output
    assert pinecone["wide"].namespaces() == {}


# --- the backup step of `run` ---------------------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, list[Path]]]:
    """Every task `run` sends, with the backup manifests that existed at that moment (the real send still happens)."""
    calls: list[tuple[str, list[Path]]] = []
    real_send = Dispatcher.send

    def send(self: Dispatcher, task: Any, **kwargs: Any) -> None:
        calls.append((task.value, sorted(tmp_path.rglob(MANIFEST_NAME))))
        real_send(self, task, **kwargs)

    monkeypatch.setattr(Dispatcher, "send", send)
    return calls


def test_run_writes_the_backup_before_anything_is_enqueued(
    pinecone: dict[str, GuardedStore],
    sandbox: PineconeSandbox,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    sent: list[tuple[str, list[Path]]],
) -> None:
    data = seed_store(pinecone["src"], {"": 20, "plain": 3})
    backups = tmp_path / "backups"
    spec = write_spec(tmp_path, sandbox, backup={"enabled": True, "directory": str(backups)})

    result = CliRunner().invoke(app, ["run", str(spec), "--database-url", database_url, "--redis-url", redis_url])

    assert result.exit_code == 0, result.output
    (directory,) = backups.iterdir()
    assert re.fullmatch(r"backup-job-\d{8}T\d{6}Z", directory.name)
    manifest = directory / MANIFEST_NAME
    # Both namespaces are small (one page, one batch): a task each lists and copies it, sent after the backup.
    assert sent == [("nsmigrate.copy_small_namespaces", [manifest])] * 2
    for ns, records in data.items():
        assert_exact(read_file_records(directory / file_name_for(ns)), records)
    db = jobs_database.Database(database_url)
    job_id = int(result.output.strip().splitlines()[-1])
    (event,) = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "backup_written"]
    assert event["detail"] == {"manifest": str(manifest.resolve()), "namespaces": 2, "vectors": 23}
    broker = redis_lib.Redis.from_url(redis_url)
    assert (broker.llen("copy"), broker.llen("list")) == (2, 0)  # the tasks really are queued, and nothing else
    assert str(directory) in result.output.replace("\n", "")
    db.dispose()


def test_a_backup_whose_job_never_started_is_recorded_for_the_erasures(
    pinecone: dict[str, GuardedStore],
    sandbox: PineconeSandbox,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    sent: list[tuple[str, list[Path]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backup is written, then the job's start fails (here its target index cannot be made): the job's events
    are never written, but the backup, a full copy of the source, is recorded, so `nsmigrate erase` searches it."""
    from nsmigrate.cli import run as run_command
    from nsmigrate.orchestrator.errors import StoreError
    from nsmigrate.orchestrator.jobs.erasure import known_runs

    seed_store(pinecone["src"], {"plain": 3})
    backups = tmp_path / "backups"
    spec = write_spec(tmp_path, sandbox, backup={"enabled": True, "directory": str(backups)})

    def no_index(_prepared: Any) -> None:
        raise StoreError("the control plane refused the index")

    monkeypatch.setattr(run_command, "make_target_index", no_index)
    result = CliRunner().invoke(app, ["run", str(spec), "--database-url", database_url, "--redis-url", redis_url])

    assert result.exit_code != 0 and sent == [], result.output
    (directory,) = backups.iterdir()
    db = jobs_database.Database(database_url)
    assert jobs_status.list_jobs(db) == []
    assert known_runs(db)[2] == [str((directory / MANIFEST_NAME).resolve())]
    db.dispose()


def test_a_failed_backup_starts_nothing(
    pinecone: dict[str, GuardedStore],
    sandbox: PineconeSandbox,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    sent: list[tuple[str, list[Path]]],
) -> None:
    seed_store(pinecone["src"], {"plain": 3})
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    spec = write_spec(tmp_path, sandbox, backup={"enabled": True, "directory": str(blocker)})

    result = CliRunner().invoke(app, ["run", str(spec), "--database-url", database_url, "--redis-url", redis_url])

    assert result.exit_code == 1, result.output
    assert "backup failed" in result.output and "nothing was enqueued" in result.output
    assert sent == []
    db = jobs_database.Database(database_url)
    assert jobs_status.list_jobs(db) == []
    db.dispose()


def test_erasing_every_row_of_a_backup_removes_only_what_nsmigrate_wrote_there(
    stores: dict[str, Store], tmp_path: Path
) -> None:
    """An erasure that leaves a backup with no file removes its manifest and files, and the directory only when
    nothing else is in it: an operator's notes, or an export made inside it since, are not the erasure's to delete."""
    from nsmigrate.orchestrator.tenancy.erasure import Subject
    from nsmigrate.workers.stores.backup.erasure import erase_rows

    src = stores["src"]
    src.upsert("mine", [Record(f"m-{i}", [0.1 * (i + 1)] * DIM, {"creator_id": "a.1"}) for i in range(3)])
    settled(src)
    directory = tmp_path / "exp"
    export_namespaces(src, ["mine"], directory)
    (directory / "NOTES.txt").write_text("restore test on Friday\n")
    export_namespaces(src, ["mine"], directory / "later")  # another backup, made inside this one's directory

    assert erase_rows(directory, Subject("a.1"), lambda ns: ns == "mine") == 3  # a namespace wholly theirs

    assert sorted(p.name for p in directory.iterdir()) == ["NOTES.txt", "later"]
    assert (directory / "NOTES.txt").read_text() == "restore test on Friday\n"
    assert (directory / "later" / MANIFEST_NAME).is_file()


def test_import_refuses_ids_written_just_before_that_a_lagging_count_does_not_show(
    pinecone: dict[str, GuardedStore], sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    """Pinecone's counts lag its writes: a namespace written a moment ago still counts 0. Trusted, that count let an
    import without --overwrite put the file's older version over the new one."""
    src, dst = pinecone["src"], pinecone["dst"]
    seed_store(src, {"a": 3})
    export_namespaces(src, ["a"], tmp_path / "exp")
    sandbox.set_faults("dst", Faults(freshness_lag_s=60))
    newer = Record("r0-00000", [7.0] * DIM, {"newer": True})  # an id of the file, written since
    dst.upsert("a", [newer])
    assert dst.count("a") == 0  # the count lags

    with pytest.raises(BackupError, match="already holds 1 of the file's ids"):
        import_path(dst, tmp_path / "exp")

    [stored] = dst.fetch("a", [newer.id])
    assert stored.metadata == {"newer": True}  # not replaced


# --- a pod source: its ids found by a sweep or a catalogue, its export held against its count ------------------------

POD_SIZES = {"few": 7, "many": 120}
#: Two queries of 50 ids can never find the 120 of `many`; one finds the 7 of `few`.
SHORT_SWEEP = {"mode": "sweep", "top_k": 50, "max_queries": 2}
FULL_SWEEP = {"mode": "sweep", "top_k": 50, "max_queries": 40}


def load_pod(sandbox: PineconeSandbox, sizes: dict[str, int] = POD_SIZES) -> dict[str, list[str]]:
    """The pod index seeded directly (written long before the export: its reads and counts show it)."""
    rng = np.random.default_rng(7)
    loaded = {}
    for ns, n in sizes.items():
        ids = [f"{ns}#{i:03d}" for i in range(n)]
        sandbox.load("pod", ns, [(i, rng.normal(size=DIM).tolist(), {"i": k}) for k, i in enumerate(ids)])
        loaded[ns] = ids
    return loaded


def pod_source(sandbox: PineconeSandbox, enumerate_: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "pinecone", "index": "pod", "control_host": sandbox.control_host, "enumerate": enumerate_}


def write_catalogue(path: Path, ids: dict[str, list[str]]) -> Path:
    path.write_text("namespace,id\n" + "".join(f"{ns},{i}\n" for ns, values in ids.items() for i in values))
    return path


def write_pod_spec(tmp_path: Path, sandbox: PineconeSandbox, enumerate_: dict[str, Any], **extra: Any) -> Path:
    spec = {
        "name": "backup-job",
        "source": pod_source(sandbox, enumerate_),
        "target": {"kind": "pinecone", "host": sandbox.host("dst")},
        **extra,
    }
    path = tmp_path / "spec-pod.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def pod_store(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Opens the pod index as a source whose ids ``enumerate`` finds (``pod_source``); closed after the test."""
    monkeypatch.setenv("PINECONE_API_KEY", API_KEY)
    opened: list[GuardedStore] = []

    def open_pod(enumerate_: dict[str, Any]) -> GuardedStore:
        opened.append(quick(PineconeStore(PineconeStoreSpec.model_validate(pod_source(sandbox, enumerate_)))))
        return opened[-1]

    yield open_pod
    for store in opened:
        store.close()


def file_ids(path: Path) -> list[str]:
    return sorted(pq.read_table(path).column("id").to_pylist())


def test_an_export_of_a_pod_namespace_a_sweep_cannot_cover_fails_and_keeps_nothing(
    pod_store: Any, sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    """A sweep that could not reach a namespace's count hands out what it found: the export holds that against the
    count and fails, naming the namespace, both numbers and what to change; the file of the namespace exported
    before it goes too, and no manifest says the backup is complete. A sweep that covers it exports every record."""
    loaded = load_pod(sandbox)

    with pytest.raises(BackupError) as info:
        export_namespaces(pod_store(SHORT_SWEEP), ["few", "many"], tmp_path / "exp")

    message = str(info.value)
    found = re.search(
        r"namespace 'many' of .*: the sweep found (\d+) records, but the namespace's count, read after "
        r"the export, is 120;",
        message,
    )
    assert found is not None, message
    assert int(found.group(1)) <= 100  # 2 queries of 50
    assert f"the other {120 - int(found.group(1))} would not be complete" in message
    assert "enumerate.max_queries" in message and "catalogue" in message  # what to do
    assert not (tmp_path / "exp").exists()  # `few`'s file removed, and the directory the export made

    results = export_namespaces(pod_store(FULL_SWEEP), ["few", "many"], tmp_path / "exp")

    assert [(r.namespace, r.count) for r in results] == [("few", 7), ("many", 120)]
    manifest = json.loads((tmp_path / "exp" / MANIFEST_NAME).read_text())
    assert [(e["namespace"], e["count"]) for e in manifest["namespaces"]] == [("few", 7), ("many", 120)]
    for r in results:
        assert file_ids(r.path) == sorted(loaded[r.namespace])


def test_an_export_by_a_catalogue_that_misses_ids_fails_and_leaves_no_file(
    pod_store: Any, sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    """A stale catalogue (the 5 ids last written to the namespace missing) fails the export of that namespace: its
    count says more; not even the partial file stays. The catalogue brought up to date exports it whole."""
    loaded = load_pod(sandbox)
    stale = write_catalogue(tmp_path / "stale.csv", {"many": loaded["many"][:-5]})

    with pytest.raises(BackupError) as info:
        export_namespace(
            pod_store({"mode": "catalogue", "catalogue": {"source": "file", "path": str(stale)}}),
            "many",
            tmp_path / "many.parquet",
        )

    message = str(info.value)
    assert "namespace 'many' of " in message and "the catalogue found 115 records" in message, message
    assert "count, read after the export, is 120;" in message
    assert "the other 5 would not be complete" in message and "up to date" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stale.csv"]

    full = write_catalogue(tmp_path / "full.csv", loaded)
    result = export_namespace(
        pod_store({"mode": "catalogue", "catalogue": {"source": "file", "path": str(full)}}),
        "many",
        tmp_path / "many.parquet",
    )

    assert result.count == 120 and file_ids(result.path) == sorted(loaded["many"])


def test_an_export_of_a_pod_namespace_whose_count_never_settles_says_it_is_being_written(
    pod_store: Any, sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    """A count still moving is an application writing the namespace: no sweep or catalogue would catch up, so the
    export says to export it once the application stopped, not to widen the sweep."""
    load_pod(sandbox, {"busy": 20})
    sandbox.set_faults("pod", Faults(stats_flicker=True))  # a count that never settles

    with pytest.raises(BackupError) as info:
        export_namespaces(pod_store(FULL_SWEEP), ["busy"], tmp_path / "exp", count_timeout_s=1)

    assert "did not settle within 1 s" in info.value.message, info.value.message
    assert info.value.hint is not None and "is being written" in info.value.hint, info.value.hint
    assert "max_queries" not in info.value.hint
    assert not (tmp_path / "exp").exists()


def test_a_count_that_lags_deletes_is_awaited_and_only_a_namespace_the_sweep_missed_fails(
    pod_store: Any, sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    """Pinecone's counts and queries lag its writes: records deleted a moment before the export are still counted
    and still found by the sweep, but not fetched. That namespace's count is polled until it shows them gone, so its
    export stands; the namespace after it, which the sweep could not cover, is the one that fails the export."""
    load_pod(sandbox, {"recent": 30, "many": 120})
    sandbox.set_faults("pod", Faults(freshness_lag_s=2.0))
    store = pod_store(SHORT_SWEEP)
    store.delete("recent", ["recent#000", "recent#001", "recent#002"])
    assert store.count("recent") == 30  # the count does not show the delete yet

    with pytest.raises(BackupError) as info:
        export_namespaces(store, ["recent", "many"], tmp_path / "exp")

    assert "namespace 'many' of " in str(info.value) and "is 120" in str(info.value), str(info.value)
    assert store.count("recent") == 27
    assert not (tmp_path / "exp").exists()


def test_cli_export_of_a_pod_a_sweep_cannot_cover_fails_and_writes_nothing(
    sandbox: PineconeSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", API_KEY)
    load_pod(sandbox)
    spec = write_pod_spec(tmp_path, sandbox, SHORT_SWEEP)

    result = CliRunner().invoke(app, ["export", str(spec), "--out", str(tmp_path / "exp")])

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: namespace 'many' of "), result.stderr
    assert "count, read after the export, is 120" in result.stderr and "max_queries" in result.stderr
    assert "Traceback" not in result.output and MANIFEST_NAME not in result.stdout
    assert not (tmp_path / "exp").exists()


def test_run_with_a_backup_of_a_pod_a_sweep_cannot_cover_starts_nothing(
    sandbox: PineconeSandbox,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    sent: list[tuple[str, list[Path]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run` starts a job only on a complete backup: a pod namespace its sweep cannot cover fails the backup, so
    no job is written and nothing is enqueued."""
    monkeypatch.setenv("PINECONE_API_KEY", API_KEY)
    load_pod(sandbox)
    backups = tmp_path / "backups"
    spec = write_pod_spec(tmp_path, sandbox, SHORT_SWEEP, backup={"enabled": True, "directory": str(backups)})

    result = CliRunner().invoke(app, ["run", str(spec), "--database-url", database_url, "--redis-url", redis_url])

    assert result.exit_code == 1, result.output
    assert "the pre-migration backup failed, so the job was not started (nothing was enqueued)" in result.stderr
    assert "namespace 'many' of " in result.stderr and "is 120" in result.stderr, result.stderr
    assert sent == []
    assert not any(backups.rglob("*"))  # no file, no manifest, no backup directory
    db = jobs_database.Database(database_url)
    assert jobs_status.list_jobs(db) == []
    db.dispose()
