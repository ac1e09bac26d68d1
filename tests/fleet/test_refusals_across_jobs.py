"""Issue 47, case 1: two jobs whose namespaces form a cycle (A copies ``src:c`` → ``dst:c``, B copies ``dst:c`` →
``src:c``), both verified, cleaned up at the same moment: one cleanup is refused and nothing is lost. Planning B
while A is unfinished warns of both crossings.

The forward jobs run on real `nsmigrate worker` processes; the two cleanups run as two `nsmigrate cleanup` commands
do (each its own ``WorkerContext`` on the real Redis, Postgres and data plane), in two threads that meet twice: as
each starts proving (its first ``stop`` question) and at its first delete, each waits until the other has come to the
same point too, or has ended. Without the namespace locks both have proved their copies by the second meeting, and
both delete them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import yaml

from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import RunState
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_refusals_at_deletion import fleet  # noqa: F401  (a fixture: the module's worker)
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

VECTORS = 60


@pytest.fixture
def stack(shared_stack: Stack, request: pytest.FixtureRequest) -> Stack:
    request.getfixturevalue("fleet")  # the module's worker, started once
    return shared_stack


class Meeting:
    """At each ``point``, the first time, a thread waits until the other thread came to it too, or ended (no timeout:
    the test's own bounds it)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._came: set[tuple[str, str]] = set()
        self._ended: set[str] = set()

    def at(self, point: str) -> None:
        me = threading.current_thread().name
        other = OTHER.get(me)
        with self._cond:
            if other is None or (point, me) in self._came:
                return
            self._came.add((point, me))
            self._cond.notify_all()
            self._cond.wait_for(lambda: (point, other) in self._came or other in self._ended)

    def ended(self, me: str) -> None:
        with self._cond:
            self._ended.add(me)
            self._cond.notify_all()


OTHER = {"cleanup-a": "cleanup-b", "cleanup-b": "cleanup-a"}


@pytest.fixture
def meeting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Meeting]:
    meet = Meeting()
    delete = GuardedStore.delete

    def meeting_delete(self: GuardedStore, namespace: str, ids: Sequence[str]) -> None:
        meet.at("delete")
        delete(self, namespace, ids)

    monkeypatch.setattr(GuardedStore, "delete", meeting_delete)
    yield meet


def all_ids() -> set[str]:
    return {f"v0-{i:04d}" for i in range(VECTORS)}


def test_two_cleanups_of_a_cycle_one_is_refused_and_nothing_is_lost(
    stack: Stack, worker_context: Callable[..., WorkerContext], meeting: Meeting
) -> None:
    load_small(stack, namespaces=1, per_namespace=VECTORS)  # src:ns0
    db, _, job_a = start_job(stack, small_spec(stack, name="cycle-a", cleanup={"mode": "manual"}))
    assert states(wait_final(db, job_a)) == {"ns0": RunState.VERIFIED}
    reverse = {
        "name": "cycle-b",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("dst")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("src")},
        "allow_id_overwrite": True,
        "cleanup": {"mode": "manual"},
    }
    spec_file = stack.workdir / "cycle-b.yaml"
    spec_file.write_text(yaml.safe_dump(small_spec(stack, **reverse)))
    planned = cli(stack, "plan", str(spec_file), "--plan-here")
    assert planned.exit_code == 0, planned.output
    said = " ".join(planned.output.split())
    assert f"target namespace 'ns0' is the source of unfinished job {job_a} (cycle-a)" in said
    assert f"source namespace 'ns0' is a target of unfinished job {job_a} (cycle-a)" in said
    _, _, job_b = start_job(stack, small_spec(stack, **reverse))
    assert states(wait_final(db, job_b)) == {"ns0": RunState.VERIFIED}
    [created] = events(db, job_b, "job_created")
    assert len(created["detail"]["warnings"]) == 2, created
    [run_a], [run_b] = jobs_and_runs.runs_of(db, job_a), jobs_and_runs.runs_of(db, job_b)

    results: dict[str, dict[str, Any]] = {}

    def clean(name: str, run_id: int) -> None:
        try:
            ctx = worker_context(stack.database_url, stack.redis_url)
            results[name] = cleaning.cleanup_run(ctx, run_id, actor=name, stop=lambda: bool(meeting.at("proving")))
        finally:
            meeting.ended(name)

    threads = [
        threading.Thread(target=clean, args=("cleanup-a", run_a.id), name="cleanup-a"),
        threading.Thread(target=clean, args=("cleanup-b", run_b.id), name="cleanup-b"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    left = set(stack.pinecone.snapshot("src").get("ns0", {})) | set(stack.pinecone.snapshot("dst").get("ns0", {}))
    assert left == all_ids(), f"{len(all_ids() - left)} ids are in neither store"
    actions = sorted(result["action"] for result in results.values())
    assert actions == ["deleted", "refused"], results
    [refused] = [name for name, result in results.items() if result["action"] == "refused"]
    assert "cleanup of namespace 'ns0' is under way" in results[refused]["reason"]
    assert "nothing is deleted" in results[refused]["reason"]
    # The one refused keeps its source whole and its verdict; asked again, it proves against what is left (nothing,
    # the other cleanup deleted it) and refuses each id.
    kept_job, kept_run, kept_in = (job_b, run_b, "dst") if refused == "cleanup-b" else (job_a, run_a, "src")
    assert set(stack.pinecone.snapshot(kept_in)["ns0"]) == all_ids()
    assert jobs_and_runs.get_run(db, kept_run.id).state == RunState.VERIFIED
    assert any("is under way" in e["detail"]["reason"] for e in events(db, kept_job, "cleanup_refused"))

    again = cleaning.cleanup_run(worker_context(stack.database_url, stack.redis_url), kept_run.id, actor="again")

    assert again["action"] == "refused" and again["count"] == 0, again
    assert set(stack.pinecone.snapshot(kept_in)["ns0"]) == all_ids()
    assert jobs_and_runs.get_run(db, kept_run.id).state == RunState.VERIFY_FAILED
