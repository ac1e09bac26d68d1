"""Nothing lost: delta sync of live writes and rollback, on the real stack.

The forward jobs run on real `nsmigrate worker` processes (Redis, Postgres, the Pinecone SDK against the local data
plane); ``sync`` and ``rollback`` are driven the way the CLI drives them: inline with a real ``WorkerContext`` whose
dispatcher sends the sync's copy batches to those workers. Every check reads the data itself (``snapshot``), not
only the job table's word for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import JobKind, JobState, RunState
from nsmigrate.orchestrator.records.namespaces import parse_namespace, twin_namespace
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.steps.syncing import sync_run
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.seed import SeedData, seed_dataset, write_twins_csv
from nsmigrate_sandbox.stack import Stack
from tests.fleet_jobs import start_job
from tests.polling import wait_for_job, wait_until

DIM = 8
ONE = "one"  # creator migration inside one index (source == target)

Snapshot = dict[str, dict[str, tuple[np.ndarray, dict[str, Any] | None]]]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM), IndexSpec(ONE, 16)]


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """A stack of the test's own with one worker for every queue the forward jobs and the sync use (the pool is not
    what they test). Not the module's shared stack: a test's rollback and sync tasks left on a shared worker could
    still write into the next test's index, and a forward job's run would then end verify_failed."""
    stack.start_worker("list,copy,verify", 4, pool="threads")
    return stack


@pytest.fixture
def ctx(stack: Stack, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    """What `nsmigrate sync/rollback` run with: a real WorkerContext (its dispatcher sends to the stack's workers)."""
    return worker_context(stack.database_url, stack.redis_url)


# ---------------------------------------------------------------------------------------------------------- helpers


def wait_final(db: jobs_database.Database, job_id: int, timeout_s: float = 60) -> JobStatus:
    """Poll until every run is verified or verify_failed (a deadline, not a fixed sleep)."""

    def finished_verifying(status: JobStatus) -> bool:
        return all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in status.runs)

    return wait_for_job(db, job_id, finished_verifying, timeout_s=timeout_s, interval_s=0.1)


def reverify(db: jobs_database.Database, dispatcher: Dispatcher, job_id: int) -> JobStatus:
    """`nsmigrate verify`: queue verification of every run and wait for new reports (not the old verdicts)."""
    before = {ns: report.get("checked_at") for ns, report in reports(db, job_id).items()}
    launch.request_verification(db, dispatcher, job_id)
    wait_until(
        lambda: reports(db, job_id),
        what=f"new verification reports of job {job_id}",
        done=lambda now: all(report.get("checked_at") != before[ns] for ns, report in now.items()),
        timeout_s=60,
    )
    return wait_final(db, job_id)


def states(status: JobStatus) -> dict[str, str]:
    return {r.source_namespace: r.state for r in status.runs}


def reports(db: jobs_database.Database, job_id: int) -> dict[str, dict[str, Any]]:
    return {r.source_namespace: r.verification or {} for r in jobs_and_runs.runs_of(db, job_id)}


def events(db: jobs_database.Database, job_id: int, action: str) -> list[dict[str, Any]]:
    return [e for e in jobs_status.events_of(db, job_id) if e["action"] == action]


def cli(stack: Stack, *args: str) -> Result:
    """`nsmigrate …` in-process (typer's CliRunner) against this stack; not a terminal, like a script."""
    return CliRunner().invoke(app, list(args), env=stack.env())


def small_spec(stack: Stack, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "small-copy",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("dst")},
        "batch_size": 20,
        "verify": {"count_timeout_s": 2},
    }
    spec.update(overrides)
    return spec


def load_small(stack: Stack, namespaces: int = 2, per_namespace: int = 60) -> None:
    rng = np.random.default_rng(1)
    for n in range(namespaces):
        stack.pinecone.load(
            "src",
            f"ns{n}",
            [(f"v{n}-{i:04d}", rng.random(DIM).tolist(), {"n": n, "i": i}) for i in range(per_namespace)],
        )


def small_seed() -> SeedData:
    """The seeds' shape, scaled down: a default namespace routed by twin_id metadata plus UUID twin namespaces."""
    return seed_dataset(dimension=16, n_vectors=120, n_twin_namespaces=5, default_count=40, n_creators=3)


