"""Issue 47, case 4: a job that was cancelled or rolled back is never taken up again, and nothing is deleted for it.

Played as the issue tells it, on the real stack: forward jobs on real `nsmigrate worker` processes (Redis, Postgres,
the Pinecone SDK against the local data plane), one batch failed by a record the target refuses; `cancel`,
`rollback`, `retry`, `resume`, `sync` and `cleanup` through the CLI as a script runs them. `retry` wrote vectors back
into the namespaces the rollback had removed, and on a cancelled job turned the run `verified`, after which `cleanup`
deleted the source of a job that said `cancelled`; a cleanup task queued before the cancel (`cleanup.mode: auto`)
deleted it too. What was kept is read from the data plane itself, not from the job table.
"""

from __future__ import annotations

from typing import Any

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import BatchState, RunState
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate_sandbox.pinecone_server import Faults
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_sync_rollback import (  # noqa: F401  (sandbox_indexes: a fixture, the stack's indexes)
    cli,
    events,
    load_small,
    sandbox_indexes,
    small_spec,
    start_job,
    states,
    wait_final,
)
from tests.fleet_jobs import batches
from tests.polling import wait_for_job, wait_until

#: In ns0's first batch (ids v0-0000 … v0-0019): the target refuses every upsert holding it.
POISON = "v0-0005"


def start_fleet(stack: Stack, queues: str = "list,copy,verify,cleanup") -> None:
    """A worker whose store requests give up after two quick attempts: the poisoned batch fails in a second."""
    stack.start_worker(queues, 4, pool="threads", NSMIGRATE_RETRY_ATTEMPTS="2", NSMIGRATE_RETRY_MAX_WAIT_S="0.05")


def job_with_a_failed_batch(stack: Stack) -> tuple[jobs_database.Database, int]:
    """ns0 and ns1 (60 vectors each) copied src → dst: ns1 verified, ns0 copying with its first batch failed."""
    load_small(stack)
    db, _, job_id = start_job(
        stack,
        small_spec(stack, cleanup={"mode": "manual"}),
        after_plan=lambda: stack.pinecone.set_faults("dst", Faults(refuse_ids=(POISON,))),
    )

    def one_failed_one_verified(status: JobStatus) -> bool:
        return states(status).get("ns1") == RunState.VERIFIED and len(status.failed_batches) == 1

    wait_for_job(db, job_id, one_failed_one_verified, timeout_s=90)
    stack.pinecone.set_faults("dst", Faults())  # the fault is gone: a retry would copy the batch now
    return db, job_id


def failed_batches(db: jobs_database.Database, job_id: int) -> list[Any]:
    return [b.id for b in batches(db, job_id) if b.state == BatchState.FAILED]


def test_nothing_is_taken_up_again_after_cancel_and_rollback(stack: Stack) -> None:
    start_fleet(stack)
    db, job_id = job_with_a_failed_batch(stack)
    failed = failed_batches(db, job_id)
    assert cli(stack, "cancel", str(job_id)).exit_code == 0
    rolled_back = cli(stack, "rollback", str(job_id), "--yes")
    assert rolled_back.exit_code == 0 and f"job {job_id} rolled back" in rolled_back.output, rolled_back.output
    assert stack.pinecone.count("dst") == 0  # the namespaces the job wrote were removed
    [rollback_job] = [e["detail"]["rollback_job_id"] for e in events(db, job_id, "rolled_back")]

    for command in ("retry", "resume", "sync"):
        done = cli(stack, command, str(job_id))

        assert done.exit_code == 1, (command, done.output)
        assert f"{command} refused: job {job_id} was rolled back (rollback job {rollback_job})" in done.output
        assert "start a new job: `nsmigrate run SPEC`" in done.output and "Traceback" not in done.output

    assert failed_batches(db, job_id) == failed  # not re-queued
    assert set(states(jobs_status.job_status(db, job_id)).values()) == {RunState.CANCELLED}
    assert not events(db, job_id, "retry") and not events(db, job_id, "job_resumed")
    assert stack.pinecone.count("dst") == 0  # nothing written back where the rollback removed
    assert stack.pinecone.count("src") == 120


def test_a_cancelled_job_is_not_retried_resumed_synced_nor_cleaned_up(stack: Stack) -> None:
    start_fleet(stack)
    db, job_id = job_with_a_failed_batch(stack)
    failed = failed_batches(db, job_id)
    source = stack.pinecone.snapshot("src")
    assert cli(stack, "cancel", str(job_id)).exit_code == 0
    assert states(jobs_status.job_status(db, job_id)) == {"ns0": RunState.CANCELLED, "ns1": RunState.VERIFIED}

    for command, *options in (["retry"], ["resume"], ["sync"], ["cleanup", "--dry-run"], ["cleanup", "--yes"]):
        done = cli(stack, command, str(job_id), *options)

        assert done.exit_code == 1, (command, done.output)
        assert f"{command} refused: job {job_id} was cancelled: nothing more is done for it" in done.output
        assert "start a new job: `nsmigrate run SPEC`" in done.output and "Traceback" not in done.output

    assert failed_batches(db, job_id) == failed
    # ns1 keeps its verdict, and its source: nothing is deleted for a cancelled job.
    assert states(jobs_status.job_status(db, job_id)) == {"ns0": RunState.CANCELLED, "ns1": RunState.VERIFIED}
    assert stack.pinecone.snapshot("src").keys() == source.keys()
    assert {ns: sorted(ids) for ns, ids in stack.pinecone.snapshot("src").items()} == {
        ns: sorted(ids) for ns, ids in source.items()
    }
    assert not events(db, job_id, "source_deleted")


def test_a_cleanup_queued_before_the_cancel_and_one_sent_by_verify_delete_nothing(stack: Stack) -> None:
    start_fleet(stack, "list,copy,verify")  # no cleanup worker yet: the automatic cleanup waits in its queue
    load_small(stack, namespaces=1)
    db, _, job_id = start_job(stack, small_spec(stack, cleanup={"mode": "auto"}))
    assert states(wait_final(db, job_id)) == {"ns0": RunState.VERIFIED}  # its cleanup task is queued now
    assert cli(stack, "cancel", str(job_id)).exit_code == 0

    start_fleet(stack, "cleanup")

    def cleanups() -> list[dict[str, Any]]:
        return events(db, job_id, "cleanup_refused") + events(db, job_id, "source_deleted")

    [first] = wait_until(cleanups, what="the queued cleanup task's outcome", timeout_s=60)
    assert first["action"] == "cleanup_refused", first
    assert f"job {job_id} was cancelled" in first["detail"]["reason"]
    assert stack.pinecone.count("src", "ns0") == 60

    # `verify` of the cancelled job's verified run passes again, and `cleanup.mode: auto` sends a cleanup again.
    assert cli(stack, "verify", str(job_id)).exit_code == 0
    found = wait_until(cleanups, what="the second cleanup's outcome", done=lambda found: len(found) == 2, timeout_s=60)
    assert [e["action"] for e in found] == ["cleanup_refused", "cleanup_refused"]
    assert stack.pinecone.count("src", "ns0") == 60
    assert states(jobs_status.job_status(db, job_id)) == {"ns0": RunState.VERIFIED}
