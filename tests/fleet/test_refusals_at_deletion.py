"""Issue 27, cases 1, 2 and 5: a destructive step proves, at the moment it deletes, that an equal copy exists.

Each case is played as the issue tells it, on the real stack: forward jobs on real `nsmigrate worker` processes
(Redis, Postgres, the Pinecone SDK against the local data plane), `cleanup`, `sync` and `verify` through the CLI as a
script runs them (no terminal). What was kept or deleted is read from the data plane itself, not from the job table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import yaml

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning
from nsmigrate.workers.steps.proving import delete_absent
from nsmigrate.workers.steps.rollback import _Rollback
from nsmigrate.workers.steps.syncing import sync_run
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import Faults
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_fleet_planner import cli as process_cli
from tests.fleet.test_sync_rollback import (  # noqa: F401  (sandbox_indexes: a fixture, the stack's indexes)
    cli,
    events,
    load_small,
    reports,
    sandbox_indexes,
    small_spec,
    start_job,
    states,
    wait_final,
)
from tests.integration.test_pgvector_namespaces import load, nsmigrate, records, store, tables
from tests.polling import wait_until

DIM = 8


@pytest.fixture(scope="module")
def fleet(module_stack: Stack) -> Stack:
    """One worker for every queue, cleanup included (a spec's `cleanup: auto`), started once for the module's tests
    (each runs its own jobs; the pool is not what they test)."""
    module_stack.start_worker("list,copy,verify,cleanup", 4, pool="threads")
    return module_stack


@pytest.fixture
def stack(fleet: Stack, shared_stack: Stack) -> Stack:
    """The module's stack and its worker, the data plane emptied for this test."""
    return shared_stack


def verified_job(stack: Stack, per_namespace: int = 60, **overrides: Any) -> tuple[jobs_database.Database, int]:
    """One namespace `ns0` (60 vectors) copied src → dst by the fleet and verified."""
    load_small(stack, namespaces=1, per_namespace=per_namespace)
    db, _, job_id = start_job(stack, small_spec(stack, cleanup={"mode": "manual"}, **overrides))
    assert states(wait_final(db, job_id)) == {"ns0": RunState.VERIFIED}
    return db, job_id


def run_of(db: jobs_database.Database, job_id: int) -> Any:
    [run] = jobs_and_runs.runs_of(db, job_id)
    return run


# ------------------------------------------------------------------------------------- case 1: cleanup re-proves


def test_cleanup_keeps_the_source_when_the_target_was_deleted_after_verification(stack: Stack) -> None:
    db, job_id = verified_job(stack)
    source = stack.pinecone.snapshot("src")["ns0"]
    stack.pinecone.service("dst").store.delete_namespace("ns0")  # a person, another job, an application

    result = cli(stack, "cleanup", str(job_id), "--yes")

    assert result.exit_code == 1, result.output
    assert "ns0: refused" in result.output and "60 ids have no equal copy now" in result.output
    assert sorted(stack.pinecone.snapshot("src")["ns0"]) == sorted(source)  # the only copy is kept
    assert run_of(db, job_id).state == RunState.VERIFY_FAILED
    [refusal] = events(db, job_id, "cleanup_refused")
    assert refusal["detail"]["refused_count"] == 60 and refusal["detail"]["proven"] == 0
    assert "missing in target" in refusal["detail"]["refused"][0]["reason"]
    # `report` and `status` say why, by id.
    report = json.loads(cli(stack, "report", str(job_id)).stdout)[0]
    assert report["verification"]["passed"] is False
    assert report["cleanup"]["refused_ids"][0] == "v0-0000"
    assert "FAILED: cleanup refused: 60 ids" in cli(stack, "status", str(job_id), "--json").stdout

    # `sync` repairs it, then verification passes and cleanup deletes the source.
    assert cli(stack, "sync", str(job_id), "--wait").exit_code == 0
    assert stack.pinecone.count("dst", "ns0") == 60
    result = cli(stack, "cleanup", str(job_id), "--yes")
    assert result.exit_code == 0, result.output
    assert "ns0: deleted 60" in result.output
    assert "ns0" not in stack.pinecone.snapshot("src")
    copies = stack.pinecone.snapshot("dst")["ns0"]
    assert all(np.array_equal(copies[i][0], values) for i, (values, _) in source.items())


def test_cleanup_says_each_refusal_once_per_namespace(stack: Stack) -> None:
    _, job_id = verified_job(stack)
    stack.pinecone.service("dst").store.delete_namespace("ns0")

    for option in ("--dry-run", "--yes"):  # a refusal before any delete, then one by id while deleting
        done = process_cli(stack, "cleanup", str(job_id), option)

        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        said = [line for line in (done.stdout + done.stderr).splitlines() if "refused" in line]
        assert len(said) == 1 and said[0].startswith("ns0: refused — 60 ids have no equal copy now"), said
    assert stack.pinecone.count("src", "ns0") == 60


def test_sync_says_its_refusal_once_per_namespace(stack: Stack) -> None:
    _, job_id = verified_job(stack)
    stack.pinecone.service("src").store.delete_namespace("ns0")  # a vanished source: --propagate-deletes refuses

    done = process_cli(stack, "sync", str(job_id), "--propagate-deletes", "--yes")

    assert done.returncode == 1, done.stdout + done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines() if "refused" in line]
    assert len(said) == 1 and said[0].startswith("ns0: refused — source namespace 'ns0' lists no ids now"), said
    assert stack.pinecone.count("dst", "ns0") == 60