def creator_spec(stack: Stack, seed: SeedData, **overrides: Any) -> dict[str, Any]:
    twins_csv = write_twins_csv(seed.twins, stack.workdir / "twins.csv")
    spec: dict[str, Any] = {
        "name": "creator-namespaces",
        "source": {"kind": "pinecone", "host": stack.pinecone.host(ONE)},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(ONE)},
        "routing": {"mode": "creator", "creators": {"source": "file", "path": str(twins_csv)}},
        "batch_size": 10,
        "verify": {"count_timeout_s": 2},
    }
    spec.update(overrides)
    return spec


def assert_same(actual: Snapshot, expected: Snapshot) -> None:
    """Exactly the same namespaces, ids, float32 values and metadata."""
    assert sorted(actual) == sorted(expected)
    for ns, records in expected.items():
        assert sorted(actual[ns]) == sorted(records), ns
        for id_, (values, metadata) in records.items():
            got_values, got_metadata = actual[ns][id_]
            assert np.array_equal(got_values, values), (ns, id_)
            assert got_metadata == metadata, (ns, id_, got_metadata, metadata)


def expected_targets(seed: SeedData) -> list[str]:
    """The creator namespaces the seed migrates into (computed from the seed, not from the code under test)."""
    return sorted(twin_namespace(creator, twin) for twin, creator in seed.twins.items())


def creator_namespaces(snapshot: Snapshot) -> list[str]:
    return sorted(ns for ns in snapshot if parse_namespace(ns).kind == "twin")


def migrated(stack: Stack, seed: SeedData, **overrides: Any) -> tuple[jobs_database.Database, int, Snapshot]:
    """Load the seed into one index, snapshot it, migrate it into creator namespaces; all runs verified."""
    seed.load_into(stack.pinecone, ONE)
    before = stack.pinecone.snapshot(ONE)
    db, _, job_id = start_job(stack, creator_spec(stack, seed, **overrides))
    status = wait_final(db, job_id)
    assert set(states(status).values()) == {RunState.VERIFIED}, status
    assert len(creator_namespaces(stack.pinecone.snapshot(ONE))) == len(seed.twins)
    return db, job_id, before


# -------------------------------------------------------------------------------------------------------------- sync


