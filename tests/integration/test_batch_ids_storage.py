"""Batch ids in the real job table: packed bytea (schema 5) round trips through the lister's and the copy's
transitions, non-ASCII ids included, and a job table of schema 4 (ids as a JSONB array) is upgraded in place with
every batch's ids, states and counts kept, after which `status` and the copy read it as before."""

from __future__ import annotations

import json

import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import SCHEMA_VERSION, Batch, BatchState, SchemaInfo
from tests.fleet_jobs import planned_job

NON_ASCII = ["ünïcødé-1", "日本語#chunk-0", "emoji-🙂", "tab\tin", "quote\"and'", "back\\slash", ""]
MANY = [f"doc-{k // 4}#chunk-{k % 4}" for k in range(1000)]


def a_job(db: jobs_database.Database, namespaces: tuple[str, ...] = ("ns", "ns-2")) -> list[int]:
    job_id = planned_job(db, "ids", namespaces)
    return [run.id for run in jobs_and_runs.runs_of(db, job_id)]


def test_batch_ids_round_trip_through_the_listers_and_the_copys_transitions(database_url: str) -> None:
    db = jobs_database.Database(database_url)
    run_id, other = a_job(db)
    one = jobs_pages.add_batches(db, run_id, [NON_ASCII], "t1", listing_done=False)  # one statement: page and batch
    two = jobs_pages.add_batches(db, run_id, [MANY, ["x"], []], None, listing_done=True, listed_from="t1")
    jobs_pages.add_batches(db, other, [["only"]], None, listing_done=True)

    started = [jobs_batches.start_batch(db, b, "w") for b in one.batch_ids + two.batch_ids]
    assert [w.ids if w else None for w in started] == [NON_ASCII, MANY, ["x"], []]
    with db.transaction() as s:
        stored = dict(s.execute(sa.select(Batch.id, sa.func.octet_length(sa.cast(Batch.ids, sa.LargeBinary)))).all())
        assert s.scalar(sa.select(sa.func.pg_typeof(Batch.ids)).limit(1)) == "bytea"
    assert stored[two.batch_ids[0]] < len(json.dumps(MANY)) / 2
    # a failed batch counts its ids as failed; retry takes them back off
    jobs_batches.fail_batch(db, two.batch_ids[0], "boom")
    assert jobs_and_runs.get_run(db, run_id).failed == len(MANY)
    jobs_batches.requeue_failed(db, jobs_and_runs.get_run(db, run_id).job_id)
    assert jobs_and_runs.get_run(db, run_id).failed == 0
    db.dispose()


def to_schema_4(engine: sa.Engine) -> None:
    """Turn a fresh job table into what schema 4 made: ``batches.ids`` a JSONB array, version 4 recorded."""
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE batches DROP COLUMN ids"))
        conn.execute(sa.text("ALTER TABLE batches ADD COLUMN ids JSONB NOT NULL DEFAULT '[]'"))
        conn.execute(sa.text("ALTER TABLE batches ALTER COLUMN ids DROP DEFAULT"))
        conn.execute(sa.text("ALTER TABLE batches DROP COLUMN lost_attempts"))  # schema 8's
        conn.execute(sa.delete(SchemaInfo))
        conn.execute(sa.insert(SchemaInfo).values(version=4))


def test_a_schema_4_job_table_is_upgraded_with_its_batches_ids_kept(database_url: str) -> None:
    jobs_database.Database(database_url).dispose()
    engine = sa.create_engine(database_url)
    to_schema_4(engine)
    old = jobs_database.Database(database_url, create=False)
    run_id, other = a_job(old)
    id_lists = {0: NON_ASCII, 1: MANY, 2: [], 3: ["x"]}
    states = {0: BatchState.DONE, 1: BatchState.QUEUED, 2: BatchState.DONE, 3: BatchState.FAILED}
    with engine.begin() as conn:  # rows as schema 4 wrote them
        for seq, ids in id_lists.items():
            conn.execute(
                sa.text(
                    "INSERT INTO batches (run_id, seq, ids, state, attempts, vectors, missing, bytes, created_at)"
                    " VALUES (:run, :seq, cast(:ids as jsonb), :state, 0, 0, 0, 0, now())"
                ),
                {"run": run_id, "seq": seq, "ids": json.dumps(ids), "state": states[seq]},
            )
        conn.execute(sa.text("UPDATE namespace_runs SET batches_total = 4 WHERE id = :run"), {"run": run_id})
        for index in ("ix_batches_unfinished", "ix_runs_job_target", "ix_runs_job_creator", "ix_runs_job_state"):
            conn.execute(sa.text(f"DROP INDEX {index}"))
        version = conn.scalar(sa.text("SELECT max(version) FROM nsmigrate_schema"))
        assert version == 4
    old.dispose()

    db = jobs_database.Database(database_url)  # what any command or worker does on start: the upgrade

    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT max(version) FROM nsmigrate_schema")) == SCHEMA_VERSION
        # every batch row gets the count of deaths its later redeliveries add to (schema 8)
        assert conn.scalar(sa.text("SELECT array_agg(lost_attempts) FROM batches")) == [0, 0, 0, 0]
        assert (
            conn.scalar(
                sa.text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name = 'batches' AND column_name = 'ids'"
                )
            )
            == "bytea"
        )
        for index in ("ix_batches_unfinished", "ix_runs_job_target", "ix_runs_job_creator", "ix_runs_job_state"):
            assert conn.scalar(sa.text(f"SELECT to_regclass('{index}')::text")) == index
    with db.transaction() as s:
        rows = s.execute(sa.select(Batch.seq, Batch.ids, Batch.state).order_by(Batch.seq)).all()
    assert [(seq, ids, state) for seq, ids, state in rows] == [(k, id_lists[k], states[k]) for k in id_lists]
    status = {r.run_id: r for r in jobs_status.job_status(db, jobs_and_runs.get_run(db, run_id).job_id).runs}
    assert status[run_id].batches.as_dict() == {"queued": 1, "running": 0, "done": 2, "failed": 1, "cancelled": 0}
    assert status[other].batches.as_dict() == {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    queued = jobs_pages.queued_batches(db, run_id)
    work = jobs_batches.start_batch(db, queued[0], "w")
    assert work is not None and work.ids == MANY
    # new batches are written packed beside the upgraded ones
    new = jobs_pages.add_batches(db, other, [NON_ASCII], None, listing_done=True)
    assert (w := jobs_batches.start_batch(db, new.batch_ids[0], "w")) is not None and w.ids == NON_ASCII
    jobs_database.Database(database_url).dispose()  # a second start finds version 5 and changes nothing
    with db.transaction() as s:
        assert list(s.scalars(sa.select(SchemaInfo.version).order_by(SchemaInfo.version))) == [4, SCHEMA_VERSION]
    db.dispose()
    engine.dispose()