def test_cleanup_keeps_a_source_vector_changed_after_verification(stack: Stack) -> None:
    db, job_id = verified_job(stack)
    changed = "v0-0007"
    metadata = stack.pinecone.snapshot("src")["ns0"][changed][1]
    stack.pinecone.load("src", "ns0", [(changed, [0.5] * DIM, metadata)])  # updated in place: same ids

    dry = cli(stack, "cleanup", str(job_id), "--dry-run")
    result = cli(stack, "cleanup", str(job_id), "--yes")

    assert dry.exit_code == 1 and "would not be deleted" in dry.output, dry.output
    assert result.exit_code == 1, result.output
    assert f"1 ids have no equal copy now, nothing was deleted (e.g. '{changed}': values differ" in result.output
    assert stack.pinecone.count("src", "ns0") == 60
    assert run_of(db, job_id).state == RunState.VERIFY_FAILED

    sync = cli(stack, "sync", str(job_id), "--wait")
    assert sync.exit_code == 0 and "0 new, 1 changed" in sync.output, sync.output
    assert cli(stack, "cleanup", str(job_id), "--yes").exit_code == 0
    assert stack.pinecone.count("src", "ns0") == 0
    assert np.array_equal(stack.pinecone.snapshot("dst")["ns0"][changed][0], np.full(DIM, 0.5, dtype=np.float32))