def test_live_writes_fail_verification_and_sync_copies_exactly_the_new_and_changed_ids(
    stack: Stack, ctx: WorkerContext
) -> None:
    load_small(stack)
    db, dispatcher, job_id = start_job(stack, small_spec(stack))
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}

    # Writes while the migration is live: 7 new ids and 3 changed vectors in ns0, 2 changed metadata in ns1.
    rng = np.random.default_rng(2)
    stack.pinecone.load("src", "ns0", [(f"late-{i}", rng.random(DIM).tolist(), {"n": 0}) for i in range(7)])
    stack.pinecone.load("src", "ns0", [(f"v0-{i:04d}", rng.random(DIM).tolist(), {"n": 0, "i": i}) for i in (1, 2, 3)])
    stack.pinecone.load(
        "src", "ns1", [(f"v1-{i:04d}", [0.5] * DIM, {"n": 1, "i": i, "edited": True}) for i in (10, 11)]
    )
    status = reverify(db, dispatcher, job_id)

    # Loudly failed, not passed.
    assert states(status) == {"ns0": RunState.VERIFY_FAILED, "ns1": RunState.VERIFY_FAILED}
    ns0, ns1 = reports(db, job_id)["ns0"], reports(db, job_id)["ns1"]
    assert ns0["missing_count"] == 7 and ns0["content_mismatch_count"] == 3, ns0["summary"]
    assert ns1["missing_count"] == 0 and ns1["content_mismatch_count"] == 2, ns1["summary"]

    results = {r.source_namespace: sync_run(ctx, r.id, actor="tester") for r in jobs_and_runs.runs_of(db, job_id)}

    assert (results["ns0"]["new"], results["ns0"]["changed"], results["ns0"]["to_copy"]) == (7, 3, 10)
    assert (results["ns1"]["new"], results["ns1"]["changed"], results["ns1"]["to_copy"]) == (0, 2, 2)
    assert results["ns0"]["unchanged"] == 57 and results["ns0"]["deleted_in_source"] == 0
    sync_events = {e["detail"]["namespace"]: e["detail"] for e in events(db, job_id, "sync")}
    assert sync_events["ns0"]["to_copy"] == 10 and sync_events["ns0"]["batches"] == 1
    assert sync_events["ns1"]["changed"] == 2 and sync_events["ns1"]["changed_examples"][0]["id"] == "v1-0010"
    status = wait_final(db, job_id)
    assert set(states(status).values()) == {RunState.VERIFIED}, status
    src, dst = stack.pinecone.snapshot("src"), stack.pinecone.snapshot("dst")
    for ns in ("ns0", "ns1"):
        assert sorted(dst[ns]) == sorted(src[ns])
        for id_, (values, _) in src[ns].items():
            assert np.array_equal(dst[ns][id_][0], values)
    assert dst["ns1"]["v1-0010"][1]["edited"] is True

    # Deletes in the source are reported, not propagated by default …
    stack.pinecone.service("src").store.delete("ns1", ["v1-0020", "v1-0021"])
    stack.pinecone.settle("src")  # deleted before the sync: its scan's listing shows it
    [result] = [sync_run(ctx, r.id, actor="tester") for r in jobs_and_runs.runs_of(db, job_id, "ns1")]
    assert result["deleted_in_source"] == 2 and result["deleted_in_source_ids"] == ["v1-0020", "v1-0021"]
    assert result["to_copy"] == 0 and result["deleted"] == 0
    assert stack.pinecone.count("dst", "ns1") == 60
    assert states(wait_final(db, job_id))["ns1"] == RunState.VERIFY_FAILED  # the target holds 2 extra ids
    # … and only with --propagate-deletes.
    [result] = [
        sync_run(ctx, r.id, propagate_deletes=True, actor="tester") for r in jobs_and_runs.runs_of(db, job_id, "ns1")
    ]
    assert result["deleted"] == 2
    assert states(wait_final(db, job_id))["ns1"] == RunState.VERIFIED
    assert stack.pinecone.count("dst", "ns1") == 58
    # What the metrics exporter serves as nsmigrate_job_sync: the four syncs' counts, summed from the job table.
    assert jobs_status.sync_totals(db, job_id) == {
        "syncs": 4,
        "new": 7,
        "changed": 5,
        "deleted_in_source": 4,
        "deleted": 2,
    }


def test_propagated_deletes_keep_what_another_source_merged_into_the_namespace_holds(
    stack: Stack, ctx: WorkerContext
) -> None:
    """ns0 and ns1 merged into one target namespace. A record the application moved from ns0 to ns1 (same id) is
    gone from ns0, but its copy there is ns1's: `--propagate-deletes` of ns0 keeps it and deletes only what neither
    source holds. Once ns1's cleanup deleted its source, an id ns0 lacks may be ns1's only copy: refused."""
    load_small(stack)
    merge = {"mode": "explicit", "map": {"ns0": "merged", "ns1": "merged"}}
    db, _, job_id = start_job(stack, small_spec(stack, routing=merge, cleanup={"mode": "manual"}))
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    values, metadata = stack.pinecone.snapshot("src")["ns0"]["v0-0000"]
    stack.pinecone.load("src", "ns1", [("v0-0000", values.tolist(), metadata)])
    stack.pinecone.service("src").store.delete("ns0", ["v0-0000", "v0-0001"])  # moved, and deleted
    stack.pinecone.settle("src")
    runs = {r.source_namespace: r.id for r in jobs_and_runs.runs_of(db, job_id)}

    result = sync_run(ctx, runs["ns0"], propagate_deletes=True, actor="tester")

    assert result["action"] == "synced" and result["deleted_in_source"] == 2, result
    assert result["deleted"] == 1 and result["kept_present"] == 1, result
    merged = stack.pinecone.snapshot("dst")["merged"]
    assert "v0-0000" in merged and "v0-0001" not in merged and len(merged) == 119

    wait_final(db, job_id)
    sync_run(ctx, runs["ns1"], actor="tester")  # ns1's copy of the moved record, then its source cleaned up
    wait_final(db, job_id)
    cleaned = cleaning.cleanup_run(ctx, runs["ns1"], actor="tester")
    assert cleaned["action"] == "deleted" and stack.pinecone.count("src", "ns1") == 0, cleaned
    stack.pinecone.service("src").store.delete("ns0", ["v0-0002"])
    stack.pinecone.settle("src")

    refused = sync_run(ctx, runs["ns0"], propagate_deletes=True, actor="tester")

    assert refused["action"] == "refused", refused
    assert "a cleanup of source namespace 'ns1'" in refused["reason"] and "'merged'" in refused["reason"], refused
    merged = stack.pinecone.snapshot("dst")["merged"]
    assert {"v0-0000", "v0-0002"} <= set(merged) and len(merged) == 119


