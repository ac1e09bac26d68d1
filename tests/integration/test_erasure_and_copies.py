"""An erasure and a copy of the same creator's data, each acting on what the job table says at the moment it acts,
never on an earlier verdict: the copy task's and the erasure task's own code, called in process, on real services
(the job table in Postgres, Redis, pgvector tables and the local Pinecone data plane through the real SDK).

`nsmigrate erase` refuses while a copy job may still write the creator's data, but that is its plan's answer. A copy
job started, resumed or synced after the plan would write the data back after the places were checked empty, under a
receipt saying "erased", or put it where the plan never looked. So each erasure place asks again right before it
deletes (a copy that may still write, or that copied since the plan: the place fails, deleting nothing), and a copy
batch asks right before it writes (a record of a creator an erasure is erasing or erased is skipped and named; the
rest is written: tests/integration/test_erasure_write_paths.py). Whichever of the two acts second sees the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex, StoreIndex
from nsmigrate.orchestrator.errors import ErasureFailed, NotFound, SpecError, StateError
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import erasure_ledger as jobs_erasure_ledger
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.models import SCHEMA_VERSION, ErasureEntry, SchemaInfo, ensure_schema
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, erasing
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.stores.backup.exporting import export_namespaces
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import URL_ENV, RecordingDispatcher, copied_job, make_records, make_spec
from tests.settling import settle

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_ERASE_COPY_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture(params=["pgvector", "pinecone"])
def store_specs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], ...]:
    """(source, target) store specs as spec dicts."""
    if request.param == "pgvector":
        monkeypatch.setenv(URL_ENV, request.getfixturevalue("database_url"))
        common = {"kind": "pgvector", "layout": "table_per_namespace", "database_url_env": URL_ENV, "dimension": DIM}
        return {**common, "table": "src"}, {**common, "table": "dst"}
    sb: PineconeSandbox = request.getfixturevalue("sandbox")
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-copy-test")
    return tuple({"kind": "pinecone", "host": sb.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))


class Dispatcher(RecordingDispatcher):
    def list_namespace(self, run_id: int, **kw: Any) -> None:
        self.sent.append(("list", run_id, kw))


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=Dispatcher())


SHARED_IDS = [f"{p}-{i:03d}" for p in "mo" for i in range(3)]


def a_copy_job(
    ctx: WorkerContext, spec: JobSpec, source_namespace: str, target_namespace: str, ids: list[str] = SHARED_IDS
) -> int:
    """A copy job of the shared namespace, listed into one batch of ``ids`` (queued, not copied yet): what `run`,
    `resume` or `sync` leaves for a copy task. Returns the batch's id."""
    [batch_id] = a_copy_job_of_batches(ctx, spec, source_namespace, target_namespace, [ids])
    return batch_id


def a_copy_job_of_batches(
    ctx: WorkerContext, spec: JobSpec, source_namespace: str, target_namespace: str, id_batches: list[list[str]]
) -> list[int]:
    """``a_copy_job`` listed into a batch of each of ``id_batches``; returns the batches' ids."""
    plan = Plan(
        runs=[NamespacePlan(source_namespace, target_namespace, sum(map(len, id_batches)), 1)],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
    )
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    job_id = jobs_and_runs.create_job(ctx.db, spec, plan, source_label=source.name, target_label=target.name)
    [run] = jobs_and_runs.runs_of(ctx.db, job_id)
    assert jobs_pages.start_listing(ctx.db, run.id) is not None
    return jobs_pages.add_batches(ctx.db, run.id, id_batches, None, listing_done=True).batch_ids


def shared_namespace(ctx: WorkerContext, spec: JobSpec) -> None:
    """The source's ``public`` namespace (``SHARED_IDS``): three vectors of creator a.1 ("m…") and three of a.10."""
    ctx.store(spec.source).upsert(
        "public", make_records(3, prefix="m", creator_id="a.1") + make_records(3, prefix="o", seed=1, creator_id="a.10")
    )
    settle(spec.source)  # the application's, written long before


# ----------------------------------------------------------------------------- a copy asks before it writes


