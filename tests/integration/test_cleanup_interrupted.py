"""A cleanup stopped part-way counts every id it may have deleted (the namespace's only copies are then in the
target, and `sync --propagate-deletes` must know it). Ctrl-C during `nsmigrate cleanup` stops it between two chunks
of deletes, never inside one: the run goes back to its verdict, and `nsmigrate cleanup` takes it up again. Before,
the KeyboardInterrupt left the run `cleaning` with nothing counted, and `cleanup` then refused it ("not verified").

Real services in this process: the job table in Postgres, Redis, the local Pinecone data plane through the real SDK;
the command runs through typer's CliRunner, and the SIGINT is a real signal to this process."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence

import pytest
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import RetryableError
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.messaging.task_names import lock_key
from nsmigrate.orchestrator.models import CLEANUP_WORKER_LOST, NamespaceRun, RunState
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning
from nsmigrate.workers.steps.proving import PROOF_CHUNK_IDS
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pgvector.store import PgvectorStore
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import (
    DIM,
    KEY_ENV,
    URL_ENV,
    copied_job,
    make_records,
    make_spec,
)
from tests.integration.test_verify_cleanup import ctx as ctx
from tests.polling import wait_until

#: Three chunks of deletes (1,000 ids each): Ctrl-C lands after the first and before the last.
VECTORS = 3000


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


def test_ctrl_c_stops_a_cleanup_between_chunks_with_every_delete_counted(
    ctx: WorkerContext, sandbox: PineconeSandbox, job_table_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-cleanup-interrupted-test")
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(VECTORS)})
    assert job.verify()["passed"]
    # Each request to the source takes a while, so a chunk's deletes are still to come when Ctrl-C is pressed.
    sandbox.set_faults("src", Faults(latency_ms=300))

    def press_ctrl_c_once_some_are_deleted() -> None:
        wait_until(lambda: sandbox.count("src", "alpha") < VECTORS, what="the first chunk deleted", timeout_s=120)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_once_some_are_deleted, daemon=True)
    presser.start()
    env = {"NSMIGRATE_DATABASE_URL": job_table_url, "NSMIGRATE_REDIS_URL": redis_url}
    stopped = CliRunner().invoke(app, ["cleanup", str(job.job_id), "--yes"], env=env)
    presser.join()

    left = sandbox.count("src", "alpha")
    assert stopped.exit_code == 130, (stopped.output, stopped.exception)
    assert stopped.stderr.strip() == (
        f"interrupted: stopped the cleanup of job {job.job_id} between two chunks: every id it deleted is recorded "
        f"and each namespace is back to its verdict — `nsmigrate cleanup {job.job_id} --yes` takes it up again"
    )
    assert 0 < left < VECTORS and (VECTORS - left) % 1000 == 0  # whole chunks: none cut in the middle
    run = jobs_and_runs.get_run(ctx.db, job.runs["alpha"])
    assert run.state == "verified" and run.deleted_by_cleanup == VECTORS - left
    assert f"stopped by Ctrl-C after deleting {VECTORS - left} ids" in str(job.events("cleanup_refused")[-1])

    sandbox.set_faults("src", Faults())
    again = CliRunner().invoke(app, ["cleanup", str(job.job_id), "--yes"], env=env)

    assert again.exit_code == 0, (again.output, again.exception)
    assert sandbox.count("src", "alpha") == 0 and sandbox.count("dst", "alpha") == VECTORS
    assert jobs_and_runs.get_run(ctx.db, job.runs["alpha"]).state == "cleaned"


def test_a_delete_whose_answer_is_lost_is_counted_so_no_sync_deletes_the_only_copies(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk's delete reaches Pinecone and is applied, but its answer is lost (a timeout, a reset, retries
    run out). Counted as nothing deleted, the run went back to `verified` as if untouched, and a later
    `sync --propagate-deletes` took the ids missing from the source for deletions to propagate: it deleted their
    copies, the only ones left."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cleanup-interrupted-test")
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(40)})
    assert job.verify()["passed"]
    [run] = jobs_and_runs.runs_of(ctx.db, job.job_id)
    delete = GuardedStore.delete

    def applied_but_unanswered(self: GuardedStore, namespace: str, ids: Sequence[str]) -> None:
        delete(self, namespace, ids)
        raise RetryableError("Pinecone delete did not complete: timed out", status=None)

    monkeypatch.setattr(GuardedStore, "delete", applied_but_unanswered)

    result = cleaning.cleanup_run(ctx, run.id, actor="tester")

    assert result["action"] == "failed", result
    assert sandbox.count("src", "alpha") == 0 and sandbox.count("dst", "alpha") == 40  # the copies are the only ones
    after = jobs_and_runs.get_run(ctx.db, run.id)
    assert after.deleted_by_cleanup == 40
    refusal = jobs_sync_rollback.propagate_refusal(ctx.db, run.id)
    assert refusal is not None and "earlier cleanup deleted 40" in refusal


def test_a_postgres_delete_whose_commit_is_unanswered_counts_the_rows_its_retry_finds_gone(
    ctx: WorkerContext, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's conditional delete commits in Postgres, but the connection drops before its answer: the store retries,
    and the retry finds none of the proved row versions left to take. Called "written since its proof: kept", those
    ids were counted as no deletion, the run went to `verify_failed` as if they were still in the source, and a later
    `sync --propagate-deletes` deleted their copies, the only ones left. Rows gone count as deleted."""
    monkeypatch.setenv(URL_ENV, database_url)
    common = {"kind": "pgvector", "layout": "table_per_namespace", "database_url_env": URL_ENV, "dimension": DIM}
    job = copied_job(
        ctx, make_spec(({**common, "table": "src"}, {**common, "table": "dst"})), {"alpha": make_records(40)}
    )
    assert job.verify()["passed"]
    [run] = jobs_and_runs.runs_of(ctx.db, job.job_id)
    delete_unchanged = PgvectorStore.delete_unchanged
    took: list[int] = []

    def committed_but_unanswered(self: PgvectorStore, namespace: str, versions: dict[str, str]) -> list[str]:
        deleted = delete_unchanged(self, namespace, versions)
        took.append(len(deleted))
        if len(took) == 1:  # what the store makes of a connection lost at COMMIT (`_errors`)
            raise RetryableError("pgvector delete failed: server closed the connection unexpectedly", status=None)
        return deleted

    monkeypatch.setattr(PgvectorStore, "delete_unchanged", committed_but_unanswered)

    result = cleaning.cleanup_run(ctx, run.id, actor="tester")

    assert took == [40, 0], took  # the first attempt took every row; its retry found none left
    assert job.source.fetch("alpha", [r.id for r in make_records(40)]) == []
    assert len(job.target.fetch("alpha", [r.id for r in make_records(40)])) == 40  # the copies: the only ones
    assert (result["action"], result["count"]) == ("deleted", 40), result
    assert jobs_and_runs.get_run(ctx.db, run.id).state == "cleaned"
    assert jobs_sync_rollback.propagate_refusal(ctx.db, run.id) is not None  # no sync deletes those copies


