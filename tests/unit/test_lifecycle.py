"""The job table's lifecycle: every state has a row in its transition table, the state groups agree with it, a
forbidden move says which run and which states, and the typed status keeps the JSON shape of `status --json`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Any, cast

import pytest

from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import lifecycle
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.jobs.database import _move_run
from nsmigrate.orchestrator.jobs.status import BatchCounts, JobStatus, RunStatus
from nsmigrate.orchestrator.models import BatchState, JobKind, JobState, NamespaceRun, RunState
from nsmigrate.orchestrator.snapshot import FailedBatch

TABLES: list[tuple[type[StrEnum], Any]] = [
    (RunState, lifecycle.RUN_TRANSITIONS),
    (BatchState, lifecycle.BATCH_TRANSITIONS),
    (JobState, lifecycle.JOB_TRANSITIONS),
]


@pytest.mark.parametrize(("states", "table"), TABLES, ids=["run", "batch", "job"])
def test_every_state_has_a_row_and_every_target_is_a_state(states: type[StrEnum], table: Any) -> None:
    assert set(table) == set(states)
    for targets in table.values():
        assert targets <= set(states)


def test_a_final_run_moves_only_when_someone_asks() -> None:
    # verify again, clean up, sync, retry, roll back: each of those is a named transition, nothing else leaves.
    asked = {RunState.VERIFYING, RunState.CLEANING, RunState.COPYING, RunState.CANCELLED}
    for state in lifecycle.FINAL_RUN_STATES:
        assert lifecycle.RUN_TRANSITIONS[state] - {RunState.VERIFIED, RunState.VERIFY_FAILED, RunState.CLEANED} <= asked


@pytest.mark.parametrize(
    ("group", "to_state"),
    [
        (lifecycle.SYNCABLE_RUN_STATES, RunState.COPYING),
        (lifecycle.VERIFIABLE_RUN_STATES, RunState.VERIFYING),
        (lifecycle.ROLLBACK_READY_STATES, RunState.CANCELLED),
        (lifecycle.OPEN_RUN_STATES, RunState.CANCELLED),  # cancel_job
        (lifecycle.LISTER_MOVES_RUN_STATES, RunState.LISTING),  # a lister's page
        (lifecycle.LISTER_MOVES_RUN_STATES, RunState.COPYING),
        (lifecycle.BUSY_RUN_STATES, RunState.VERIFIED),  # what is under way ends in a verdict
        (lifecycle.BUSY_RUN_STATES, RunState.VERIFY_FAILED),
    ],
)
def test_the_state_groups_agree_with_the_table(group: tuple[RunState, ...], to_state: RunState) -> None:
    for state in group:
        assert lifecycle.run_may_move(state, to_state), (state, to_state)


def test_the_groups_built_from_the_tables_are_the_ones_the_statements_were_written_for() -> None:
    """The groups are derived from the transition tables; these are the sets the job table's statements used when
    each was written by hand (a table change that changes one shows here)."""
    R, B = RunState, BatchState
    assert lifecycle.ACTIVE_BATCH_STATES == (B.QUEUED, B.RUNNING)
    assert lifecycle.LISTABLE_RUN_STATES == lifecycle.LIST_FAILABLE_RUN_STATES == (R.PENDING, R.LISTING, R.COPYING)
    assert lifecycle.LISTER_MOVES_RUN_STATES == (R.PENDING, R.LISTING)
    assert lifecycle.COPY_DONE_RUN_STATES == (R.COPIED, R.VERIFYING, R.VERIFIED, R.VERIFY_FAILED, R.CLEANING, R.CLEANED)
    assert lifecycle.COPY_UNDER_WAY_RUN_STATES == (R.CHECKING, R.PENDING, R.LISTING, R.LIST_FAILED, R.COPYING)
    assert lifecycle.JUDGED_RUN_STATES == (R.VERIFIED, R.VERIFY_FAILED, R.CLEANED)
    assert lifecycle.FINAL_RUN_STATES == (R.VERIFIED, R.VERIFY_FAILED, R.CLEANED, R.CANCELLED)
    assert set(lifecycle.OPEN_RUN_STATES) == set(RunState) - set(lifecycle.FINAL_RUN_STATES)
    assert lifecycle.VERIFIABLE_RUN_STATES == lifecycle.SYNCABLE_RUN_STATES == (R.COPIED, R.VERIFIED, R.VERIFY_FAILED)
    assert lifecycle.ROLLBACK_READY_STATES == (R.COPIED, R.VERIFIED, R.VERIFY_FAILED, R.CLEANED, R.CANCELLED)
    assert set(lifecycle.states_that_may_move_to(R.VERIFYING)) == {R.COPIED, R.VERIFYING, R.VERIFIED, R.VERIFY_FAILED}
    assert lifecycle.AWAITING_VERDICT_RUN_STATES == (R.COPIED, R.VERIFYING)
    assert lifecycle.PASSED_RUN_STATES == (R.VERIFIED, R.CLEANED)


def test_may_move_to_reads_each_table() -> None:
    assert lifecycle.may_move_to(lifecycle.BATCH_TRANSITIONS, BatchState.QUEUED) == (
        BatchState.QUEUED,
        BatchState.FAILED,
    )
    assert lifecycle.may_move_to(lifecycle.JOB_TRANSITIONS, JobState.FINISHED) == (JobState.RUNNING, JobState.FINISHED)
    assert lifecycle.may_move_to(lifecycle.RUN_TRANSITIONS, RunState.CLEANED) == (
        RunState.CLEANING,
        RunState.CLEANED,
        RunState.CANCELLED,
    )


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        (RunState.PENDING, RunState.CLEANING),
        (RunState.COPIED, RunState.CLEANING),  # only a judged namespace may be cleaned up (see jobs_verdicts.cleanable)
        (RunState.CLEANED, RunState.VERIFIED),
        (RunState.CANCELLED, RunState.VERIFIED),
        (RunState.LISTING, RunState.COPIED),
    ],
)
def test_a_forbidden_move_raises_naming_the_run_and_both_states(from_state: RunState, to_state: RunState) -> None:
    run = cast(NamespaceRun, SimpleNamespace(id=41, job_id=7, source_namespace="ns-a", state=from_state))

    with pytest.raises(StateError) as raised:
        _move_run(run, to_state)

    assert f"namespace run 41 (namespace 'ns-a') cannot move from {from_state} to {to_state}" in str(raised.value)
    assert raised.value.ids == {"job_id": 7, "run_id": 41}
    assert run.state == from_state  # nothing changed


@pytest.mark.parametrize(
    ("state", "cleanup", "cleanable"),
    [
        (RunState.VERIFIED, None, True),
        (RunState.VERIFY_FAILED, None, False),  # a failed verdict is no reason to delete
        (RunState.VERIFY_FAILED, {"deleted_count": 0}, False),
        (RunState.VERIFY_FAILED, {"deleted_count": 1000}, True),  # a cleanup that stopped part-way, taken up
        (RunState.COPIED, {"deleted_count": 1000}, False),
        (RunState.CLEANED, {"deleted_count": 1500}, False),
    ],
)
def test_a_cleanup_acts_on_a_verified_run_or_takes_up_one_it_half_did(
    state: RunState, cleanup: dict[str, int] | None, cleanable: bool
) -> None:
    run = NamespaceRun(id=3, job_id=1, source_namespace="ns", state=state, cleanup=cleanup)

    assert jobs_verdicts.cleanable(run) is cleanable


def test_an_allowed_move_and_staying_put_change_the_state() -> None:
    run = cast(NamespaceRun, SimpleNamespace(id=1, job_id=1, source_namespace="ns", state=RunState.VERIFIED))
    _move_run(run, RunState.VERIFIED)
    _move_run(run, RunState.CLEANING)
    assert run.state == RunState.CLEANING


def test_job_status_as_dict_is_the_json_shape_of_status() -> None:
    run = RunStatus(
        run_id=3,
        source_namespace="a",
        target_namespace=None,
        targets=("a1", "a2"),
        state=RunState.COPYING,
        source_count=10,
        listed=8,
        copied=6,
        failed=2,
        batches=BatchCounts(queued=1, done=3, failed=1),
        last_error="boom",
        verification=None,
        verified_ok=None,
    )
    status = JobStatus(
        job_id=9,
        name="j",
        kind=JobKind.MIGRATE,
        state=JobState.RUNNING,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        runs=(run, run),
        failed_batches=(FailedBatch(batch_id=7, run_id=3, namespace="a", attempts=2, error="boom"),),
    )

    out = json.loads(json.dumps(status.as_dict()))

    assert list(out) == ["job_id", "name", "kind", "state", "created_at", "runs", "totals", "phase", "failed_batches"]
    assert out["failed_batches"] == [{"batch_id": 7, "run_id": 3, "namespace": "a", "attempts": 2, "error": "boom"}]
    assert out["phase"] is None  # only a `strategy: collection` job has one
    assert out["created_at"] == "2026-01-02T03:04:05+00:00"
    assert (out["kind"], out["state"]) == ("migrate", "running")
    assert out["totals"] == {"source": 20, "listed": 16, "copied": 12, "failed": 4}
    assert out["runs"][0] == {
        "run_id": 3,
        "source_namespace": "a",
        "target_namespace": None,
        "targets": ["a1", "a2"],
        "state": "copying",
        "source_count": 10,
        "listed": 8,
        "copied": 6,
        "failed": 2,
        "batches": {"queued": 1, "running": 0, "done": 3, "failed": 1, "cancelled": 0},
        "last_error": "boom",
        "verification": None,
        "verified_ok": None,
    }


def test_a_failed_lister_leaves_only_by_retry_or_cancel() -> None:
    # Any run still listing may fail for good; `nsmigrate retry` lists again, `cancel` stops it.
    for state in lifecycle.LIST_FAILABLE_RUN_STATES:
        assert lifecycle.run_may_move(state, RunState.LIST_FAILED), state
    assert lifecycle.RUN_TRANSITIONS[RunState.LIST_FAILED] == {RunState.LISTING, RunState.CANCELLED}
    assert RunState.LIST_FAILED not in lifecycle.FINAL_RUN_STATES  # the job waits for a retry, like a failed batch