def test_sync_repairs_silently_dropped_writes(stack: Stack, ctx: WorkerContext) -> None:
    load_small(stack)
    # Upserts acknowledge everything but store 90 %: only verification can tell.
    db, _, job_id = start_job(
        stack, small_spec(stack), after_plan=lambda: stack.pinecone.set_faults("dst", Faults(drop_fraction=0.1))
    )
    status = wait_final(db, job_id)
    stack.pinecone.set_faults("dst", Faults())

    assert set(states(status).values()) == {RunState.VERIFY_FAILED}
    missing = {ns: report["missing_count"] for ns, report in reports(db, job_id).items()}
    assert sum(missing.values()) == 12  # 2 of every 20-vector upsert

    result = cli(stack, "sync", str(job_id), "--wait")

    assert result.exit_code == 0, result.output  # --wait: 0 once every namespace verified again
    for ns, n in missing.items():
        assert f"{ns}: {n} new, 0 changed → {n} to copy" in result.output
    counts = {e["detail"]["namespace"]: e["detail"] for e in events(db, job_id, "sync")}
    assert {ns: c["new"] for ns, c in counts.items()} == missing
    assert all(c["changed"] == 0 for c in counts.values())
    assert set(states(jobs_status.job_status(db, job_id)).values()) == {RunState.VERIFIED}
    assert stack.pinecone.count("dst") == 120

    # Across two indexes, a rollback of the synced job removes every copy (the first copy's and the sync's) and
    # leaves the source as it is.
    source = stack.pinecone.snapshot("src")
    result = rollback_job(ctx, job_id, actor="tester")
    assert result["action"] == "rolled_back", result
    assert stack.pinecone.snapshot("dst") == {}
    assert_same(stack.pinecone.snapshot("src"), source)


def test_sync_refuses_a_cleaned_run(stack: Stack, ctx: WorkerContext) -> None:
    load_small(stack, namespaces=1, per_namespace=20)
    db, _, job_id = start_job(stack, small_spec(stack, cleanup={"mode": "manual"}))
    wait_final(db, job_id)
    [run] = jobs_and_runs.runs_of(db, job_id)
    assert cleaning.cleanup_run(ctx, run.id, actor="tester")["action"] == "deleted"

    result = sync_run(ctx, run.id, actor="tester")

    assert result["action"] == "refused" and "deleted by cleanup" in result["reason"]
    assert events(db, job_id, "sync_refused")


# ---------------------------------------------------------------------------------------------------------- rollback