def test_a_run_left_cleaning_by_a_dead_cleanup_is_taken_up_once_its_lock_expires(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleanup deletes its first chunk and its worker dies: the run stays `cleaning`, part of its source gone. Before,
    every later cleanup (the task's redelivery, `nsmigrate cleanup`) refused it as "not verified", and the job never
    finished. A cleanup that finds the run cleaning waits for the run's cleanup lock: while a live cleanup keeps it,
    the run is left to that one; once the dead one's has expired, the run is taken up, every id left proved."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cleanup-interrupted-test")
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update={"cleanup_lock_ttl_s": 1.0}))
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(VECTORS)})
    assert job.verify()["passed"]
    run_id = job.runs["alpha"]
    run, _ = jobs_verdicts.start_cleanup(ctx.db, run_id)  # what cleaning._delete does, up to its first chunk
    source = ctx.guarded(job.spec.source, job.spec.rate)
    first_chunk = [r.id for r in make_records(VECTORS)][:PROOF_CHUNK_IDS]
    assert cleaning._proof(ctx, run, job.spec, source, first_chunk, delete=True).proven == first_chunk

    with cleaning.cleanup_lock(ctx, run_id, wait=False) as held:  # a live cleanup of it, elsewhere
        assert held
        refused = cleaning.cleanup_run(ctx, run_id, actor="tester")
    assert refused["action"] == "under_way" and "another cleanup of this namespace is under way" in refused["reason"]
    assert jobs_and_runs.get_run(ctx.db, run_id).state == "cleaning"
    assert sandbox.count("src", "alpha") == VECTORS - PROOF_CHUNK_IDS

    # The dead one's lock, as its worker left it: refreshed no more, it expires within the lock's time to live.
    ctx.redis.set(lock_key(f"cleanup:{run_id}"), "dead-worker", px=500)
    taken_up = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert (taken_up["action"], taken_up["count"]) == ("deleted", VECTORS - PROOF_CHUNK_IDS), taken_up
    assert sandbox.count("src", "alpha") == 0 and sandbox.count("dst", "alpha") == VECTORS
    cleaned = jobs_and_runs.get_run(ctx.db, run_id)
    assert cleaned.state == "cleaned" and cleaned.cleanup[CLEANUP_WORKER_LOST], cleaned.cleanup
    [event] = job.events("cleanup_taken_up")
    assert "stopped with its worker" in str(event)
    assert jobs_sync_rollback.propagate_refusal(ctx.db, run_id) is not None