@pytest.mark.parametrize("erasure", ["erasing", "erased"])
def test_a_copy_batch_skips_the_records_of_a_creator_an_erasure_is_erasing_or_erased(
    ctx: WorkerContext, store_specs: tuple, erasure: str
) -> None:
    spec = make_spec(store_specs)
    shared_namespace(ctx, spec)
    batch_id = a_copy_job(ctx, spec, "public", "public-copy")  # started before the erasure, copied after
    place = {"kind": "records", "store": "elsewhere", "store_spec": None, "namespace": "x", "planned": 0}
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", Subject("a.1").to_json(), [place])
    if erasure == "erased":
        [place_row] = jobs_erasure.places_of(ctx.db, erase_job)
        jobs_erasure.finish_place(ctx.db, place_row.id, erased=0, verification={"passed": True})
        assert jobs_erasure.maybe_finish_erasure(ctx.db, erase_job, lambda job, places: {}) is not None

    assert copying.copy_batch(ctx, batch_id) == 3  # a.10's

    target = ctx.store(spec.target)
    assert target.fetch("public-copy", ["m-000", "m-001", "m-002"]) == []
    assert sorted(r.id for r in target.fetch("public-copy", ["o-000", "o-001", "o-002"])) == ["o-000", "o-001", "o-002"]
    [event] = held_back_events(ctx, erase_job)
    assert event["ids"] == ["m-000", "m-001", "m-002"] and event["batch"] == batch_id


def test_erasures_recorded_while_a_job_copies_hold_their_subject_back_from_every_batch_started_after_them(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    """A batch reads the ledger with its start, and the worker keeps the lines it read under what the ledger held
    (``erasure_ledger.LEDGER_KEY``): each erasure recorded, or line lifted, between two batches of one job counts
    for the next batch, whatever this worker read for the ones before."""
    spec = make_spec(store_specs)
    shared_namespace(ctx, spec)
    pairs = [["m-000", "o-000"], ["m-001", "o-001"], ["m-002", "o-002"], ["o-001", "m-000"]]
    before, after_a10, after_a1, after_lift = a_copy_job_of_batches(ctx, spec, "public", "public-copy", pairs)
    target = ctx.store(spec.target)

    def copied() -> list[str]:
        return sorted(r.id for r in target.fetch("public-copy", SHARED_IDS))

    assert copying.copy_batch(ctx, before) == 2
    a10 = erased(ctx, Subject("a.10"))  # finished, with its receipt
    assert copying.copy_batch(ctx, after_a10) == 1
    place = {"kind": "records", "store": "elsewhere", "store_spec": None, "namespace": "x", "planned": 0}
    a1 = jobs_erasure.create_erasure(ctx.db, "erase-a.1", Subject("a.1").to_json(), [place])  # still erasing
    assert copying.copy_batch(ctx, after_a1) == 0
    assert copied() == ["m-000", "m-001", "o-000"]
    jobs_erasure_ledger.lift_erasure(ctx.db, "a.10", None, "a test creator: may be copied again")
    assert copying.copy_batch(ctx, after_lift) == 1

    assert copied() == ["m-000", "m-001", "o-000", "o-001"]
    assert [(e["batch"], e["ids"]) for e in held_back_events(ctx, a10)] == [
        (after_a10, ["o-001"]),
        (after_a1, ["o-002"]),
    ]
    assert [(e["batch"], e["ids"]) for e in held_back_events(ctx, a1)] == [
        (after_a1, ["m-002"]),
        (after_lift, ["m-000"]),
    ]


# ------------------------------------------------------------------------- an erasure asks before it deletes


@pytest.mark.parametrize("copy", ["in flight", "finished", "cancelled mid-batch"])
def test_an_erasure_place_refuses_when_a_copy_started_after_its_plan_may_write_the_data_or_wrote_it(
    ctx: WorkerContext, store_specs: tuple, copy: str
) -> None:
    """The copy job starts after the erasure was planned: still copying its batch when the places are erased (it
    would write a.1's vectors back after they were checked empty), done before them (it wrote them to a namespace
    the plan never saw), or cancelled while its batch was being copied (that batch still writes)."""
    spec = make_spec(store_specs)
    copied_job(ctx, spec, {"t1": make_records(3, prefix="m")}, pairs={"t1": ("a.1", "t1")})  # a.1's twin, copied
    shared_namespace(ctx, spec)
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    assert plan.writing == {} and plan.places

    batch_id = a_copy_job(ctx, spec, "public", "public-copy")  # after the plan: not among its places
    copy_job = jobs_and_runs.get_run(ctx.db, jobs_batches.run_of_batch(ctx.db, batch_id)).job_id
    work = jobs_batches.start_batch(ctx.db, batch_id, "copier")
    assert work is not None
    if copy == "finished":
        assert copying.copy_batch(ctx, batch_id, started=work) == 6
    elif copy == "cancelled mid-batch":
        jobs_and_runs.cancel_job(ctx.db, copy_job)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)
    before = {ns: n for ns, n in ctx.store(spec.source).namespaces().items()}

    for place in jobs_erasure.places_of(ctx.db, erase_job):
        with pytest.raises(ErasureFailed) as refused:
            erasing.erase_place(ctx, place.id)
        message = str(refused.value)
        assert f"job {copy_job} (namespaces 'public')" in message and "nothing was deleted here" in message
        if copy == "finished":
            assert (
                f"after erasure job {erase_job} was planned" in message and "nsmigrate erase --creator a.1" in message
            )
        else:
            assert "may still write" in message and f"nsmigrate erase --resume {erase_job}" in message

    assert ctx.store(spec.source).namespaces() == before  # nothing deleted
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None and not receipt["verified"]