def test_rollback_before_cleanup_needs_no_copy_back_and_restores_the_index_exactly(
    stack: Stack, ctx: WorkerContext
) -> None:
    seed = small_seed()
    db, job_id, before = migrated(stack, seed)
    migrated_snapshot = stack.pinecone.snapshot(ONE)
    assert cli(stack, "rollback", str(job_id)).exit_code == 2  # no --yes, no terminal: refused, nothing done
    dry = cli(stack, "rollback", str(job_id), "--dry-run")
    assert dry.exit_code == 0 and "nothing changed" in dry.output, dry.output
    assert_same(stack.pinecone.snapshot(ONE), migrated_snapshot)

    cli_result = cli(stack, "rollback", str(job_id), "--yes")

    assert cli_result.exit_code == 0, cli_result.output
    assert f"job {job_id} rolled back" in cli_result.output
    rollbacks = [j["job_id"] for j in jobs_status.list_jobs(db) if j["kind"] == JobKind.ROLLBACK]
    [rollback_job_id] = [j for j in rollbacks if jobs_and_runs.find_job(db, j).parent_job_id == job_id]
    for ns in expected_targets(seed):
        assert f"removed {ns}: delete_namespace" in cli_result.output
    assert_same(stack.pinecone.snapshot(ONE), before)
    # The job table knows: a finished rollback job of the forward job, every run cleaned; the forward job is
    # cancelled so no cleanup of it can follow.
    rollback = jobs_status.job_status(db, rollback_job_id)
    assert (rollback.kind, rollback.state) == (JobKind.ROLLBACK, JobState.FINISHED)
    assert {r.state for r in rollback.runs} == {RunState.CLEANED}
    assert all(r.verified_ok for r in rollback.runs)
    forward = jobs_status.job_status(db, job_id)
    assert forward.state == JobState.CANCELLED and {r.state for r in forward.runs} == {RunState.CANCELLED}
    assert events(db, job_id, "rolled_back") and len(events(db, rollback_job_id, "targets_deleted")) == 6
    assert not events(db, rollback_job_id, "originals_restored")  # the originals were intact: no copy-back
    assert cleaning.cleanup_run(ctx, jobs_and_runs.runs_of(db, job_id)[0].id, actor="tester")["action"] == "refused"

    # Safe to run again: nothing left to do, nothing changes.
    assert rollback_job(ctx, job_id, actor="tester")["action"] == "already_rolled_back"
    assert_same(stack.pinecone.snapshot(ONE), before)


def test_rollback_after_cleanup_restores_the_originals_exactly_from_the_targets(
    stack: Stack, ctx: WorkerContext
) -> None:
    seed = small_seed()
    db, job_id, before = migrated(stack, seed, cleanup={"mode": "manual"})
    for run in jobs_and_runs.runs_of(db, job_id):
        assert cleaning.cleanup_run(ctx, run.id, actor="tester")["action"] == "deleted"
    after_cleanup = stack.pinecone.snapshot(ONE)
    assert sorted(after_cleanup) == creator_namespaces(after_cleanup)  # every original is gone

    result = rollback_job(ctx, job_id, actor="tester")

    assert result["action"] == "rolled_back", result
    assert sum(r["restored"] for r in result["runs"]) == seed.total
    # Exact, including the default namespace's twin_id metadata that the enrichment had overwritten.
    assert_same(stack.pinecone.snapshot(ONE), before)
    assert [e["detail"]["count"] for e in events(db, result["rollback_job_id"], "originals_restored")]


def test_rollback_after_cleanup_gives_back_what_the_originals_held_under_the_keys_the_enrichment_writes(
    stack: Stack, ctx: WorkerContext
) -> None:
    seed = small_seed()
    # Originals that already hold what the copy's enrichment writes (their creator, their twin, a constant), with
    # its values, or an earlier copy's lineage: their copies look the same as the others'; only the cleanup, which
    # sees both, can tell them apart.
    for ns, records in seed.namespaces.items():
        for i, (id_, values, metadata) in enumerate(records):
            twin = ns or metadata["twin_id"]
            creator = {"creator_id": seed.twins[twin], "twin_id": twin}
            held = [creator, {"twin_id": twin}, {"team": "search"}, {"migrated_from": "legacy/earlier"}, {}]
            records[i] = (id_, values, {**metadata, **held[i % len(held)]})
    db, job_id, before = migrated(stack, seed, cleanup={"mode": "manual"}, enrich={"constants": {"team": "search"}})
    for run in jobs_and_runs.runs_of(db, job_id):
        assert cleaning.cleanup_run(ctx, run.id, actor="tester")["action"] == "deleted"
    assert sorted(stack.pinecone.snapshot(ONE)) == creator_namespaces(stack.pinecone.snapshot(ONE))

    result = rollback_job(ctx, job_id, actor="tester")

    assert result["action"] == "rolled_back", result
    assert sum(r["restored"] for r in result["runs"]) == seed.total
    assert_same(stack.pinecone.snapshot(ONE), before)  # every key each original held, and none it did not


