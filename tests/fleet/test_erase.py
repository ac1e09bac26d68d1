"""`nsmigrate erase`: a creator's (or twin's) data leaves every place the job table knows — target namespaces, the
old source namespaces, shared namespaces, pgvector tables, backups — and nothing else does; checked here
independently of the receipt, with real workers, the real SDK against the local data plane, real Postgres and the
real `supabase` client (the jobs' mapping and sources table) against the PostgREST stand-in."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import redis as redis_lib
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.workers.steps.erasing import plan_erasure
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.stores.backup.importing import read_manifest
from nsmigrate.workers.stores.base import iter_all_ids
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.postgrest import PostgrestStandIn, create_tenancy_tables, load_tenancy
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.chaos import fault_landed, start_standby, take_over
from tests.fleet_jobs import use_stack_env
from tests.polling import wait_until

TWINS = {"t1": "a.1", "t2": "a.1", "t10": "a.10", "t11": "a.10"}
A1_TWINS = {"t1", "t2"}


def _vec(i: int) -> list[float]:
    return [0.1, 0.2, 0.3, float(i + 1)]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", dimension=4), IndexSpec("dst", dimension=4), IndexSpec("idx", dimension=4)]


def load_source(sandbox: PineconeSandbox) -> None:
    """UUID-style twin namespaces of both creators, and a default namespace that takes every route."""
    for twin in TWINS:
        sandbox.load("src", twin, [(f"{twin}-{i}", _vec(i), {"text": f"{twin} {i}"}) for i in range(3)])
    default = [
        ("d-t1", {"twin_id": "t1"}),
        ("d-t10", {"twin_id": "t10"}),
        ("d-c1", {"creator_id": "a.1"}),  # creator-wide
        ("d-c10", {"creator_id": "a.10"}),
        ("d-s2", {"source_id": "src_t2"}),  # the Supabase sources table → t2 → a.1
        ("d-s11", {"source_id": "src_t11"}),  # → t11 → a.10
        ("d-none", {"text": "nobody's"}),  # review
    ]
    sandbox.load("src", "", [(vid, _vec(i), meta) for i, (vid, meta) in enumerate(default)])


SUPABASE = {"url_env": "NSM_TEST_SUPABASE_URL", "key_env": "NSM_TEST_SUPABASE_KEY"}


def write_specs(stack: Stack, tmp_path: Path) -> list[Path]:
    # The twin → creator mapping and the sources table both come from Supabase (the real client, the stand-in).
    routing = {
        "mode": "creator",
        "creators": {"source": "supabase", **SUPABASE},
        "sources": {"source": "supabase", "key_field": "source_id", **SUPABASE},
    }
    src = {"kind": "pinecone", "host": stack.pinecone.host("src")}
    to_pinecone = {
        "name": "to-dst",
        "source": src,
        "target": {"kind": "pinecone", "host": stack.pinecone.host("dst")},
        "routing": routing,
        "backup": {"enabled": True, "directory": str(tmp_path / "backups")},
    }
    to_pgvector = {
        "name": "to-pg",
        "source": src,
        "target": {"kind": "pgvector", "layout": "single_table", "table": "erase_test", "dimension": 4},
        "routing": routing,
    }
    paths = []
    for spec in (to_pinecone, to_pgvector):
        path = tmp_path / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        paths.append(path)
    return paths


def stores(stack: Stack) -> dict[str, Any]:
    return {
        "src": open_retrying_store(PineconeStoreSpec(host=stack.pinecone.host("src"))),
        "dst": open_retrying_store(PineconeStoreSpec(host=stack.pinecone.host("dst"))),
        "pg": open_retrying_store(PgvectorStoreSpec(layout="single_table", table="erase_test", dimension=4)),
    }


def everything(stack: Stack) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every record of every store: (store, namespace, id) → metadata, read independently of nsmigrate's erasure."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, store in stores(stack).items():
        for ns in store.namespaces():
            ids = list(iter_all_ids(store, ns))
            for start in range(0, len(ids), 100):
                for r in store.fetch(ns, ids[start : start + 100]):
                    out[(name, ns, r.id)] = dict(r.metadata or {})
        close = getattr(store, "close", None)
        if close:
            close()
    return out


def backup_rows(tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for file in (tmp_path / "backups").rglob("*.parquet"):
        ns = pq.read_metadata(file).metadata[b"nsmigrate.namespace"].decode()
        for row in pq.read_table(file).to_pylist():
            out[(ns, row["id"])] = json.loads(row["metadata"])
    return out


#: Whose each default-namespace vector is (creator, twin), from the test's own data, not from nsmigrate.
DEFAULT_OWNERS: dict[str, tuple[str | None, str | None]] = {
    "d-t1": ("a.1", "t1"),
    "d-t10": ("a.10", "t10"),
    "d-c1": ("a.1", None),
    "d-c10": ("a.10", None),
    "d-s2": ("a.1", "t2"),
    "d-s11": ("a.10", "t11"),
    "d-none": (None, None),
}


def is_a1(key: tuple[str, ...], _meta: Any = None, twin: str | None = None) -> bool:
    """Whether the record with this key (…, id) is creator a.1's (or twin ``twin``'s): by its id alone."""
    vid = key[-1]
    prefix = vid.split("-")[0]
    creator, owner_twin = (TWINS[prefix], prefix) if prefix in TWINS else DEFAULT_OWNERS[vid]
    return creator == "a.1" and (twin is None or owner_twin == twin)


@pytest.fixture
def migrated(
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_standin: Callable[..., PostgrestStandIn],
) -> list[Path]:
    """Both copy jobs ran and verified, the backup written; workers for every queue are running."""
    monkeypatch.chdir(tmp_path)
    use_stack_env(stack, monkeypatch)
    create_tenancy_tables(stack.database_url)
    load_tenancy(stack.database_url, twins=TWINS)  # twins, creators and one source row src_{twin} per twin
    monkeypatch.setenv(SUPABASE["url_env"], start_standin(stack.database_url, "service-key").url)
    monkeypatch.setenv(SUPABASE["key_env"], "service-key")
    load_source(stack.pinecone)
    stack.start_worker("list,copy,verify,cleanup", 4, pool="threads")
    specs = write_specs(stack, tmp_path)
    for spec in specs:
        result = CliRunner().invoke(app, ["run", str(spec), "--wait"])
        assert result.exit_code == 0, result.output
    return specs


def test_erasing_a_creator_leaves_no_copy_and_touches_nothing_else(
    stack: Stack, migrated: list[Path], tmp_path: Path
) -> None:
    before = everything(stack)
    backups_before = backup_rows(tmp_path)
    assert any(is_a1(k, m) for k, m in before.items()) and any(is_a1(k, m) for k, m in backups_before.items())
    assert ("dst", "review", "d-none") in before  # resolved nowhere: review, not public

    result = CliRunner().invoke(app, ["erase", "--creator", "a.1", "--yes", "--receipt", str(tmp_path / "r.json")])

    assert result.exit_code == 0, result.output
    after = everything(stack)
    # Nothing of a.1 anywhere: no vector, no pgvector row, no namespace named for them, no old source namespace.
    assert not [k for k, m in after.items() if is_a1(k, m)]
    assert not [k for k in after if k[1].startswith("creator_a.1_") or k[1] == "creator_a.1" or k[1] in A1_TWINS]
    assert not [k for k, m in backup_rows(tmp_path).items() if is_a1(k, m)]
    # Everything else exactly as it was (a.10 and the unowned vector included).
    assert after == {k: m for k, m in before.items() if not is_a1(k, m)}
    assert backup_rows(tmp_path) == {k: m for k, m in backups_before.items() if not is_a1(k, m)}
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["verified"] and receipt["creator_id"] == "a.1"
    assert receipt["vectors_erased"] == sum(1 for k, m in before.items() if is_a1(k, m))
    assert receipt["backup_rows_erased"] == sum(1 for k, m in backups_before.items() if is_a1(k, m))
    # The backup that is left is still a complete export (its manifest agrees with its files).
    for manifest in (tmp_path / "backups").rglob("manifest.json"):
        assert {h.namespace for h in read_manifest(manifest.parent)} == {"", "t10", "t11"}
    db = jobs_database.Database(stack.database_url)
    erase_jobs = [j for j in jobs_status.list_jobs(db) if j["kind"] == "erase"]
    assert len(erase_jobs) == 1 and erase_jobs[0]["state"] == "finished"
    actions = [e["action"] for e in jobs_status.events_of(db, erase_jobs[0]["job_id"])]
    assert "erasure_receipt" in actions and actions.count("place_erased") == len(receipt["places"])
    shown = CliRunner().invoke(app, ["status", str(erase_jobs[0]["job_id"])])
    assert shown.exit_code == 0 and "creator_a.1_twin_t1" in shown.output and "verified" in shown.output

    # Re-runnable: a second erasure finds nothing left and says so with its own receipt.
    again = CliRunner().invoke(app, ["erase", "a.1", "--yes", "--receipt", str(tmp_path / "r2.json")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "r2.json").read_text())["vectors_erased"] == 0
    db.dispose()


def test_erasing_one_twin_keeps_the_creators_other_data(stack: Stack, migrated: list[Path], tmp_path: Path) -> None:
    before = everything(stack)

    result = CliRunner().invoke(app, ["erase", "--creator", "a.1", "--twin", "t1", "--yes"])

    assert result.exit_code == 0, result.output
    after = everything(stack)
    assert after == {k: m for k, m in before.items() if not is_a1(k, m, twin="t1")}
    assert any(k[1] == "creator_a.1_twin_t2" for k in after) and any(k[1] == "creator_a.1" for k in after)
    assert not [k for k, m in backup_rows(tmp_path).items() if is_a1(k, m, twin="t1")]


def send_erasure_of_a1(stack: Stack) -> tuple[jobs_database.Database, Dispatcher, int]:
    """Creator a.1's erasure planned, recorded and every place sent to the cleanup queue, as `nsmigrate erase` does
    but without waiting: (the job table, the dispatcher, the job's id)."""
    settings = Settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    plan = plan_erasure(db, "a.1", None, open_retrying_store)
    job_id = jobs_erasure.create_erasure(db, "erase-a.1", plan.spec("test"), plan.places)
    dispatcher = Dispatcher(settings)
    for place in jobs_erasure.places_of(db, job_id):
        dispatcher.erase_place(place.id, job_id=job_id, place=place.kind)
    return db, dispatcher, job_id


def test_an_erasure_survives_a_worker_killed_mid_way(stack: Stack, migrated: list[Path], tmp_path: Path) -> None:
    before = everything(stack)
    stack.stop_processes()
    for index in ("src", "dst"):
        stack.pinecone.set_faults(index, Faults(latency_ms=150))  # slow enough to be caught half-way
    # The killed worker's task comes back within seconds (the visibility timeout).
    worker = stack.start_worker("cleanup", 1, name="doomed", NSMIGRATE_VISIBILITY_TIMEOUT_S="5")
    # its successor boots meanwhile, on a queue an erasure does not use, and takes the erasure's at the kill
    after = start_standby(stack, "after", 2, pool="prefork", consuming="verify", NSMIGRATE_VISIBILITY_TIMEOUT_S="5")
    db, dispatcher, job_id = send_erasure_of_a1(stack)

    wait_until(
        lambda: [p.state for p in jobs_erasure.places_of(db, job_id)],
        what="one place erased and others not yet",
        timeout_s=120,
        done=lambda states: "verified" in states and any(s != "verified" for s in states),
    )
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    fault_landed(stack)
    take_over(stack, after, "cleanup")

    def explain() -> object:  # within the test's own timeout (180 s), so a stall says where it stood
        places = {p.id: (p.kind, p.state, p.attempts, p.last_error) for p in jobs_erasure.places_of(db, job_id)}
        return {"places": places, "successor's log": (stack.workdir / "worker-after.log").read_text()[-3000:]}

    receipt = wait_until(
        lambda: jobs_erasure.erasure_receipt(db, job_id),
        what="the erasure's receipt",
        timeout_s=120,
        interval_s=0.5,
        explain=explain,
    )
    assert receipt is not None and receipt["verified"], receipt
    assert everything(stack) == {k: m for k, m in before.items() if not is_a1(k, m)}
    dispatcher.close()
    db.dispose()


def test_an_erasure_place_whose_message_is_lost_is_sent_again_without_resume(
    stack: Stack, migrated: list[Path]
) -> None:
    """kombu takes a message off its queue (BRPOP) before it records it unacknowledged, so a worker killed in between
    takes it along and Redis has nothing to redeliver (seen: a place left ``pending`` for ever, its erasure never
    finished). Played by taking the message off the queue as that BRPOP does; the fleet sends the place again once
    the erasure saw no change for the visibility timeout (5 s here), with no `erase --resume`."""
    before = everything(stack)
    stack.stop_processes()
    survivor = start_standby(stack, "survivor", 2, consuming="verify", NSMIGRATE_VISIBILITY_TIMEOUT_S="5")
    db, dispatcher, job_id = send_erasure_of_a1(stack)
    lost = redis_lib.Redis.from_url(stack.redis_url).rpop("cleanup")  # the oldest: taken by a worker that died
    assert lost is not None
    _, kwargs, _ = json.loads(base64.b64decode(json.loads(lost)["body"]))
    lost_place = next(p for p in jobs_erasure.places_of(db, job_id) if p.id == kwargs["place_id"])
    assert lost_place.kind != "backup", "a backup place is erased by the command, never sent again by the fleet"
    take_over(stack, survivor, "cleanup")

    receipt = wait_until(lambda: jobs_erasure.erasure_receipt(db, job_id), what="the erasure's receipt", timeout_s=120)

    assert receipt["verified"], receipt
    assert everything(stack) == {k: m for k, m in before.items() if not is_a1(k, m)}
    # Sent again by the sweep: every place the erasure still had once it saw no change for the timeout (the survivor
    # may take over only after that), the lost one among them.
    resent = [
        e["detail"]["places"] for e in jobs_status.events_of(db, job_id) if e["action"] == "stalled_places_resent"
    ]
    assert any(lost_place.id in places for places in resent), resent
    dispatcher.close()
    db.dispose()


def test_bad_input_is_refused_and_nothing_is_deleted(
    sandbox: PineconeSandbox, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")
    monkeypatch.setenv("NSMIGRATE_DATABASE_URL", database_url)
    sandbox.load("idx", "creator_a.1", [("x", _vec(0), None)])
    path = tmp_path / "spec.yaml"
    store = {"kind": "pinecone", "host": sandbox.host("idx")}
    path.write_text(yaml.safe_dump({"name": "erase-test", "source": store, "target": store}))

    bad_id = CliRunner().invoke(app, ["erase", "a 1", "--spec", str(path), "--yes"])
    no_creator = CliRunner().invoke(app, ["erase", "--yes"])
    dry = CliRunner().invoke(app, ["erase", "a.1", "--spec", str(path), "--dry-run"])
    unconfirmed = CliRunner().invoke(app, ["erase", "a.1", "--spec", str(path)])

    assert bad_id.exit_code == 2 and "'a 1'" in (bad_id.output + str(bad_id.exception))
    assert no_creator.exit_code == 2 and "--creator" in no_creator.output
    assert dry.exit_code == 0 and "creator_a.1" in dry.output and "dry run" in dry.output
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.output
    assert sandbox.stats("idx")["namespaces"] == {"creator_a.1": 1}
    db = jobs_database.Database(database_url)
    skipped = plan_erasure(
        db,
        "a.1",
        None,
        open_retrying_store,
        [PineconeStoreSpec(host=sandbox.host("idx"))],
        skip_stores=[PineconeStoreSpec(host=sandbox.host("idx")).label],
    )
    assert skipped.places == [] and skipped.spec("t")["not_searched"] == [
        PineconeStoreSpec(host=sandbox.host("idx")).label
    ]
    db.dispose()


def test_a_records_place_deletes_only_matching_vectors(
    sandbox: PineconeSandbox, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pieces of a shared namespace without workers: the plan finds exactly a.1's vectors by metadata.
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")
    sandbox.load(
        "idx",
        "public",
        [("p1", _vec(0), {"creator_id": "a.1"}), ("p10", _vec(1), {"creator_id": "a.10"}), ("p", _vec(2), None)],
    )
    spec = PineconeStoreSpec(host=sandbox.host("idx"))
    db = jobs_database.Database(database_url)
    plan = plan_erasure(db, "a.1", None, open_retrying_store, [spec])
    assert [(p["kind"], p["namespace"], p["planned"]) for p in plan.places] == [("records", "public", 1)]
    db.dispose()


def test_a_place_that_fails_is_reported_and_resume_finishes_it(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    use_stack_env(stack, monkeypatch)
    stack.pinecone.load("idx", "creator_a.1", [("x", _vec(0), None), ("y", _vec(1), None)])
    stack.pinecone.load("idx", "creator_a.10", [("z", _vec(2), None)])
    spec = tmp_path / "spec.yaml"
    store = {"kind": "pinecone", "host": stack.pinecone.host("idx")}
    spec.write_text(yaml.safe_dump({"name": "erase-resume", "source": store, "target": store}))
    # Every delete answers 503 until the faults are lifted; the worker gives up after two tries.
    stack.pinecone.set_faults("idx", Faults(error_rate_5xx=1.0, error_ops=("delete", "delete_namespace")))
    stack.start_worker("cleanup", 2, pool="threads", NSMIGRATE_RETRY_ATTEMPTS="2", NSMIGRATE_RETRY_MAX_WAIT_S="0.05")

    failed = CliRunner().invoke(app, ["erase", "a.1", "--spec", str(spec), "--yes", "--timeout-s", "120"])

    assert failed.exit_code == 1 and "--resume" in failed.output
    assert stack.pinecone.stats("idx")["namespaces"]["creator_a.1"] == 2  # nothing claimed that was not done
    db = jobs_database.Database(stack.database_url)
    job_id = next(j["job_id"] for j in jobs_status.list_jobs(db) if j["kind"] == "erase")
    assert [p.state for p in jobs_erasure.places_of(db, job_id)] == ["failed"]
    db.dispose()
    stack.pinecone.set_faults("idx", Faults())

    resumed = CliRunner().invoke(app, ["erase", "--resume", str(job_id), "--timeout-s", "120"])

    assert resumed.exit_code == 0, resumed.output
    left = {ns: n for ns, n in stack.pinecone.stats("idx")["namespaces"].items() if n}
    assert left == {"creator_a.10": 1}


def alias_rest(stack: Stack, method: str, body: dict[str, Any] | None = None) -> Any:
    """Pinecone's alias API of index dst (2026-07), as any client calls it."""
    reply = httpx.request(
        method,
        stack.pinecone.host("dst") + "/namespace-aliases",
        content=json.dumps(body) if body is not None else None,
        headers={"Api-Key": SANDBOX_API_KEY, "X-Pinecone-Api-Version": "2026-07", "Content-Type": "application/json"},
    )
    assert reply.status_code < 300, reply.text
    return reply.json()


def test_an_erasure_removes_the_aliases_of_a_namespace_it_erases_and_names_them(
    stack: Stack, migrated: list[Path]
) -> None:
    alias_rest(stack, "POST", {"name": "live.t1", "target_namespace": "creator_a.1_twin_t1"})
    alias_rest(stack, "POST", {"name": "live.t10", "target_namespace": "creator_a.10_twin_t10"})

    result = CliRunner().invoke(app, ["erase", "--creator", "a.1", "--twin", "t1", "--yes"])

    assert result.exit_code == 0, result.output
    assert "creator_a.1_twin_t1" not in stack.pinecone.snapshot("dst")  # the namespace itself is gone
    left = {a["name"]: a["target_namespace"] for a in alias_rest(stack, "GET")["namespace_aliases"]}
    assert left == {"live.t10": "creator_a.10_twin_t10"}  # another creator's alias is untouched
    db = jobs_database.Database(stack.database_url)
    [erasure] = [j for j in jobs_status.list_jobs(db) if j["kind"] == "erase"]
    checks = [
        e["detail"]["verification"]
        for e in jobs_status.events_of(db, erasure["job_id"])
        if e["action"] == "place_erased"
    ]
    assert [c["aliases_removed"] for c in checks if "aliases_removed" in c] == [["live.t1"]]
    db.dispose()


# --------------------------------------------------------------------------------------------- data portability


def exported_records(directory: Path) -> list[tuple[str, str]]:
    """(namespace, id) of every record of a portability export, read from its Parquet files (one store's record
    and another's copy of it are two), sorted."""
    out = []
    for file in directory.rglob("*.parquet"):
        ns = pq.read_metadata(file).metadata[b"nsmigrate.namespace"].decode()
        out.extend((ns, row["id"]) for row in pq.read_table(file).to_pylist())
    return sorted(out)


def test_export_creator_writes_everything_they_own_in_every_store_and_nothing_else(
    stack: Stack, migrated: list[Path], tmp_path: Path
) -> None:
    before = everything(stack)
    theirs = {k for k, m in before.items() if is_a1(k, m)}

    result = CliRunner().invoke(app, ["export", "--creator", "a.1", "--out", str(tmp_path / "a1")])

    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "a1" / "portability.json").read_text())
    assert manifest["creator_id"] == "a.1" and manifest["count"] == len(theirs)
    assert sum(ns["count"] for s in manifest["stores"] for ns in s["namespaces"]) == len(theirs)
    assert len(manifest["stores"]) == 3  # the source, both targets
    exported = exported_records(tmp_path / "a1")
    assert exported == sorted((k[1], k[2]) for k in theirs)
    for store in manifest["stores"]:  # each store's part is an export `import` reads
        assert {h.namespace for h in read_manifest(tmp_path / "a1" / store["directory"])} == {
            ns["namespace"] for ns in store["namespaces"]
        }
    assert everything(stack) == before  # only read
    # The person's copy is not a backup of nsmigrate's: an erasure does not search it.
    plan = plan_erasure(jobs_database.Database(stack.database_url), "a.1", None, open_retrying_store)
    assert not [p for p in plan.places if p["kind"] == "backup" and "a1" in (p.get("path") or "")]


def test_erase_export_first_exports_then_erases_and_names_the_export_in_the_receipt(
    stack: Stack, migrated: list[Path], tmp_path: Path
) -> None:
    before = everything(stack)
    theirs = {k for k, m in before.items() if is_a1(k, m)}
    out = tmp_path / "handed-over"

    result = CliRunner().invoke(
        app, ["erase", "--creator", "a.1", "--export-first", str(out), "--yes", "--receipt", str(tmp_path / "r.json")]
    )

    assert result.exit_code == 0, result.output
    assert exported_records(out) == sorted((k[1], k[2]) for k in theirs)
    assert not [k for k, m in everything(stack).items() if is_a1(k, m)]
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["verified"] and receipt["exported_first"] == {"directory": str(out.resolve()), "count": len(theirs)}


def test_erase_export_first_deletes_nothing_when_the_export_fails(
    stack: Stack, migrated: list[Path], tmp_path: Path
) -> None:
    before = everything(stack)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "someone-elses.txt").write_text("not empty")

    result = CliRunner().invoke(app, ["erase", "--creator", "a.1", "--export-first", str(taken), "--yes"])

    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "the export of creator 'a.1''s data failed" in output and "nothing was deleted" in output
    assert everything(stack) == before
    assert sorted(p.name for p in taken.iterdir()) == ["someone-elses.txt"]
    db = jobs_database.Database(stack.database_url)
    assert not [j for j in jobs_status.list_jobs(db) if j["kind"] == "erase"]
    db.dispose()