def test_an_erasure_place_refuses_after_a_batch_that_may_have_written_the_data_failed_since_its_plan(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    """A batch started before the erasure (it read no ledger line), wrote its first chunks, then failed: its run's
    copies count nothing of it, and once its job was cancelled (as the refusal advises) nothing was writing. The
    place was erased and verified while the batch's writes, where the plan never looked, stayed."""
    spec = make_spec(store_specs)
    copied_job(ctx, spec, {"t1": make_records(3, prefix="m")}, pairs={"t1": ("a.1", "t1")})
    shared_namespace(ctx, spec)
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    batch_id = a_copy_job(ctx, spec, "public", "public-copy")
    copy_job = jobs_and_runs.get_run(ctx.db, jobs_batches.run_of_batch(ctx.db, batch_id)).job_id
    assert jobs_batches.start_batch(ctx.db, batch_id, "copier") is not None
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)
    jobs_batches.fail_batch(ctx.db, batch_id, "503 on its last chunk", "copier")
    jobs_and_runs.cancel_job(ctx.db, copy_job)

    for place in jobs_erasure.places_of(ctx.db, erase_job):
        with pytest.raises(ErasureFailed) as refused:
            erasing.erase_place(ctx, place.id)
        message = str(refused.value)
        assert (
            f"after erasure job {erase_job} was planned" in message
            and f"job {copy_job} (namespaces 'public')" in message
        )


# ------------------------------------------------------------------------ a rollback writes originals back


def twin_copied_and_cleaned(ctx: WorkerContext, spec: JobSpec) -> int:
    """Creator a.1's twin t1 copied (``creator_a.1_twin_t1``), its originals then deleted as a cleanup deletes them:
    a rollback would write them back from the copies. Returns the migrate job's id."""
    data, twin = {"t1": make_records(3, prefix="m")}, {"t1": ("a.1", "t1")}
    job = copied_job(ctx, spec, data, targets={"t1": "creator_a.1_twin_t1"}, pairs=twin, started=True)
    ctx.store(spec.source).delete("t1", ["m-000", "m-001", "m-002"])
    settle(spec.source, spec.target)  # a cleanup waits for its deletes; both long done
    return job.job_id