def test_rollback_after_cleanup_restores_no_outdated_original_of_a_record_rerouted_since_its_copy(
    stack: Stack, ctx: WorkerContext
) -> None:
    seed = small_seed()
    db, job_id, _ = migrated(stack, seed, cleanup={"mode": "manual"})
    # A record moves to another twin (its twin_id edited, its text too) and is synced there: its first copy stays in
    # the old twin's namespace, as sync leaves it.
    id_, values, metadata = seed.namespaces[""][0]
    moved = {**metadata, "twin_id": next(t for t in seed.twins if t != metadata["twin_id"]), "text": "edited"}
    stack.pinecone.load(ONE, "", [(id_, values, moved)])
    [default_run] = jobs_and_runs.runs_of(db, job_id, "")
    assert sync_run(ctx, default_run.id, actor="tester")["to_copy"] == 1
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    for run in jobs_and_runs.runs_of(db, job_id):
        assert cleaning.cleanup_run(ctx, run.id, actor="tester")["action"] == "deleted"

    result = rollback_job(ctx, job_id, actor="tester")

    assert result["action"] == "refused" and "copies in 2 namespaces" in result["reason"], result
    assert stack.pinecone.snapshot(ONE).get("", {}).get(id_, (None, None))[1] in (None, moved)  # never the old text


def test_rollback_refuses_when_the_originals_cannot_be_verified_and_deletes_nothing(
    stack: Stack, ctx: WorkerContext
) -> None:
    seed = small_seed()
    db, job_id, before = migrated(stack, seed, cleanup={"mode": "manual"})
    migrated_snapshot = stack.pinecone.snapshot(ONE)

    # 1. An original changed after the migration (and was not synced): which side is right is unknown.
    twin_ns = next(ns for ns in before if ns)
    changed_id = sorted(before[twin_ns])[0]
    stack.pinecone.load(ONE, twin_ns, [(changed_id, [0.25] * 16, before[twin_ns][changed_id][1])])

    result = rollback_job(ctx, job_id, actor="tester")

    assert result["action"] == "refused" and "nothing was deleted" in result["reason"]
    assert changed_id in result["reason"]
    now = stack.pinecone.snapshot(ONE)
    assert creator_namespaces(now) == creator_namespaces(migrated_snapshot)
    for ns in creator_namespaces(now):
        assert sorted(now[ns]) == sorted(migrated_snapshot[ns])
    assert {r.state for r in jobs_and_runs.runs_of(db, job_id)} == {RunState.VERIFIED}  # the forward job is untouched
    rollback_id = result["rollback_job_id"]
    assert RunState.VERIFY_FAILED in {r.state for r in jobs_status.job_status(db, rollback_id).runs}
    assert events(db, rollback_id, "rollback_refused")

    # 2. After cleanup, the copy-back's writes are silently dropped: the restored originals do not verify.
    stack.pinecone.load(ONE, twin_ns, [(changed_id, *before[twin_ns][changed_id])])
    for run in jobs_and_runs.runs_of(db, job_id):
        assert cleaning.cleanup_run(ctx, run.id, actor="tester")["action"] == "deleted"
    stack.pinecone.set_faults(ONE, Faults(drop_fraction=0.5))
    try:
        result = rollback_job(ctx, job_id, actor="tester")
    finally:
        stack.pinecone.set_faults(ONE, Faults())

    assert result["action"] == "refused" and "originals are missing" in result["reason"], result
    now = stack.pinecone.snapshot(ONE)
    for ns in creator_namespaces(migrated_snapshot):
        assert sorted(now[ns]) == sorted(migrated_snapshot[ns]), ns  # nothing deleted

    # 3. Run again once the fault is gone: the same rollback job resumes and completes, exactly.
    result = rollback_job(ctx, job_id, actor="tester")

    assert result["action"] == "rolled_back", result
    assert result["rollback_job_id"] == rollback_id
    assert_same(stack.pinecone.snapshot(ONE), before)
