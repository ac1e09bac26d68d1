"""The job table's cost per task, on a real Postgres: how many statements and round trips the transitions that every
list and copy task makes take (a restarted Postgres: tests/fleet/test_job_table_restart.py).

Each statement counted here is one round trip; a transaction adds two more (BEGIN, COMMIT), which a statement run
in autocommit (its own transaction) does not. Checking a connection out of the pool adds none: a dead one is found
by its socket (``orchestrator.connections.liveness``), and only one idle for seconds is pinged; pings are counted
apart, against the checkouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from nsmigrate.orchestrator.errors import NotFound, StateError
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs, pages
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.models import SCHEMA_VERSION, Base, Batch, NamespaceRun, ensure_schema
from nsmigrate.orchestrator.planning.plan import ROUTED, Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.tenancy.erasure import Subject


@dataclass
class Traffic:
    """What a `Database` sent: each statement, whether it ran in autocommit (no BEGIN/COMMIT), pings, and how
    many connections were checked out of the pool."""

    statements: list[tuple[str, bool]] = field(default_factory=list)
    pings: int = 0
    checkouts: int = 0

    def clear(self) -> None:
        self.statements.clear()
        self.pings = 0
        self.checkouts = 0

    @property
    def round_trips(self) -> int:
        """The statements' round trips, pings not included."""
        in_transaction = [sql for sql, autocommit in self.statements if not autocommit]
        return len(self.statements) + (2 if in_transaction else 0)


def watch(db: jobs_database.Database, monkeypatch: pytest.MonkeyPatch) -> Traffic:
    traffic = Traffic()

    @event.listens_for(db.engine, "before_cursor_execute")
    def _statement(conn: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
        traffic.statements.append((statement.split()[0], bool(conn.connection.dbapi_connection.autocommit)))  # type: ignore[union-attr]

    @event.listens_for(db.engine, "checkout")
    def _checkout(*_: Any) -> None:
        traffic.checkouts += 1

    real_ping = db.engine.dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        traffic.pings += 1
        return real_ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted_ping)
    return traffic


def a_job(db: jobs_database.Database, namespaces: int = 1) -> tuple[int, list[int]]:
    spec = parse_spec(
        {
            "name": "cost",
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
        }
    )
    plan = Plan(
        runs=[NamespacePlan(f"ns{n}", f"ns{n}", 3, 1) for n in range(namespaces)],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
    )
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    return job_id, [run.id for run in jobs_and_runs.runs_of(db, job_id)]


