"""A cleanup under cut-over (the decommission of the source) and an operator's `cutover set` at the same time, on real
services: the job table in Postgres, Redis, two indexes of the local Pinecone data plane through the real SDK, the
cleanup's and the rollout's own code called in process.

The cut-over's gate (reads 100 % new, synced since) is what makes deleting a source the application reads safe. It is
asked before the cleanup starts; a step back (`cutover set --reads old`) that lands after that ask must still stop
it, and a step back once a cleanup deletes (or deleted) a source must be refused: the application would read vectors
that are gone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex, StoreIndex
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.messaging.task_names import cutover_key
from nsmigrate.orchestrator.models import RunState
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import syncing
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import Job, RecordingDispatcher, copied_job, make_records, make_spec
from tests.settling import settle

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_CUTOVER_CLEANUP_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


@pytest.fixture
def cut_over(ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Job:
    """A job whose namespace ``alpha`` is verified, read 100 % from the target and synced since: cleanup may go."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cutover-cleanup-test")
    stores: tuple[dict[str, Any], ...] = tuple(
        {"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst")
    )
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(5)}, started=True)
    assert job.verify()["passed"]
    rollout_rows.set_rollout(ctx.db, job.job_id, 100, "tester")
    assert syncing.sync_run(ctx, job.runs["alpha"], actor="tester")["action"] != "refused"
    assert job.verify()["passed"]
    return job


@pytest.mark.parametrize("publication", ["recorded", "in Redis only"])
def test_a_job_its_applications_follow_keeps_the_source_they_read_until_reads_are_100_percent_new(
    ctx: WorkerContext,
    sandbox: PineconeSandbox,
    monkeypatch: pytest.MonkeyPatch,
    job_table_url: str,
    redis_url: str,
    publication: str,
) -> None:
    """`cutover publish`, then the applications dual-write and read the source through their DualWriteIndex: with no
    `cutover set` yet, every read goes to the source. A cleanup must keep it, also once Redis lost the publication
    (the job table keeps it), or for a publication made before the job table kept one (Redis has it)."""
    monkeypatch.setenv(KEY_ENV, "pcsk-cutover-cleanup-test")
    stores: tuple[dict[str, Any], ...] = tuple(
        {"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst")
    )
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(5)}, started=True)
    assert job.verify()["passed"]
    if publication == "recorded":
        env = {"NSMIGRATE_DATABASE_URL": job_table_url, "NSMIGRATE_REDIS_URL": redis_url}
        done = CliRunner().invoke(app, ["cutover", "publish", str(job.job_id)], env=env)
        assert done.exit_code == 0, done.output
        ctx.redis.delete(cutover_key(job.job_id, "layout"), cutover_key(job.job_id, "rollout"))  # Redis lost it
    else:
        published.publish(ctx.db, ctx.redis, job.job_id)

    refused = job.cleanup(decommission_now=True)

    assert refused["action"] == "refused", refused
    assert "follow its cut-over (`nsmigrate cutover publish`) and read the source" in refused["reason"]
    assert "`nsmigrate cutover set --reads new --percent 100` first" in refused["reason"]
    assert job.source.namespaces().get("alpha") == 5 and job.state() == "verified"