def test_a_rollback_refuses_to_write_back_the_originals_of_a_creator_an_erasure_is_erasing(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    spec = make_spec(store_specs)
    job_id = twin_copied_and_cleaned(ctx, spec)
    place = {"kind": "records", "store": "elsewhere", "store_spec": None, "namespace": "x", "planned": 0}
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", Subject("a.1").to_json(), [place])

    result = rollback_job(ctx, job_id, actor="tester")

    assert result["action"] == "refused", result
    assert "3 original(s) of creator 'a.1' in namespace 't1'" in result["reason"]
    assert (
        f"erasure job {erase_job} erases their data" in result["reason"] and "nothing was restored" in result["reason"]
    )
    assert ctx.store(spec.source).namespaces().get("t1", 0) == 0  # nothing written back
    assert ctx.store(spec.target).namespaces().get("creator_a.1_twin_t1") == 3  # nothing deleted


def test_an_erasure_place_refuses_while_a_rollback_writes_originals_back(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    spec = make_spec(store_specs)
    job_id = twin_copied_and_cleaned(ctx, spec)
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    assert plan.writing == {} and plan.places
    rollback_id, _ = jobs_sync_rollback.open_rollback(
        ctx.db, job_id, "tester"
    )  # a rollback that has begun writing back
    [rollback_run] = jobs_and_runs.runs_of(ctx.db, rollback_id)
    jobs_sync_rollback.rollback_restoring(ctx.db, rollback_run.id)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)

    for place in jobs_erasure.places_of(ctx.db, erase_job):
        with pytest.raises(ErasureFailed) as refused:
            erasing.erase_place(ctx, place.id)
        assert f"may still write creator 'a.1''s data after it is erased: job {rollback_id}" in str(refused.value)

    assert ctx.store(spec.target).namespaces().get("creator_a.1_twin_t1") == 3  # nothing deleted


# ------------------------------------------------------------- the erasure ledger: every write path asks it


def erased(ctx: WorkerContext, subject: Subject) -> int:
    """An erasure of ``subject`` that finished with its receipt: a line of the ledger. Returns its job's id."""
    place = {"kind": "records", "store": "elsewhere", "store_spec": None, "namespace": "x", "planned": 0}
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase", subject.to_json(), [place])
    [place_row] = jobs_erasure.places_of(ctx.db, erase_job)
    jobs_erasure.finish_place(ctx.db, place_row.id, erased=0, verification={"passed": True})
    assert jobs_erasure.maybe_finish_erasure(ctx.db, erase_job, lambda job, places: {"verified": True}) is not None
    return erase_job


def held_back_events(ctx: WorkerContext, erase_job: int) -> list[dict[str, Any]]:
    return [e["detail"] for e in jobs_status.events_of(ctx.db, erase_job) if e["action"] == "write_held_back"]


def test_an_archive_imported_after_an_erasure_writes_none_of_the_creators_records_and_names_them(
    ctx: WorkerContext, store_specs: tuple, tmp_path: Path, job_table_url: str
) -> None:
    """Issue 44's repro: a.1 erased, then an export made before the erasure is imported with `--overwrite --yes`.
    Their records (by metadata, a list-valued id among them, and every record of their own namespace) are held back
    and named; a.10's are written; once an operator lifts the erasure, the same import writes them."""
    spec = make_spec(store_specs)
    source = ctx.store(spec.source)
    listed = Record("l-000", make_records(1, seed=3)[0].values, {"creator_id": ["a.1"]})
    source.upsert(
        "public",
        [
            *make_records(3, prefix="m", creator_id="a.1"),
            listed,
            *make_records(3, prefix="o", seed=1, creator_id="a.10"),
        ],
    )
    source.upsert("creator_a.1_twin_t1", make_records(2, prefix="n", seed=2))  # their namespace: no metadata needed
    settle(spec.source)  # exported long after it was written
    export_namespaces(source, ["public", "creator_a.1_twin_t1"], tmp_path / "archive")
    erase_job = erased(ctx, Subject("a.1"))
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"name": "restore", "source": store_specs[0], "target": store_specs[1]}))
    command = ["import", str(tmp_path / "archive"), str(spec_path), "--overwrite", "--yes"]
    runner = CliRunner()

    result = runner.invoke(app, [*command, "--database-url", job_table_url])

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "held back 6 record(s) of creator 'a.1'" in output and f"erased by erasure job {erase_job}" in output
    assert all(f"'{i}'" in output for i in ("m-000", "m-002", "l-000", "n-000", "n-001"))
    assert "'o-000'" not in output and "erase --lift --creator a.1" in output
    settle(spec.target)  # the counts below lag the import's writes
    target = ctx.store(spec.target)
    assert target.namespaces().get("public") == 3 and target.namespaces().get("creator_a.1_twin_t1", 0) == 0
    assert sorted(r.id for r in target.fetch("public", ["m-000", "l-000", "o-000"])) == ["o-000"]
    [event] = held_back_events(ctx, erase_job)  # in the erasure's own events
    assert event["records"] == 6 and event["command"] == "import" and "l-000" in event["ids"]

    refused = runner.invoke(app, ["erase", "--lift", "--creator", "a.1", "--database-url", job_table_url])
    assert refused.exit_code == 2 and "--reason" in refused.output
    lifted = runner.invoke(
        app, ["erase", "--lift", "--creator", "a.1", "--reason", "court order", "--database-url", job_table_url]
    )
    assert lifted.exit_code == 0, lifted.output
    assert f"lifted erasure job {erase_job} of creator 'a.1'" in lifted.output

    again = runner.invoke(app, [*command, "--database-url", job_table_url])

    assert again.exit_code == 0, again.output
    assert "erased by erasure job" not in again.output
    settle(spec.target)
    assert target.namespaces().get("public") == 7 and target.namespaces().get("creator_a.1_twin_t1") == 2
    [line] = jobs_erasure_ledger.ledger(ctx.db, "a.1")
    assert line["lift_reason"] == "court order" and line["receipt"] == {"verified": True}