def test_a_run_taken_up_after_a_dead_cleanup_keeps_its_source_deletions_known_until_cleaned(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken up, the run is `verify_failed` until its cleanup ends: whatever the dead cleanup deleted has its only
    copies in the target, so no `sync --propagate-deletes` may delete them, and a cleanup may take the run up again
    (also after a refusal by id, whose record replaces the run's cleanup record)."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cleanup-interrupted-test")
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(40)})
    assert job.verify()["passed"]
    run_id = job.runs["alpha"]
    jobs_verdicts.start_cleanup(ctx.db, run_id)

    taken = jobs_verdicts.take_up_lost_cleanup(ctx.db, run_id, "tester")
    jobs_verdicts.start_cleanup(ctx.db, run_id)
    jobs_verdicts.abort_cleanup(
        ctx.db, run_id, "1 id refused", "tester", back_to=RunState.VERIFY_FAILED, detail={"refused": 1}
    )

    assert taken.state == "verify_failed" and taken.cleanup_stopped_part_way
    after = jobs_and_runs.get_run(ctx.db, run_id)
    assert after.state == "verify_failed" and after.cleanup_stopped_part_way and jobs_verdicts.cleanable(after)
    refusal = jobs_sync_rollback.propagate_refusal(ctx.db, run_id)
    assert refusal is not None and "its worker lost" in refusal


def test_a_rollback_cleaning_its_copies_is_never_taken_up_as_a_dead_cleanup(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback's runs go through `cleaning` too (its copies deleted), under no cleanup lock: a `nsmigrate cleanup`
    of the rollback job must not take such a run for one a dead cleanup left, nor touch it."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cleanup-interrupted-test")
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(10)})
    assert job.verify()["passed"]
    rollback_id, _ = jobs_sync_rollback.open_rollback(ctx.db, job.job_id, "tester")
    [undoing] = jobs_and_runs.runs_of(ctx.db, rollback_id)
    with ctx.db.transaction() as s:  # the rollback deleting the copies of alpha
        s.get(NamespaceRun, undoing.id).state = RunState.CLEANING

    result = cleaning.cleanup_run(ctx, undoing.id, actor="tester")

    assert result["action"] == "refused", result
    after = jobs_and_runs.get_run(ctx.db, undoing.id)
    assert after.state == "cleaning" and not after.cleanup_stopped_part_way
    assert sandbox.count("src", "alpha") == 10 and sandbox.count("dst", "alpha") == 10


def test_nsmigrate_cleanup_says_it_waits_for_a_dead_cleanups_lock_and_takes_the_namespace_up(
    ctx: WorkerContext, sandbox: PineconeSandbox, job_table_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's `nsmigrate cleanup` of a job whose cleanup task died mid-delete: the command says why it waits
    (up to the lock's time to live) before the namespace is taken up and its source deleted."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cleanup-interrupted-test")
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(20)})
    assert job.verify()["passed"]
    jobs_verdicts.start_cleanup(ctx.db, job.runs["alpha"])  # the dead cleanup's work, up to its first chunk
    ctx.redis.set(lock_key(f"cleanup:{job.runs['alpha']}"), "dead-worker", px=500)  # refreshed no more

    env = {
        "NSMIGRATE_DATABASE_URL": job_table_url,
        "NSMIGRATE_REDIS_URL": redis_url,
        "NSMIGRATE_CLEANUP_LOCK_TTL_S": "2",
    }
    result = CliRunner().invoke(app, ["cleanup", str(job.job_id), "--yes"], env=env)

    assert result.exit_code == 0, (result.output, result.exception)
    lines = " ".join(result.output.split())
    assert "alpha: a cleanup of it is under way, or its worker died: waiting up to 2 s for its lock" in lines
    assert "alpha: deleted 20" in lines
    assert sandbox.count("src", "alpha") == 0 and sandbox.count("dst", "alpha") == 20


def test_a_taken_up_cleanup_deletes_nothing_of_a_chunk_whose_copy_is_gone(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken up after its worker died, a cleanup asks no fingerprint of the source (it lacks what the dead one
    deleted), so the proof at the moment of deletion is all that guards the rest: one id left whose copy was deleted
    from the target since, and nothing more is deleted; the run is `verify_failed` with that id named, and still
    marked, so no sync propagates the dead cleanup's deletes."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cleanup-interrupted-test")
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update={"cleanup_lock_ttl_s": 1.0}))
    stores = tuple({"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst"))
    ids = [r.id for r in make_records(PROOF_CHUNK_IDS + 20)]
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(PROOF_CHUNK_IDS + 20)})
    assert job.verify()["passed"]
    run_id = job.runs["alpha"]
    run, _ = jobs_verdicts.start_cleanup(ctx.db, run_id)
    source = ctx.guarded(job.spec.source, job.spec.rate)
    assert cleaning._proof(ctx, run, job.spec, source, ids[:PROOF_CHUNK_IDS], delete=True).proven  # then it died
    job.target.delete("alpha", [ids[-1]])  # a copy of an id left, deleted since

    result = cleaning.cleanup_run(ctx, run_id, actor="tester")

    assert result["action"] == "refused", result
    assert sandbox.count("src", "alpha") == 20  # the 20 left, none deleted
    after = jobs_and_runs.get_run(ctx.db, run_id)
    assert after.state == "verify_failed" and after.cleanup_stopped_part_way, after.cleanup
    assert ids[-1] in str(job.events("cleanup_refused")[-1])
    assert jobs_sync_rollback.propagate_refusal(ctx.db, run_id) is not None