def test_a_fresh_database_gets_the_job_table_schema_in_one_statement_per_table_and_index(database_url: str) -> None:
    # Every command, worker and test starts with `Database(url)`: on a fresh database it read each table's columns
    # and indexes back from the catalogue after creating them (53 statements for 20 objects); creating is all it
    # needs: the lock, two catalogue reads, one statement per table and index, the version row.
    statements: list[str] = []
    engine = sa.create_engine(database_url)
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
    ensure_schema(engine)  # what `Database(url)` does with its engine
    tables = Base.metadata.tables.values()
    made = len(tables) + sum(len(table.indexes) for table in tables)
    assert len(statements) == 3 + made + 1, "\n".join(" ".join(s.split())[:70] for s in statements)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT max(version) FROM nsmigrate_schema")) == SCHEMA_VERSION
        found = set(conn.scalars(sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")))
    wanted = {index.name for table in Base.metadata.tables.values() for index in table.indexes}
    assert wanted and wanted <= found
    statements.clear()
    ensure_schema(engine)  # made already: one version check, nothing created
    assert [s.split()[0] for s in statements] == ["SELECT", "SELECT", "SELECT"]
    engine.dispose()


@pytest.fixture
def db(job_table_url: str) -> Iterator[jobs_database.Database]:
    database = jobs_database.Database(job_table_url, create=False)
    yield database
    database.dispose()


def test_a_namespace_of_one_batch_costs_four_round_trips_from_listing_to_done(
    db: jobs_database.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, [run_id] = a_job(db)
    jobs_and_runs.job_spec(db, jobs_and_runs.get_run(db, run_id).job_id)  # a worker reads a job's spec once
    traffic = watch(db, monkeypatch)
    round_trips = pings = checkouts = 0

    def count() -> None:
        nonlocal round_trips, pings, checkouts
        round_trips += traffic.round_trips
        pings += traffic.pings
        checkouts += traffic.checkouts
        traffic.clear()

    assert jobs_pages.start_listing(db, run_id) is not None
    assert traffic.statements == [("UPDATE", True)]

    count()
    [batch_id] = jobs_pages.add_batches(db, run_id, [["a", "b", "c"]], None, listing_done=True).batch_ids
    assert traffic.statements == [("WITH", True)]  # the page and its batch together

    count()
    work = jobs_batches.start_batch(db, batch_id, "w")
    assert work is not None and work.ids == ["a", "b", "c"]
    assert traffic.statements == [("WITH", True)]

    count()
    follows = jobs_batches.finish_batch(db, batch_id, vectors=3, missing=0, nbytes=9, targets=["ns0"], max_in_flight=4)
    assert follows == jobs_batches.AfterBatch(copied=True, wake_lister=False, stuck=False)
    # mark done, count it and move the run to copied: one statement, no transaction held across a round trip
    assert traffic.statements == [("WITH", True)]
    count()
    assert round_trips == 4  # no ping per transaction, no BEGIN and COMMIT around single statements
    # no ping at a checkout: a connection in steady use only has its socket looked at
    assert (checkouts, pings) == (4, 0)

    with db.transaction() as s:
        run = s.get(NamespaceRun, run_id)
        batch = s.get(Batch, batch_id)
        assert run is not None and batch is not None
        assert (run.state, run.copied, run.target_namespaces) == ("copied", 3, ["ns0"])
        assert (batch.state, batch.vectors, batch.bytes, batch.attempts) == ("done", 3, 9, 1)


def test_a_small_run_is_recorded_and_started_in_one_statement_three_round_trips_from_listing_to_done(
    db: jobs_database.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small run's task (``workers.steps.small_group``) records its one batch already started for itself: one
    statement and one checkout fewer than recording it, then starting it as a copy task does (4 round trips, 4
    checkouts)."""
    _, [run_id] = a_job(db)
    jobs_and_runs.job_spec(db, jobs_and_runs.get_run(db, run_id).job_id)  # a worker reads a job's spec once
    traffic = watch(db, monkeypatch)
    assert jobs_pages.start_listing(db, run_id) is not None

    recorded, work = jobs_batches.record_and_claim_batch(
        db, run_id, ["a", "b", "c"], None, listed_from=None, worker="w"
    )

    # listing started, then the page, its batch and the batch's start together: 2 round trips, 2 checkouts
    assert (traffic.statements, traffic.checkouts) == ([("UPDATE", True), ("WITH", True)], 2)
    assert work is not None and recorded.batch_ids == [work.batch_id] and not recorded.cancelled
    assert (work.run_id, work.seq, work.ids, work.source_namespace, work.target_namespace) == (
        run_id,
        0,
        ["a", "b", "c"],
        "ns0",
        "ns0",
    )
    with db.transaction() as s:
        batch = s.get(Batch, work.batch_id)
        assert batch is not None
        assert (batch.state, batch.attempts, batch.worker) == ("running", 1, "w")
        assert batch.started_at is not None
    traffic.clear()
    follows = jobs_batches.finish_batch(
        db, work.batch_id, vectors=3, missing=0, nbytes=9, targets=["ns0"], max_in_flight=4
    )
    assert follows.copied
    assert (traffic.round_trips, traffic.checkouts) == (1, 1)  # in all 3 round trips and 3 checkouts
    assert jobs_batches.start_batch(db, work.batch_id, "w") is None  # done: a duplicate copy task does nothing


def test_a_small_run_cancelled_before_its_page_is_recorded_leaves_its_batch_queued_and_unclaimed(
    db: jobs_database.Database,
) -> None:
    job_id, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    jobs_and_runs.cancel_job(db, job_id, actor="tester")

    recorded, work = jobs_batches.record_and_claim_batch(db, run_id, ["a"], None, listed_from=None, worker="w")

    assert work is None and recorded.cancelled
    with db.transaction() as s:
        batch = s.get(Batch, recorded.batch_ids[0])
        assert batch is not None
        assert (batch.state, batch.attempts, batch.worker, batch.started_at) == ("queued", 0, None, None)
    with pytest.raises(StateError, match="another lister already recorded"):  # the page is recorded once
        jobs_batches.record_and_claim_batch(db, run_id, ["a"], None, listed_from=None, worker="w")


def test_a_page_read_before_its_run_started_is_recorded_only_while_the_run_may_be_listed(
    db: jobs_database.Database,
) -> None:
    """Unstarted (``listing_started=False``: the page was read ahead), the record is the run's start: it moves a
    pending run on itself, and refuses a run that ``start_listing`` would have refused, writing nothing."""
    job_id, [run_id, cancelled_run] = a_job(db, namespaces=2)

    _, work = jobs_batches.record_and_claim_batch(
        db, run_id, ["a"], None, listed_from=None, worker="w", listing_started=False
    )
    jobs_and_runs.cancel_job(db, job_id, actor="tester")
    with pytest.raises(StateError, match="is cancelled: it is not listed any more"):
        jobs_batches.record_and_claim_batch(
            db, cancelled_run, ["b"], None, listed_from=None, worker="w", listing_started=False
        )

    assert work is not None and work.ids == ["a"]
    started = jobs_and_runs.get_run(db, run_id)
    assert (started.listing_done, started.batches_total) == (True, 1)
    with db.transaction() as s:
        batches = s.scalars(sa.select(Batch).where(Batch.run_id.in_([run_id, cancelled_run])))
        assert [batch.run_id for batch in batches] == [run_id]


def test_a_page_of_a_run_another_lister_failed_for_good_is_not_recorded_and_retry_lists_it(
    db: jobs_database.Database,
) -> None:
    # Two listers of one run (a Redis restart lost their lock): one fails for good, the other lists the last page.
    # Recorded, the run was list_failed with its listing done: after `retry` it stayed `listing` for good.
    job_id, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    assert jobs_pages.fail_listing(db, run_id, "403 from the source")

    with pytest.raises(StateError, match="is list_failed: it is not listed any more"):
        jobs_pages.add_batches(db, run_id, [["a", "b"]], None, listing_done=True)

    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.listing_done, run.batches_total) == ("list_failed", False, 0)
    assert jobs_pages.requeue_failed_listers(db, job_id) == [(run_id, "ns0")]
    assert jobs_pages.start_listing(db, run_id) is not None  # listed again from its token
    jobs_pages.add_batches(db, run_id, [["a", "b"]], None, listing_done=True)
    assert jobs_and_runs.get_run(db, run_id).state == "copying"


def test_a_job_of_many_namespaces_is_written_in_one_insert_of_its_runs(db: jobs_database.Database) -> None:
    """One statement for the runs, not an executemany (which sends a statement per row), and the same statement
    whatever their number: compiled once, not a parameter per column and row."""
    inserts: list[tuple[str, bool]] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _statement(conn: sa.Connection, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO namespace_runs"):
            inserts.append((statement, many))

    _, run_ids = a_job(db, namespaces=40)
    _, others = a_job(db, namespaces=3)

    assert (len(run_ids), len(others)) == (40, 3)
    [(forty, many), (three, _)] = inserts
    assert not many and forty == three


def test_every_run_is_written_with_its_own_fields(db: jobs_database.Database) -> None:
    spec = parse_spec(
        {
            "name": "fields",
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
        }
    )
    plan = Plan(
        runs=[
            NamespacePlan("a", "creator_c_twin_t", 5, 1, creator_id="c", twin_id="t"),
            NamespacePlan("", None, 7, 1),  # routed per vector: keeps the routing table
            NamespacePlan("b", "b", 0, 0),
        ],
        estimate=Estimate(0, 0, 0, 0, 0, 0.0),
        twins={"t": "c"},
    )

    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst", checking=["b"])

    runs = {run.source_namespace: run for run in jobs_and_runs.runs_of(db, job_id)}
    got = {
        ns: (r.job_id, r.source_store, r.target_store, r.target_namespace, r.creator_id, r.twin_id, r.source_count)
        for ns, r in runs.items()
    }
    assert got == {
        "a": (job_id, "src", "dst", "creator_c_twin_t", "c", "t", 5),
        "": (job_id, "src", "dst", None, None, None, 7),
        "b": (job_id, "src", "dst", "b", None, None, 0),
    }
    assert {ns: r.state for ns, r in runs.items()} == {"a": "pending", "": "pending", "b": "checking"}
    assert {ns: r.routing_table for ns, r in runs.items()} == {"a": {}, "": {"t": "c"}, "b": {}}
    assert all(
        (r.listed, r.copied, r.batches_total, r.listing_done, r.target_namespaces) == (0, 0, 0, False, [])
        for r in runs.values()
    )
    assert all(r.created_at is not None and r.updated_at is not None for r in runs.values())


def one_listed_batch(db: jobs_database.Database) -> tuple[int, int, int]:
    """A one-run job listed whole into one batch of ids ``a`` and ``b``: (job, run, batch)."""
    job_id, [run_id] = a_job(db)
    assert jobs_pages.start_listing(db, run_id) is not None
    [batch_id] = jobs_pages.add_batches(db, run_id, [["a", "b"]], None, listing_done=True).batch_ids
    return job_id, run_id, batch_id


def copied_run(db: jobs_database.Database, namespaces: int = 1) -> tuple[int, list[int]]:
    """A job whose runs each copied their one batch."""
    job_id, run_ids = a_job(db, namespaces)
    for n, run_id in enumerate(run_ids):
        assert jobs_pages.start_listing(db, run_id) is not None
        [batch_id] = jobs_pages.add_batches(db, run_id, [["a"]], None, listing_done=True).batch_ids
        assert jobs_batches.start_batch(db, batch_id, "w") is not None
        jobs_batches.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=[f"ns{n}"], max_in_flight=4)
    return job_id, run_ids


def test_a_verification_costs_four_round_trips_and_writes_its_verdict_with_its_event(
    db: jobs_database.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, [run_id, other] = copied_run(db, namespaces=2)
    traffic = watch(db, monkeypatch)

    started = jobs_verdicts.start_verify(db, run_id)
    assert started is not None
    run, neighbours = started
    at = {run_id: run.verifying_since}
    assert (run.id, run.state, run.target_namespace) == (run_id, "verifying", "ns0")
    assert (neighbours.writers, neighbours.runs, neighbours.first_twin_run) == ([], 2, None)
    # move and read the run, its target's other writers, the job's runs (once per process): no transaction
    assert traffic.statements == [("UPDATE", True), ("SELECT", True), ("SELECT", True)]
    traffic.clear()
    started_other = jobs_verdicts.start_verify(db, other)
    assert started_other is not None
    at[other] = started_other[0].verifying_since
    assert traffic.statements == [("UPDATE", True), ("SELECT", True)]

    traffic.clear()
    jobs_verdicts.finish_verify(
        db, run_id, "ns0", {"passed": True, "summary": "fine"}, True, "tester", started_at=at[run_id]
    )
    assert traffic.statements == [("WITH", True)]  # the verdict and its event together
    jobs_verdicts.finish_verify(
        db, other, "ns1", {"passed": False, "summary": "3 missing"}, False, "tester", started_at=at[other]
    )

    assert [jobs_and_runs.get_run(db, r).state for r in (run_id, other)] == ["verified", "verify_failed"]
    assert jobs_and_runs.get_run(db, run_id).verification == {"passed": True, "summary": "fine"}
    events = [(e["action"], e["run_id"], e["actor"], e["detail"]) for e in jobs_status.events_of(db, job_id)][-2:]
    assert events == [
        ("verified", run_id, "tester", {"namespace": "ns0", "summary": "fine"}),
        ("verify_failed", other, "tester", {"namespace": "ns1", "summary": "3 missing"}),
    ]


def test_a_group_of_verifications_starts_in_four_statements_and_each_run_knows_its_neighbours(
    db: jobs_database.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``start_verifications``: one statement moves the group, one reads its targets' writers, one its creators'
    first twin runs (and the job's run count, once per process); each run gets what ``start_verify`` gives it."""
    spec = parse_spec(
        {
            "name": "group",
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
        }
    )
    plans = [
        NamespacePlan("a", "shared", 3, 1, creator_id="c1", twin_id="t1"),
        NamespacePlan("b", "shared", 3, 1, creator_id="c1", twin_id="t2"),
        NamespacePlan("c", "own", 3, 1, creator_id="c2", twin_id="t3"),
        NamespacePlan("d", ROUTED, 3, 1),  # routed and not copied yet: it may still write anywhere
        NamespacePlan("e", "e", 3, 1),
    ]
    job_id = jobs_and_runs.create_job(
        db, spec, Plan(plans, Estimate(0, 0, 0, 0, 0, 0.0)), source_label="s", target_label="t"
    )
    runs = {run.source_namespace: run.id for run in jobs_and_runs.runs_of(db, job_id)}
    for plan in plans:
        if plan.target_namespace is not None:
            run_id = runs[plan.source_namespace]
            assert jobs_pages.start_listing(db, run_id) is not None
            [batch_id] = jobs_pages.add_batches(db, run_id, [["x"]], None, listing_done=True).batch_ids
            assert jobs_batches.start_batch(db, batch_id, "w") is not None
            jobs_batches.finish_batch(
                db, batch_id, vectors=1, missing=0, nbytes=1, targets=[plan.target_namespace], max_in_flight=4
            )
    traffic = watch(db, monkeypatch)

    group = [runs["e"], runs["c"], runs["a"], runs["b"], runs["d"], 10**9]  # d is not copied; 10**9 names no run
    started = jobs_verdicts.start_verifications(db, group)

    assert traffic.statements == [("UPDATE", True), ("SELECT", True), ("SELECT", True), ("SELECT", True)]
    assert [run.id for run, _ in started] == [runs["e"], runs["c"], runs["a"], runs["b"]]  # in the order given
    assert {run.state for run, _ in started} == {"verifying"}
    assert jobs_and_runs.get_run(db, runs["d"]).state == "pending"
    seen = {
        run.source_namespace: (sorted(w.source_namespace for w in n.writers), n.runs, n.first_twin_run)
        for run, n in started
    }
    assert seen == {
        "a": (["b", "d"], 5, min(runs["a"], runs["b"])),
        "b": (["a", "d"], 5, min(runs["a"], runs["b"])),
        "c": (["d"], 5, runs["c"]),
        "e": (["d"], 5, None),
    }
    for run, _ in started:  # each alone, as a verification sent on its own finds it
        alone = jobs_verdicts.start_verify(db, run.id)
        assert alone is not None
        assert seen[run.source_namespace] == (
            sorted(w.source_namespace for w in alone[1].writers),
            alone[1].runs,
            alone[1].first_twin_run,
        )
    assert jobs_verdicts.start_verifications(db, [runs["d"], 10**9]) == []


def test_a_verification_is_refused_where_it_cannot_start_or_end_and_then_writes_nothing(
    db: jobs_database.Database,
) -> None:
    job_id, [run_id, judged] = copied_run(db, namespaces=2)
    first = jobs_verdicts.start_verify(db, judged)
    assert first is not None
    jobs_verdicts.finish_verify(
        db, judged, "ns1", {"passed": True}, True, "tester", started_at=first[0].verifying_since
    )

    with pytest.raises(NotFound):
        jobs_verdicts.start_verify(db, 10**9)
    assert jobs_verdicts.start_verify(db, judged, judged_too=False) is None  # a verdict kept
    assert jobs_and_runs.get_run(db, judged).state == "verified"

    started = jobs_verdicts.start_verify(db, run_id)
    assert started is not None
    jobs_and_runs.cancel_job(db, job_id, actor="tester")  # cancelled while it was being verified
    events = len(jobs_status.events_of(db, job_id))
    with pytest.raises(StateError, match="cannot move from cancelled to verified"):
        jobs_verdicts.finish_verify(
            db, run_id, "ns0", {"passed": True}, True, "tester", started_at=started[0].verifying_since
        )
    assert jobs_and_runs.get_run(db, run_id).state == "cancelled"
    assert len(jobs_status.events_of(db, job_id)) == events


def test_a_verdict_is_recorded_only_on_the_verifying_its_verification_entered(db: jobs_database.Database) -> None:
    # V1 outlives its visibility: V2 is started beside it (a redelivery, the sweep), on the same entry. Either may
    # judge that entry, the first to end; a verdict on an entry the run has left is refused: V1's, on an hour-old
    # listing, moved a run a sync had sent copying again to verified, and the sync's copy never got its own.
    _, [run_id] = copied_run(db)
    v1 = jobs_verdicts.start_verify(db, run_id)
    v2 = jobs_verdicts.start_verify(db, run_id)
    assert v1 is not None and v2 is not None
    entry = v1[0].verifying_since
    assert entry is not None and v2[0].verifying_since == entry

    def verdict(by: str, started: Any) -> None:
        jobs_verdicts.finish_verify(db, run_id, "ns0", {"passed": True, "by": by}, True, by, started_at=started)

    verdict("v1", entry)  # the first to end, however long it took
    with pytest.raises(StateError, match="moved on since this verification started"):
        verdict("v2", entry)
    [batch_id] = jobs_sync_rollback.start_sync(db, run_id, [["b"]], "tester")
    with pytest.raises(StateError, match="moved on since this verification started"):
        verdict("v2", entry)  # the run is copying
    assert jobs_batches.start_batch(db, batch_id, "w") is not None
    jobs_batches.finish_batch(db, batch_id, vectors=1, missing=0, nbytes=1, targets=["ns0"], max_in_flight=4)
    v3 = jobs_verdicts.start_verify(db, run_id)
    assert v3 is not None and v3[0].verifying_since != entry
    with pytest.raises(StateError, match="moved on since this verification started"):
        verdict("v2", entry)  # verifying again, but another entry: its verdict judged the run before the sync
    verdict("v3", v3[0].verifying_since)

    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, (run.verification or {}).get("by")) == ("verified", "v3")


def test_the_hot_statements_compiled_ahead_change_nothing_and_are_found_compiled(db: jobs_database.Database) -> None:
    job_id, [run_id] = a_job(db)
    before = jobs_status.job_status(db, job_id)

    jobs_batches.compile_task_statements(db)

    assert jobs_status.job_status(db, job_id) == before
    with db.single_statement() as conn:
        result = conn.execute(pages._START_LISTING, {"run_id": run_id})
        assert result.context.cache_hit == conn.dialect.CACHE_HIT


def test_a_failed_batch_started_again_by_an_older_message_leaves_the_failed_count(db: jobs_database.Database) -> None:
    # A message sent before the batch failed (a duplicate `resume` sent, a redelivery) starts it again: its ids must
    # leave the run's failed count, or its finish leaves them counted failed, and a second failure counts them twice.
    _, run_id, batch_id = one_listed_batch(db)

    def failed() -> int:
        return jobs_and_runs.get_run(db, run_id).failed

    assert jobs_batches.start_batch(db, batch_id, "w") is not None
    jobs_batches.fail_batch(db, batch_id, "503", "w")
    assert failed() == 2
    assert jobs_batches.start_batch(db, batch_id, "w") is not None  # the older message
    assert failed() == 0
    jobs_batches.fail_batch(db, batch_id, "503 again", "w")
    assert failed() == 2
    assert jobs_batches.start_batch(db, batch_id, "w") is not None
    jobs_batches.finish_batch(db, batch_id, vectors=2, missing=0, nbytes=8, targets=["ns0"], max_in_flight=4)
    run = jobs_and_runs.get_run(db, run_id)
    assert (run.state, run.copied, run.failed) == ("copied", 2, 0)


def test_a_redelivery_that_finds_its_batch_running_counts_a_lost_attempt_until_retry(
    db: jobs_database.Database,
) -> None:
    # Only a redelivered message whose batch is still `running` counts: its worker died before ending the batch. A
    # first delivery, Celery's retry after an outage (a new message) and a redelivery of a batch that ended count
    # nothing; `nsmigrate retry` (failed → queued) starts the count again.
    job_id, run_id, batch_id = one_listed_batch(db)

    def start(redelivered: bool) -> int:
        work = jobs_batches.start_batch(db, batch_id, "w", redelivered=redelivered)
        assert work is not None
        return work.lost_attempts

    assert start(redelivered=True) == 0  # queued: nothing ran it before (a prefetched message of a killed worker)
    assert start(redelivered=False) == 0  # running, but a new message: Celery's retry after an outage
    assert start(redelivered=True) == 1
    assert start(redelivered=True) == 2
    jobs_batches.fail_batch(db, batch_id, "its worker died twice", "w")
    with db.transaction() as s:
        assert s.get(Batch, batch_id).lost_attempts == 2  # type: ignore[union-attr]
    assert start(redelivered=True) == 2  # failed, not running: nothing died in it since
    jobs_batches.fail_batch(db, batch_id, "again", "w")
    assert jobs_batches.requeue_failed(db, job_id) == [(run_id, batch_id)]
    assert start(redelivered=True) == 0
    assert start(redelivered=True) == 1


def test_a_cleanup_that_finds_an_original_holding_nothing_now_clears_what_an_earlier_one_recorded(
    db: jobs_database.Database,
) -> None:
    # An earlier cleanup recorded "x" holding an old lineage, but did not delete it (written since its proof); the
    # next one deletes "x" as it is now, holding nothing: a rollback must not give the old value back.
    _, [run_id] = a_job(db)
    jobs_sync_rollback.record_held_metadata(db, run_id, ["x", "y"], {"x": {"migrated_from": "legacy/ns"}})
    assert jobs_sync_rollback.held_metadata(db, run_id, ["x", "y"]) == {"x": {"migrated_from": "legacy/ns"}}

    jobs_sync_rollback.record_held_metadata(db, run_id, ["x"], {})

    assert jobs_sync_rollback.held_metadata(db, run_id, ["x", "y"]) == {}


def test_an_erased_place_takes_what_a_cleanup_held_of_its_records_and_nothing_else(
    db: jobs_database.Database,
) -> None:
    # What a cleanup recorded of the originals (their values under the enrichment's keys) goes with their copies:
    # the job table keeps ids, never what a record says. Another namespace's record of the same id keeps its own.
    _, [ns0, ns1] = a_job(db, namespaces=2)
    jobs_sync_rollback.record_held_metadata(db, ns0, ["x", "y"], {"x": {"migrated_from": "legacy/a"}, "y": {"k": 1}})
    jobs_sync_rollback.record_held_metadata(db, ns1, ["x"], {"x": {"migrated_from": "legacy/b"}})
    place = {"kind": "records", "store": "dst", "store_spec": None, "namespace": "ns0", "planned": 1}
    erasure_id = jobs_erasure.create_erasure(db, "erase-a.1", Subject("a.1").to_json(), [place])
    [row] = jobs_erasure.places_of(db, erasure_id)
    jobs_erasure.add_erased_ids(db, row.id, ["x"])

    jobs_erasure.finish_place(db, row.id, erased=1, verification={"passed": True})

    assert jobs_sync_rollback.held_metadata(db, ns0, ["x", "y"]) == {"y": {"k": 1}}
    assert jobs_sync_rollback.held_metadata(db, ns1, ["x"]) == {"x": {"migrated_from": "legacy/b"}}

    # A namespace wholly theirs names at most a sample of its ids: every row of the runs of that namespace goes.
    whole = {"kind": "namespace", "store": "dst", "store_spec": None, "namespace": "ns1", "planned": 50_000}
    [whole_row] = jobs_erasure.places_of(
        db, jobs_erasure.create_erasure(db, "erase-b", Subject("b").to_json(), [whole])
    )
    jobs_erasure.finish_place(db, whole_row.id, erased=50_000, verification={"passed": True})
    assert jobs_sync_rollback.held_metadata(db, ns1, ["x"]) == {}
    assert jobs_sync_rollback.held_metadata(db, ns0, ["y"]) == {"y": {"k": 1}}