def test_a_cleanup_stopped_half_way_keeps_sync_from_deleting_the_copies_left(
    stack: Stack, worker_context: Callable[..., WorkerContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, job_id = verified_job(stack, per_namespace=1500, batch_size=500)  # two chunks of ≤ 1,000 ids to delete
    monkeypatch.setenv("NSMIGRATE_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("NSMIGRATE_RETRY_MAX_WAIT_S", "0.05")
    ctx = worker_context(stack.database_url, stack.redis_url)
    run = run_of(db, job_id)
    # Seeded: the first delete request goes through, every attempt at the second one answers 503.
    stack.pinecone.set_faults("src", Faults(error_rate_5xx=0.9, error_ops=("delete",), seed=564))
    try:
        result = cleaning.cleanup_run(ctx, run.id, actor="tester")
    finally:
        stack.pinecone.set_faults("src", Faults())

    assert (result["action"], result["count"]) == ("failed", 1000), result
    assert stack.pinecone.count("src", "ns0") == 500
    assert run_of(db, job_id).cleanup == {"deleted_count": 1000}
    # The 1,000 ids are gone from the source on purpose: their copies are the only ones, never "stale".
    refused = sync_run(ctx, run.id, propagate_deletes=True, actor="tester")
    assert refused["action"] == "refused" and "deleted 1000 of this namespace's source ids" in refused["reason"]
    assert stack.pinecone.count("dst", "ns0") == 1500


def test_a_cleanup_whose_delete_failed_exits_1(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    _, job_id = verified_job(stack, per_namespace=1500, batch_size=500)
    monkeypatch.setenv("NSMIGRATE_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("NSMIGRATE_RETRY_MAX_WAIT_S", "0.05")
    stack.pinecone.set_faults("src", Faults(error_rate_5xx=0.9, error_ops=("delete",), seed=564))

    result = cli(stack, "cleanup", str(job_id), "--yes")

    assert result.exit_code == 1, result.output  # a script must not take a half-done cleanup for a done one
    assert "ns0: failed after deleting 1000 — delete failed" in result.output, result.output
    assert stack.pinecone.count("src", "ns0") == 500


def test_a_cleanup_stopped_half_way_is_taken_up_again_proving_every_id_left(
    stack: Stack, worker_context: Callable[..., WorkerContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, job_id = verified_job(stack, per_namespace=1500, batch_size=500)
    monkeypatch.setenv("NSMIGRATE_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("NSMIGRATE_RETRY_MAX_WAIT_S", "0.05")
    ctx = worker_context(stack.database_url, stack.redis_url)
    run = run_of(db, job_id)
    stack.pinecone.set_faults("src", Faults(error_rate_5xx=0.9, error_ops=("delete",), seed=564))
    try:
        assert cleaning.cleanup_run(ctx, run.id, actor="tester")["action"] == "failed"
    finally:
        stack.pinecone.set_faults("src", Faults())
    left = stack.pinecone.snapshot("src")["ns0"]
    assert len(left) == 500
    changed = sorted(left)[7]
    stack.pinecone.load("src", "ns0", [(changed, [0.5] * DIM, left[changed][1])])  # updated in place meanwhile

    # Taken up again: no fingerprint can match a source it half deleted, so every id left is proved instead.
    again = cleaning.cleanup_run(ctx, run.id, actor="tester")

    assert again["action"] == "refused" and again["count"] == 0, again  # one id without its copy: nothing goes
    assert sorted(stack.pinecone.snapshot("src")["ns0"]) == sorted(left)
    assert run_of(db, job_id).state == RunState.VERIFY_FAILED
    assert run_of(db, job_id).cleanup["deleted_count"] == 1000
    assert f"then `nsmigrate cleanup {job_id}` again" in again["reason"]

    synced = sync_run(ctx, run.id, actor="tester")  # copies the changed vector again, through the fleet
    assert synced["action"] != "refused", synced
    wait_until(
        lambda: run_of(db, job_id).state,
        what="the synced run's verdict",
        timeout_s=60,
        done=lambda state: state in (RunState.VERIFIED, RunState.VERIFY_FAILED),
    )
    done = cleaning.cleanup_run(ctx, run.id, actor="tester")

    assert (done["action"], done["count"]) == ("deleted", 500), done
    assert "ns0" not in stack.pinecone.snapshot("src")
    copies = stack.pinecone.snapshot("dst")["ns0"]
    assert len(copies) == 1500
    assert np.array_equal(copies[changed][0], np.full(DIM, 0.5, dtype=np.float32))
    cleaned = run_of(db, job_id)
    assert cleaned.state == RunState.CLEANED and cleaned.cleanup["deleted_count"] == 1500


# --------------------------------------------------------------------------- case 2: a verification of nothing


NOTHING_CHECKED = {"counts": False, "ids": False, "contents": "none", "count_timeout_s": 2}


def test_a_spec_whose_verification_checks_nothing_cannot_clean_up(stack: Stack) -> None:
    load_small(stack, namespaces=1)
    spec = small_spec(stack, verify=NOTHING_CHECKED, cleanup={"mode": "auto"})
    path = stack.workdir / "nothing-checked.yaml"
    path.write_text(yaml.safe_dump(spec))

    db = jobs_database.Database(stack.database_url)
    earlier = [j["job_id"] for j in jobs_status.list_jobs(db)]  # the module's other tests' jobs

    for command in ("plan", "run"):
        result = cli(stack, command, str(path))
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert "cleanup.mode: `auto`" in message and "verify.ids: false, verify.counts: false" in message
    assert [j["job_id"] for j in jobs_status.list_jobs(db)] == earlier
    db.dispose()


def test_an_older_job_whose_verification_checked_nothing_keeps_its_source(stack: Stack) -> None:
    # Written before the plan-time rule: the stored spec loads as it is; its auto cleanup must refuse.
    load_small(stack, namespaces=1)
    data = small_spec(stack, verify=NOTHING_CHECKED, cleanup={"mode": "auto"})
    settings = Settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    prepared = launch.prepare(JobSpec.model_validate(data), open_retrying_store, stack.workdir)
    stack.pinecone.set_faults("dst", Faults(drop_fraction=0.1))  # upserts acknowledge everything, store 90 %
    job_id = launch.launch(db, Dispatcher(settings), prepared)
    try:
        [cleanup] = wait_until(
            lambda: events(db, job_id, "cleanup_refused") + events(db, job_id, "source_deleted"),
            what="the auto cleanup",
            timeout_s=60,
        )
    finally:
        stack.pinecone.set_faults("dst", Faults())

    assert cleanup["action"] == "cleanup_refused", cleanup
    assert "verify.ids: false, verify.counts: false" in cleanup["detail"]["reason"]
    assert stack.pinecone.count("src", "ns0") == 60  # the target holds 54: the source is the only full copy
    assert stack.pinecone.count("dst", "ns0") == 54
    assert not events(db, job_id, "source_deleted")


# ----------------------------------------------------------------------- case 5: --propagate-deletes, confirmed


def test_propagate_deletes_needs_yes_and_refuses_a_vanished_source(stack: Stack) -> None:
    db, job_id = verified_job(stack)
    stack.pinecone.service("src").store.delete_namespace("ns0")  # the source namespace vanished
    stack.pinecone.settle("src")  # before the user looked: its reads show it

    no_yes = cli(stack, "sync", str(job_id), "--propagate-deletes")
    dry = cli(stack, "sync", str(job_id), "--propagate-deletes", "--dry-run")
    refused = cli(stack, "sync", str(job_id), "--propagate-deletes", "--yes")

    assert no_yes.exit_code == 2 and "pass --yes" in no_yes.output, no_yes.output
    assert dry.exit_code == 1 and "lists no ids now" in dry.output, dry.output
    assert refused.exit_code == 1 and "--allow-vanished-source" in refused.output, refused.output
    assert stack.pinecone.count("dst", "ns0") == 60  # nothing deleted
    assert not events(db, job_id, "sync")
    # An empty source beside a target still holding the copies verifies nothing: never "verified" on "0/0".
    assert cli(stack, "verify", str(job_id)).exit_code == 1
    report = reports(db, job_id)["ns0"]
    assert not report["passed"] and "source namespace lists no ids now" in report["reasons"][0]

    # Asked explicitly: the target is emptied too, and both sides now agree that the namespace is empty.
    allowed = cli(stack, "sync", str(job_id), "--propagate-deletes", "--yes", "--allow-vanished-source", "--wait")
    assert allowed.exit_code == 0 and "(60 deleted from the target)" in allowed.output, allowed.output
    assert stack.pinecone.count("dst", "ns0") == 0
    assert run_of(db, job_id).state == RunState.VERIFIED
    assert reports(db, job_id)["ns0"]["target_count"] == 0


def test_propagated_deletes_keep_an_id_the_source_holds_again(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    db, job_id = verified_job(stack)
    ctx = worker_context(stack.database_url, stack.redis_url)
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    source, target = ctx.guarded(spec.source, spec.rate), ctx.guarded(spec.target, spec.rate)
    written_back = stack.pinecone.snapshot("src")["ns0"]["v0-0002"]
    stack.pinecone.service("src").store.delete("ns0", ["v0-0001", "v0-0002"])
    stack.pinecone.settle("src")  # deleted before the sync: its scan's listing shows it
    [run] = jobs_and_runs.runs_of(db, job_id)
    scanned = sync_run(ctx, run.id, propagate_deletes=True, dry_run=True, actor="tester")
    assert scanned["deleted_in_source_ids"] == ["v0-0001", "v0-0002"]
    stack.pinecone.load("src", "ns0", [("v0-0002", *written_back)])  # between the scan and the delete

    assert delete_absent(source, "ns0", target, "ns0", scanned["deleted_in_source_ids"]) == (1, 1, None)

    copies = stack.pinecone.snapshot("dst")["ns0"]
    assert "v0-0001" not in copies and "v0-0002" in copies


# ------------------------------------------------------------------------------------- rollback re-proves too


def test_rollback_keeps_a_copy_whose_original_changed_after_it_was_verified(
    stack: Stack, worker_context: Callable[..., WorkerContext]
) -> None:
    db, job_id = verified_job(stack)
    run = run_of(db, job_id)
    # The deletion step itself, between rollback's last check and its delete (rollback_job runs them back to back).
    rollback = _Rollback(worker_context(stack.database_url, stack.redis_url), job_id, "tester")
    check = rollback.check(run, restore=False)
    assert check.passed, check.summary
    changed = "v0-0003"
    metadata = stack.pinecone.snapshot("src")["ns0"][changed][1]
    stack.pinecone.load("src", "ns0", [(changed, [0.25] * DIM, metadata)])  # between the check and the delete

    removed = rollback.delete_targets([run], {run.id: check})

    assert removed["ns0"]["deleted"] == 59 and removed["ns0"]["refused_count"] == 1
    assert removed["ns0"]["method"] == "delete_ids"  # not dropped whole: it still holds a copy
    assert list(stack.pinecone.snapshot("dst")["ns0"]) == [changed]
    assert stack.pinecone.count("src", "ns0") == 60


# ------------------------------------------------------------------------------------ pgvector move re-proves


def test_pgvector_move_keeps_the_source_when_a_row_changed_after_it_was_copied(pg: Any) -> None:
    load("alpha", 30)
    assert nsmigrate("pgvector", "copy", "alpha", "beta").exit_code == 0
    changed = records(30, seed=1)[4]  # the same chunk_id, other text and values
    s = store()
    s.upsert("alpha", [changed])
    s.close()

    result = nsmigrate("pgvector", "move", "alpha", "beta", "--yes", "--json")

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert not report["verified"] and report["differ"] == 1 and report["backup_table"] is None
    assert {"embeddings_alpha", "embeddings_beta"} <= tables(pg)  # the source was not renamed away
    assert store().fetch("alpha", [changed.id])[0].metadata == changed.metadata