def test_a_step_back_that_lands_after_the_gate_was_asked_stops_the_cleanup(
    ctx: WorkerContext, cut_over: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_cleanup = jobs_verdicts.start_cleanup

    def stepped_back_first(db: jobs_database.Database, run_id: int) -> Any:
        # Another operator's `cutover set --reads old`, between the gate's first ask and the cleanup's start.
        rollout_rows.set_rollout(db, cut_over.job_id, 0, "other operator")
        return start_cleanup(db, run_id)

    monkeypatch.setattr(jobs_verdicts, "start_cleanup", stepped_back_first)

    result = cut_over.cleanup(decommission_now=True)

    assert result["action"] == "refused", result
    assert "reads are 0 % new: the application still reads the source" in result["reason"]
    assert cut_over.source.namespaces().get("alpha") == 5  # nothing deleted
    assert cut_over.state() == "verified"


@pytest.mark.parametrize("cleanup", ["done", "stopped part-way"])
def test_reads_cannot_go_back_to_a_source_a_cleanup_deleted(ctx: WorkerContext, cut_over: Job, cleanup: str) -> None:
    if cleanup == "done":
        assert cut_over.cleanup(decommission_now=True)["action"] == "deleted"
    else:  # a cleanup that deleted two ids, then stopped on a store error
        cut_over.source.delete("alpha", ["v-000", "v-001"])
        run = cut_over.runs["alpha"]
        jobs_verdicts.start_cleanup(ctx.db, run)
        jobs_verdicts.abort_cleanup(
            ctx.db, run, "delete failed", "tester", RunState.VERIFIED, detail={"deleted_count": 2}
        )

    with pytest.raises(StateError) as refused:
        rollout_rows.set_rollout(ctx.db, cut_over.job_id, 0, "tester")

    message = str(refused.value)
    assert f"reads of job {cut_over.job_id} cannot go back to its source" in message and "alpha" in message
    assert "nothing was changed" in message
    assert rollout_rows.rollout_of(ctx.db, cut_over.job_id).percent == 100


@pytest.mark.parametrize("cleaned", [False, True], ids=["source kept", "source cleaned"])
def test_a_rollback_keeps_the_copies_the_applications_read_until_reads_go_back(
    ctx: WorkerContext, cut_over: Job, cleaned: bool, job_table_url: str, redis_url: str
) -> None:
    """Reads are 100 % new through the applications' DualWriteIndex: removing the copies would leave them reading
    empty namespaces. The rollback restores and verifies the originals, then stops before any delete, saying how to
    send the reads back; once a cleanup deleted the sources, only those restored originals let them go back."""
    if cleaned:
        assert cut_over.cleanup(decommission_now=True)["action"] == "deleted"
    env = {"NSMIGRATE_DATABASE_URL": job_table_url, "NSMIGRATE_REDIS_URL": redis_url}
    dry = CliRunner().invoke(app, ["rollback", str(cut_over.job_id), "--dry-run"], env=env)
    assert dry.exit_code == 0 and "then stop before removing anything" in dry.output, dry.output
    assert "are 100 % new" in " ".join(dry.output.split())

    refused = rollback_job(ctx, cut_over.job_id, actor="tester")

    assert refused["action"] == "refused", refused
    assert f"reads of job {cut_over.job_id} are 100 % new" in refused["reason"]
    assert f"`nsmigrate cutover set {cut_over.job_id} --reads old`" in refused["reason"]
    settle(cut_over.spec.source, cut_over.spec.target)  # the counts lag the restore's writes
    assert cut_over.target.namespaces().get("alpha") == 5  # the copies the applications read
    assert cut_over.source.namespaces().get("alpha") == 5  # the originals, written back if they were cleaned

    rollout_rows.set_rollout(ctx.db, cut_over.job_id, 0, "tester")  # not refused: the originals are back
    done = rollback_job(ctx, cut_over.job_id, actor="tester")

    assert done["action"] == "rolled_back", done
    assert "alpha" not in cut_over.target.namespaces() and cut_over.source.namespaces().get("alpha") == 5


def test_a_cleanup_tells_the_applications_before_its_last_look_at_the_source_and_once_done(
    ctx: WorkerContext, cut_over: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dual write the new index refuses after the cleanup's last listing could never be synced: the applications
    learn that the cleanup started before that listing (they raise such a failure instead of filing it), and once
    it is done they write the new index alone (the old namespace is not filled again)."""
    published.publish(ctx.db, ctx.redis, cut_over.job_id)  # the applications follow the cut-over

    def stage() -> str | None:
        layout = json.loads(ctx.redis.get(cutover_key(cut_over.job_id, "layout")))
        return next(r["cleanup"] for r in layout["runs"] if r["source_namespace"] == "alpha")

    at_last_look: list[tuple[float | None, str | None]] = []
    await_writers = published.await_writers

    def recorded(published_at: float | None) -> None:
        at_last_look.append((published_at, stage()))
        await_writers(published_at)

    monkeypatch.setattr(published, "await_writers", recorded)

    assert cut_over.cleanup(decommission_now=True)["action"] == "deleted"

    assert len(at_last_look) == 1 and at_last_look[0][0] is not None and at_last_look[0][1] == "cleaning"
    assert stage() == "cleaned"
    wrapper = DualWriteIndex(
        old=StoreIndex(cut_over.source), new=StoreIndex(cut_over.target), job_id=cut_over.job_id, redis=ctx.redis
    )
    wrapper.upsert(vectors=[("v-late", [0.5] * DIM)], namespace="alpha")
    settle(cut_over.spec.source, cut_over.spec.target)
    assert "alpha" not in cut_over.source.namespaces()
    assert cut_over.target.namespaces().get("alpha") == 6


def test_a_cleanup_refused_after_it_told_the_applications_tells_them_again(ctx: WorkerContext, cut_over: Job) -> None:
    """Refused once it had published its start (the source changed since verification), the run is back to a
    verdict: its applications must file what the new index refuses again, for `sync`, not raise it for ever."""
    published.publish(ctx.db, ctx.redis, cut_over.job_id)
    cut_over.source.upsert("alpha", make_records(1, prefix="late"))
    settle(cut_over.spec.source)

    result = cut_over.cleanup(decommission_now=True)

    assert result["action"] == "refused" and "changed" in result["reason"], result
    layout = json.loads(ctx.redis.get(cutover_key(cut_over.job_id, "layout")))
    assert [r["cleanup"] for r in layout["runs"] if r["source_namespace"] == "alpha"] == [None]


def test_applications_write_the_originals_a_rollback_restored_after_their_cleanup(
    ctx: WorkerContext, cut_over: Job
) -> None:
    """Once a cleanup deleted the source, the applications write the new index only. A rollback that restored the
    originals tells them so: their writes reach both sides again, so after reads went back the originals hold them
    (not only the copies the rollback then removes)."""
    published.publish(ctx.db, ctx.redis, cut_over.job_id)
    assert cut_over.cleanup(decommission_now=True)["action"] == "deleted"

    stopped = rollback_job(ctx, cut_over.job_id, actor="tester")  # restored and verified; reads are 100 % new

    assert stopped["action"] == "refused", stopped
    layout = json.loads(ctx.redis.get(cutover_key(cut_over.job_id, "layout")))
    assert [r["cleanup"] for r in layout["runs"] if r["source_namespace"] == "alpha"] == [None]
    wrapper = DualWriteIndex(
        old=StoreIndex(cut_over.source), new=StoreIndex(cut_over.target), job_id=cut_over.job_id, redis=ctx.redis
    )
    wrapper.upsert(vectors=[("v-late", [0.5] * DIM)], namespace="alpha")
    wrapper.delete(ids=["v-000"], namespace="alpha")
    rollout_rows.set_rollout(ctx.db, cut_over.job_id, 0, "tester")
    published.publish(ctx.db, ctx.redis, cut_over.job_id)
    settle(cut_over.spec.source, cut_over.spec.target)

    done = rollback_job(ctx, cut_over.job_id, actor="tester")

    assert done["action"] == "rolled_back", done
    kept = {r.id for r in cut_over.source.fetch("alpha", ["v-late", "v-000", "v-001"])}
    assert kept == {"v-late", "v-001"}


def test_a_step_to_the_copies_that_lands_while_a_rollback_checks_stops_it_and_none_follows_it(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cutover set --percent 5` checks the runs, then warms the targets for seconds; a rollback asked meanwhile
    (reads 0 % new) must not remove the copies that step then sends reads to, and no step may follow a rollback."""
    from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback

    monkeypatch.setenv(KEY_ENV, "pcsk-cutover-cleanup-test")
    stores: tuple[dict[str, Any], ...] = tuple(
        {"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst")
    )
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(5)}, started=True)
    assert job.verify()["passed"]
    claim = jobs_sync_rollback.claim_forward_runs

    def stepped_first(db: jobs_database.Database, rollback_id: int, expected: Any, actor: str) -> None:
        rollout_rows.set_rollout(db, job.job_id, 5, "other operator")  # the step lands as the rollback claims
        claim(db, rollback_id, expected, actor)

    monkeypatch.setattr(jobs_sync_rollback, "claim_forward_runs", stepped_first)
    refused = rollback_job(ctx, job.job_id, actor="tester")

    assert refused["action"] == "refused", refused
    assert "moved to 5 % new while the rollback checked" in refused["reason"]
    settle(job.spec.target)
    assert job.target.namespaces().get("alpha") == 5  # the copies that step reads

    monkeypatch.setattr(jobs_sync_rollback, "claim_forward_runs", claim)
    rollout_rows.set_rollout(ctx.db, job.job_id, 0, "other operator")
    assert rollback_job(ctx, job.job_id, actor="tester")["action"] == "rolled_back"
    with pytest.raises(StateError, match=f"job {job.job_id} was rolled back"):
        rollout_rows.set_rollout(ctx.db, job.job_id, 5, "late operator")


def test_a_rollback_waits_for_the_applications_to_follow_before_it_judges_the_restored_originals(
    ctx: WorkerContext, cut_over: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Told that the originals are back, an application follows within its rollout's age: a write it makes before
    then goes to the copies only. The rollback waits that long (and for writes under way) before it verifies the
    originals, so the check sees what they wrote meanwhile."""
    from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback

    published.publish(ctx.db, ctx.redis, cut_over.job_id)
    assert cut_over.cleanup(decommission_now=True)["action"] == "deleted"
    order: list[str] = []
    await_writers, checked = published.await_writers, jobs_sync_rollback.rollback_checked

    def waited(published_at: float | None) -> None:
        order.append("waited" if published_at is not None else "not told")
        await_writers(published_at)

    def judged(*args: Any, **kwargs: Any) -> None:
        order.append("judged")
        checked(*args, **kwargs)

    monkeypatch.setattr(published, "await_writers", waited)
    monkeypatch.setattr(jobs_sync_rollback, "rollback_checked", judged)

    assert rollback_job(ctx, cut_over.job_id, actor="tester")["action"] == "refused"  # reads are 100 % new

    assert order == ["waited", "judged"], order