def test_a_held_back_copy_is_in_the_erasures_events_and_lifting_it_is_recorded(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    spec = make_spec(store_specs)
    shared_namespace(ctx, spec)
    batch_id = a_copy_job(ctx, spec, "public", "public-copy")
    erase_job = erased(ctx, Subject("a.1"))

    copying.copy_batch(ctx, batch_id)

    [event] = held_back_events(ctx, erase_job)
    assert event["records"] == 3 and event["ids"] == ["m-000", "m-001", "m-002"] and event["namespace"] == "public"
    jobs_erasure_ledger.lift_erasure(ctx.db, "a.1", None, "a test creator: may be copied again", actor="dpo")
    [line] = jobs_erasure_ledger.ledger(ctx.db, "a.1")
    assert line["lifted_by"] == "dpo" and line["erasure_job"] == erase_job
    assert [
        e["detail"]["reason"] for e in jobs_status.events_of(ctx.db, erase_job) if e["action"] == "erasure_lifted"
    ] == ["a test creator: may be copied again"]
    assert jobs_erasure_ledger.erasure_subjects(ctx.db) == []  # `sync` copies them now (test_erasure_write_paths)


def test_lifting_an_erasure_is_exact_needs_a_reason_and_waits_for_the_erasure(
    ctx: WorkerContext, job_table_url: str, redis_url: str
) -> None:
    twin_job = erased(ctx, Subject("a.1", "t1"))
    place = {"kind": "records", "store": "elsewhere", "store_spec": None, "namespace": "x", "planned": 0}
    running = jobs_erasure.create_erasure(ctx.db, "erase-b.2", Subject("b.2").to_json(), [place])

    with pytest.raises(SpecError, match="needs a reason"):
        jobs_erasure_ledger.lift_erasure(ctx.db, "a.1", "t1", "  ")
    with pytest.raises(NotFound, match=r"no erasure of creator 'a\.1' to lift"):
        jobs_erasure_ledger.lift_erasure(
            ctx.db, "a.1", None, "the creator's line"
        )  # a twin's line is lifted only with its twin
    with pytest.raises(NotFound):
        jobs_erasure_ledger.lift_erasure(ctx.db, "a.10", "t1", "another creator")
    with pytest.raises(StateError, match="still erasing"):
        jobs_erasure_ledger.lift_erasure(ctx.db, "b.2", None, "too early")
    assert [j for j, _ in jobs_erasure_ledger.erasure_subjects(ctx.db)] == [twin_job, running]  # nothing was lifted

    db_url = ["--database-url", job_table_url]
    # The command's exit codes (README): refused by the erasure's state → 1; a lift that names no erasure → 2.
    refused = CliRunner().invoke(app, ["erase", "--lift", "--creator", "b.2", "--reason", "too early", *db_url])
    assert refused.exit_code == 1 and "still erasing" in refused.output, refused.output
    unknown = CliRunner().invoke(app, ["erase", "--lift", "--creator", "a.10", "--reason", "none", *db_url])
    assert unknown.exit_code == 2 and "no erasure of creator 'a.10'" in unknown.output, unknown.output
    not_migrate = CliRunner().invoke(app, ["rollback", str(running), "--dry-run", *db_url, "--redis-url", redis_url])
    assert not_migrate.exit_code == 2 and "only a migrate job can be rolled back" in not_migrate.output
    assert [j for j, _ in jobs_erasure_ledger.erasure_subjects(ctx.db)] == [twin_job, running]

    jobs_erasure_ledger.lift_erasure(ctx.db, "a.1", "t1", "restored")
    assert [j for j, _ in jobs_erasure_ledger.erasure_subjects(ctx.db)] == [running]
    jobs_and_runs.cancel_job(ctx.db, running)  # a cancelled erasure holds back nothing
    assert jobs_erasure_ledger.erasure_subjects(ctx.db) == []


def test_the_ledger_keeps_the_whole_subject_for_every_write_path(ctx: WorkerContext) -> None:
    # Vectors without metadata the owners table gave the creator, and a source's own twin key: a write path (an
    # import, a dual write, a copy) must know them as the erasure did, or it writes them back.
    subject = Subject("a.1", owned_ids=frozenset({"bare-1"}), twin_fields=frozenset({"twin_id", "twinId"}))
    erase_job = erased(ctx, subject)

    assert jobs_erasure_ledger.erasure_subjects(ctx.db) == [(erase_job, subject)]
    [(_, kept)] = jobs_erasure_ledger.erasure_subjects(ctx.db)
    assert kept.owns_record({}, "bare-1") and kept.owns_record({"twinId": "t1"}) is False  # t1 is no twin of theirs


def test_an_older_job_tables_erasures_enter_the_ledger_when_its_schema_is_brought_up_to_date(
    ctx: WorkerContext,
) -> None:
    erase_job = erased(ctx, Subject("a.1"))
    with ctx.db.transaction() as s:  # as a job table written before the ledger existed
        s.execute(sa.delete(ErasureEntry))
        s.execute(sa.delete(SchemaInfo).where(SchemaInfo.version == SCHEMA_VERSION))
    assert jobs_erasure_ledger.erasure_subjects(ctx.db) == []

    ensure_schema(ctx.db.engine)

    assert jobs_erasure_ledger.erasure_subjects(ctx.db) == [(erase_job, Subject("a.1"))]


def test_a_dual_write_writes_none_of_an_erased_twins_records_to_either_index(
    ctx: WorkerContext, store_specs: tuple
) -> None:
    """An application writing through ``DualWriteIndex`` into twin t1's old namespace after a.1 was erased: the run
    says whose the namespace is, so neither the old index nor the job's target gets those records; a.10's twin
    t10 is written to both; the held-back records are named and in the erasure's events."""
    spec = make_spec(store_specs)
    job = copied_job(
        ctx,
        spec,
        {"t1": make_records(2, prefix="m"), "t10": make_records(2, prefix="o", seed=1)},
        targets={"t1": "creator_a.1_twin_t1", "t10": "creator_a.10_twin_t10"},
        pairs={"t1": ("a.1", "t1"), "t10": ("a.10", "t10")},
    )
    erase_job = erased(ctx, Subject("a.1", twins=frozenset({"t1"})))
    source, target = ctx.store(spec.source), ctx.store(spec.target)
    published.publish(ctx.db, ctx.redis, job.job_id)  # `nsmigrate cutover publish`: the ledger with it
    app = DualWriteIndex(old=StoreIndex(source), new=StoreIndex(target), job_id=job.job_id, redis=ctx.redis)
    written = {"id": "new-1", "values": make_records(1, seed=5)[0].values}

    assert app.upsert(vectors=[written], namespace="t1") is None

    assert "held back 1 record(s) of creator 'a.1'" in app.held_back[0] and "'new-1'" in app.held_back[0]
    assert source.fetch("t1", ["new-1"]) == [] and target.fetch("creator_a.1_twin_t1", ["new-1"]) == []
    published.file_writes(ctx.db, ctx.redis, job.job_id)  # what the application sent, filed
    [event] = held_back_events(ctx, erase_job)
    assert event["command"] == "dual_write" and event["ids"] == ["new-1"] and event["job"] == job.job_id

    app.upsert(vectors=[written], namespace="t10")

    assert app.held_back == []
    assert [r.id for r in source.fetch("t10", ["new-1"])] == ["new-1"]
    assert [r.id for r in target.fetch("creator_a.10_twin_t10", ["new-1"])] == ["new-1"]


def test_the_receipt_records_how_long_each_place_and_the_erasure_took(ctx: WorkerContext, store_specs: tuple) -> None:
    spec = make_spec(store_specs)
    copied_job(ctx, spec, {"t1": make_records(3, prefix="m")}, pairs={"t1": ("a.1", "t1")})
    shared_namespace(ctx, spec)
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)

    for place in jobs_erasure.places_of(ctx.db, erase_job):
        erasing.erase_place(ctx, place.id)

    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None and receipt["verified"] and len(receipt["places"]) >= 2
    durations = [p["duration_s"] for p in receipt["places"]]
    assert all(isinstance(d, float) and 0 <= d < 30 for d in durations), durations
    assert receipt["duration_s"] >= max(durations)
    [line] = jobs_erasure_ledger.ledger(ctx.db, "a.1")
    assert line["receipt"]["duration_s"] == receipt["duration_s"]  # the ledger keeps the same receipt
