"""Cut-over on the real stack: an application's dual writes (``orchestrator.cutover.dualwrite``) through the real
Pinecone SDK against the local data plane, ``nsmigrate cutover set|check|publish|watch`` and the cleanup gate, with
real workers, Redis and Postgres. Every check of the data reads the data plane itself (``snapshot``), not the job
table's word for it; which side served a read, the answer's metadata (only the copy carries ``migrated_from``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import redis
from pinecone import Pinecone
from prometheus_client import REGISTRY

from nsmigrate.cli.options import read_cutover
from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex, StoreIndex
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.messaging.task_names import cutover_key
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import load_settings
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.orchestrator.tenancy.tenant_guard import Match
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.syncing import sync_run
from nsmigrate.workers.stores import open_store
from nsmigrate.workers.stores.backup.parquet import MANIFEST_NAME, file_name_for
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.fleet.test_sync_rollback import DIM, cli, events, load_small, reverify, small_spec, states, wait_final
from tests.fleet_jobs import start_job
from tests.polling import wait_until

AppStack = tuple[Stack, WorkerContext]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture(scope="module")
def fleet(module_stack: Stack) -> Stack:
    """One worker that lists, copies and verifies (the jobs, their syncs and their verdicts), started once for the
    module's tests (each runs its own jobs; the pool is not what they test)."""
    module_stack.start_worker("list,copy,verify", 4, pool="threads")
    return module_stack


@pytest.fixture
def app_stack(
    fleet: Stack, shared_stack: Stack, worker_context: Callable[..., WorkerContext]
) -> tuple[Stack, WorkerContext]:
    """The module's stack (the data plane emptied for this test) and the WorkerContext `nsmigrate sync` runs with
    (its dispatcher sends to the module's worker)."""
    return shared_stack, worker_context(shared_stack.database_url, shared_stack.redis_url)


def index(stack: Stack, name: str) -> Any:
    """The application's SDK client of one index."""
    return Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host(name))


def migrated(stack: Stack, **overrides: Any) -> tuple[jobs_database.Database, int]:
    """Two namespaces of 60 vectors copied src → dst and verified."""
    load_small(stack)
    db, _, job_id = start_job(stack, small_spec(stack, **overrides))
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    return db, job_id


#: A load check that passes on a busy machine, in a second.
GENEROUS = {"qps": 10, "duration_s": 1, "p95_ms": 2000, "p99_ms": 2000, "cold_query_ms": 2000}
#: ... and no soak between the rollout's steps (the tests of the soak set their own).
STEPPING = {**GENEROUS, "min_step_s": 0}


def check(stack: Stack, job_id: int) -> tuple[int, dict[str, Any]]:
    result = cli(stack, "cutover", "check", str(job_id), "--json")
    return result.exit_code, json.loads(result.stdout)


def walk_to(stack: Stack, job_id: int, percent: int) -> None:
    """A passing `cutover check`, then `cutover set --reads new` step by step up to ``percent``, as the rails ask."""
    code, report = check(stack, job_id)
    assert code == 0, report["problems"]
    for step in (p for p in ROLLOUT_STEPS[1:] if p <= percent):
        result = cli(stack, "cutover", "set", str(job_id), "--reads", "new", "--percent", str(step))
        assert result.exit_code == 0, result.output


def publish(stack: Stack, job_id: int) -> None:
    """`nsmigrate cutover publish JOB`: what the applications follow (and what they sent of their writes, filed)."""
    published = cli(stack, "cutover", "publish", str(job_id))
    assert published.exit_code == 0, published.output


def dual_writer(stack: Stack, job_id: int, new: Any = None, **kwargs: Any) -> DualWriteIndex:
    """The application's wrapper, as an application builds it: its two indexes and the fleet's Redis, no job table."""
    publish(stack, job_id)
    new = new if new is not None else index(stack, "dst")
    return DualWriteIndex(old=index(stack, "src"), new=new, job_id=job_id, redis_url=stack.redis_url, **kwargs)


def sync_all(ctx: WorkerContext, db: jobs_database.Database, job_id: int, **kwargs: Any) -> None:
    """`nsmigrate sync JOB`, then wait for every namespace's verdict."""
    for run in jobs_and_runs.runs_of(db, job_id):
        sync_run(ctx, run.id, actor="tester", **kwargs)
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}


def assert_target_is_the_source(stack: Stack) -> None:
    """Every namespace of dst holds exactly the ids of src, with the same values and src's metadata (plus what the
    copy adds)."""
    src, dst = stack.pinecone.snapshot("src"), stack.pinecone.snapshot("dst")
    assert sorted(dst) == sorted(src)
    for ns, records in src.items():
        assert sorted(dst[ns]) == sorted(records), ns
        for id_, (values, metadata) in records.items():
            assert np.array_equal(dst[ns][id_][0], values), (ns, id_)
            assert {k: v for k, v in (dst[ns][id_][1] or {}).items() if k != "migrated_from"} == metadata


def test_dual_writes_while_the_job_copies_are_all_in_the_target_after_sync(
    app_stack: AppStack,
) -> None:
    stack, ctx = app_stack
    load_small(stack)
    db, _, job_id = start_job(stack, small_spec(stack))
    app = dual_writer(stack, job_id)
    rng = np.random.default_rng(3)

    # While the job copies: new ids, an update in place, deletes.
    for i in range(10):
        app.upsert(vectors=[(f"new-{i}", rng.random(DIM).tolist(), {"n": 0, "new": True})], namespace="ns0")
    edited = rng.random(DIM).tolist()
    app.upsert(vectors=[{"id": "v0-0001", "values": edited, "metadata": {"n": 0, "edited": True}}], namespace="ns0")
    app.delete(ids=["v1-0005", "v1-0006"], namespace="ns1")
    wait_final(db, job_id)
    sync_all(ctx, db, job_id, propagate_deletes=True)

    assert_target_is_the_source(stack)
    dst = stack.pinecone.snapshot("dst")
    assert {f"new-{i}" for i in range(10)} <= set(dst["ns0"]) and len(dst["ns0"]) == 70
    assert dst["ns0"]["v0-0001"][1]["edited"] is True
    assert np.allclose(dst["ns0"]["v0-0001"][0], edited)
    assert "v1-0005" not in dst["ns1"] and "v1-0006" not in dst["ns1"] and len(dst["ns1"]) == 58
    assert events(db, job_id, "dual_write_failed") == []


def test_a_write_the_new_index_refused_is_recorded_and_repaired_by_sync(app_stack: AppStack) -> None:
    stack, ctx = app_stack
    db, job_id = migrated(stack)
    app = dual_writer(stack, job_id)
    vector = np.random.default_rng(4).random(DIM).tolist()

    stack.pinecone.set_faults("dst", Faults(error_rate_5xx=1.0, error_ops=("upsert",)))
    app.upsert(vectors=[("late-0", vector, {"n": 0})], namespace="ns0")  # the application sees no error
    stack.pinecone.set_faults("dst", Faults())

    assert "late-0" in stack.pinecone.snapshot("src")["ns0"]
    assert "late-0" not in stack.pinecone.snapshot("dst")["ns0"]
    publish(stack, job_id)  # files what the application sent: its failed write
    [failure] = events(db, job_id, "dual_write_failed")
    assert failure["detail"]["ids"] == ["late-0"] and failure["detail"]["operation"] == "upsert"
    assert failure["detail"]["namespace"] == "ns0" and "503" in failure["detail"]["error"]

    sync_all(ctx, db, job_id)

    assert_target_is_the_source(stack)


def test_reads_follow_the_rollout_in_a_running_client(app_stack: AppStack) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover=STEPPING)
    app = dual_writer(stack, job_id, max_age_s=0.2)
    vector = np.random.default_rng(5).random(DIM).tolist()

    def answered_by() -> str:
        [match] = app.query(vector=vector, top_k=1, namespace="ns0", include_metadata=True).matches
        return "new" if "migrated_from" in match.metadata else "old"  # only the copy carries migrated_from

    assert answered_by() == "old"
    walk_to(stack, job_id, 100)
    wait_until(answered_by, what="ns0 read from the new index", done=lambda side: side == "new", timeout_s=10)
    assert cli(stack, "cutover", "set", str(job_id), "--reads", "old").exit_code == 0
    wait_until(answered_by, what="ns0 read from the old index again", done=lambda side: side == "old", timeout_s=10)

    steps = [e["detail"]["percent"] for e in events(db, job_id, "cutover_set")]
    assert steps == [5, 25, 50, 100, 0]


def test_a_bad_rollout_step_is_refused_and_changes_nothing(app_stack: AppStack) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack)

    result = cli(stack, "cutover", "set", str(job_id), "--reads", "new", "--percent", "30")

    assert result.exit_code == 2, result.output
    assert "--percent 30" in result.output and "nothing was changed" in result.output
    assert events(db, job_id, "cutover_set") == []


def test_reads_move_new_only_while_every_namespace_is_verified(app_stack: AppStack) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack)
    stack.pinecone.load("src", "ns1", [("late-1", [0.5] * DIM, {"n": 1})])  # written behind the dual writer's back
    reverify(db, Dispatcher(load_settings(database_url=stack.database_url, redis_url=stack.redis_url)), job_id)

    refused = cli(stack, "cutover", "set", str(job_id), "--reads", "new", "--percent", "5")

    assert refused.exit_code == 1 and "'ns1' of job" in refused.output and "verify_failed" in refused.output
    assert "nothing was changed" in refused.output and events(db, job_id, "cutover_set") == []
    assert cli(stack, "cutover", "set", str(job_id), "--reads", "old").exit_code == 0  # back is always allowed


def test_cleanup_is_refused_during_the_rollout_until_synced_and_reads_are_new_long_enough(
    app_stack: AppStack,
) -> None:
    stack, ctx = app_stack
    db, job_id = migrated(stack, cleanup={"mode": "manual"}, cutover={"decommission_after_s": 3600, **STEPPING})
    job = str(job_id)

    walk_to(stack, job_id, 50)
    refused = cli(stack, "cleanup", job, "--yes")
    assert refused.exit_code == 1 and "reads are 50 % new" in refused.output, refused.output
    # The job's reason, said once: the first namespace with it, the others counted and named.
    assert refused.output.count("reads are 50 % new") == 1, refused.output
    assert "1 more refused for the same reason: ns1" in refused.output, refused.output
    # --decommission-now skips only the wait: a source the application still reads stays.
    refused = cli(stack, "cleanup", job, "--yes", "--decommission-now")
    assert refused.exit_code == 1 and "reads are 50 % new" in refused.output, refused.output
    assert sorted(stack.pinecone.snapshot("src")) == ["ns0", "ns1"]

    assert cli(stack, "cutover", "set", job, "--reads", "new", "--percent", "100").exit_code == 0
    refused = cli(stack, "cleanup", job, "--yes")
    assert refused.exit_code == 1 and "no `nsmigrate sync`" in refused.output, refused.output

    sync_all(ctx, db, job_id)
    refused = cli(stack, "cleanup", job, "--yes")
    assert refused.exit_code == 1 and "decommission_after_s keeps the source" in refused.output, refused.output
    assert sorted(stack.pinecone.snapshot("src")) == ["ns0", "ns1"]  # nothing deleted by a refusal
    assert "cut-over: reads 100 % new, 100 % since" in cli(stack, "status", job).output
    assert json.loads(cli(stack, "status", job, "--json").stdout)["cutover"]["reads_new_percent"] == 100

    done = cli(stack, "cleanup", job, "--yes", "--decommission-now")

    assert done.exit_code == 0, done.output
    assert stack.pinecone.snapshot("src") == {}


def test_the_check_keeps_no_more_queries_in_flight_than_the_setting_says(
    app_stack: AppStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, _ = app_stack
    _, job_id = migrated(stack, cutover=GENEROUS)
    stack.pinecone.set_faults("dst", Faults(latency_ms=300))
    monkeypatch.setenv("NSMIGRATE_CUTOVER_CHECK_IN_FLIGHT", "1")  # the command's environment

    _, report = check(stack, job_id)

    # 10 queries paced over 1 s, each taking 300 ms at the target: one at a time they need 3 s at least (32 at
    # once, the default, end in about 1.3 s).
    assert report["queries"] == 10 and report["errors"] == 0
    assert report["elapsed_s"] >= 3.0, report


def test_the_check_passes_on_a_healthy_target_and_fails_on_a_slow_or_erroring_one(
    app_stack: AppStack,
) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover=GENEROUS)

    code, healthy = check(stack, job_id)
    assert code == 0, healthy["problems"]
    assert healthy["queries"] == 10 and healthy["errors"] == 0 and healthy["agreement"] == 1.0
    assert healthy["cold_queries"] == 2 and healthy["target"]["samples"] == 10

    stack.pinecone.set_faults("dst", Faults(latency_ms=2500))
    code, slow = check(stack, job_id)
    assert code == 1 and any("cutover.p95_ms" in p for p in slow["problems"]), slow["problems"]
    assert any("cutover.cold_query_ms" in p for p in slow["problems"]), slow["problems"]

    stack.pinecone.set_faults("dst", Faults(error_rate_5xx=1.0, error_ops=("query",)))
    code, erroring = check(stack, job_id)
    assert code == 1 and any("cutover.max_error_rate" in p for p in erroring["problems"]), erroring["problems"]
    assert erroring["errors"] == 10

    reports = [e["detail"] for e in events(db, job_id, "cutover_check")]
    assert [r["passed"] for r in reports] == [True, False, False]


def test_a_source_namespace_made_after_the_plan_fails_the_check_until_sync_adds_it_to_the_job(
    app_stack: AppStack,
) -> None:
    """A namespace the application starts after the job was planned is in no run: a sync copies runs only, so a
    cut-over would serve nothing of it. The final sync names it, and the load check, which gates every step toward
    the target, fails on it; `sync --new-namespaces` plans it into the job, which copies and verifies it."""
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover=GENEROUS)
    code, before = check(stack, job_id)
    assert code == 0 and before["late_namespaces"] == [], before["problems"]

    index(stack, "src").upsert(vectors=[("late-1", [0.5] * DIM, {"n": 9})], namespace="ns9")
    stack.pinecone.settle("src")  # the listing shows the new namespace (within the lag it cannot: see the manual)
    synced = cli(stack, "sync", str(job_id), "--wait")

    assert synced.exit_code == 0, synced.output
    warning = re.search(r"warning: 1 source namespace\(s\) that job \d+'s selection takes have no run", synced.output)
    assert warning and "ns9; reads moved to the target would find nothing there" in synced.output, synced.output
    code, after = check(stack, job_id)
    assert code == 1 and after["late_namespaces"] == ["ns9"], after
    assert [p for p in after["problems"] if "have no run in it" in p and "ns9" in p], after["problems"]
    assert "ns9" not in stack.pinecone.snapshot("dst")  # named, not copied: nothing was written for it

    publish(stack, job_id)  # the applications follow the job: once added, ns9 is dual-written too
    both = cli(stack, "sync", str(job_id), "--namespace", "ns0", "--new-namespaces")
    assert both.exit_code == 2 and "--new-namespaces works on the whole job" in both.output, both.output
    added = cli(stack, "sync", str(job_id), "--new-namespaces", "--wait")

    assert added.exit_code == 0, added.output
    assert f"added to job {job_id} 1 namespace(s) made after its plan (1 vectors): ns9" in added.output, added.output
    assert "warning" not in added.output and "published again" in added.output, added.output
    assert "reads of the added namespaces follow the rollout now" in added.output, added.output
    layout = json.loads(redis.Redis.from_url(stack.redis_url).get(cutover_key(job_id, "layout")))
    assert [r["readable"] for r in layout["runs"] if r["source_namespace"] == "ns9"] == [True], layout
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    assert_target_is_the_source(stack)
    code, report = check(stack, job_id)
    assert code == 0 and report["late_namespaces"] == [], report["problems"]
    assert [e["detail"]["names"] for e in events(db, job_id, "namespaces_added")] == ["ns9"]


def test_a_late_namespace_the_plan_refuses_is_not_added_and_nothing_is_written(app_stack: AppStack) -> None:
    """`sync --new-namespaces` plans with every check of a new plan: a late source namespace whose target namespace
    already holds someone else's vectors is refused, and the job, the job table and the target stay as they were."""
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover=GENEROUS)
    index(stack, "src").upsert(vectors=[("late-1", [0.5] * DIM, {"n": 8})], namespace="ns8")
    index(stack, "dst").upsert(vectors=[("theirs", [0.25] * DIM, {"by": "another app"})], namespace="ns8")
    stack.pinecone.settle()
    runs_before = len(jobs_and_runs.runs_of(db, job_id))

    refused = cli(stack, "sync", str(job_id), "--new-namespaces")

    assert refused.exit_code != 0, refused.output
    assert "target namespace(s) already hold vectors" in refused.output and "ns8 (1 vectors)" in refused.output
    assert len(jobs_and_runs.runs_of(db, job_id)) == runs_before and not events(db, job_id, "namespaces_added")
    assert sorted(stack.pinecone.snapshot("dst")["ns8"]) == ["theirs"]


def test_a_late_namespace_of_a_job_that_backs_up_is_exported_before_it_is_added(
    app_stack: AppStack, tmp_path: Path
) -> None:
    """With `backup.enabled`, `run` exports each planned source namespace before the job is written; a namespace
    `sync --new-namespaces` adds is exported the same way before its run is written, and recorded for erasures to
    search. An export that fails adds nothing."""
    stack, _ = app_stack
    backups = tmp_path / "backups"
    db, job_id = migrated(stack, cutover=GENEROUS, backup={"enabled": True, "directory": str(backups)})
    late = [("late-1", [0.5] * DIM, {"n": 7}), ("late-2", [0.25] * DIM, {"n": 7})]
    index(stack, "src").upsert(vectors=late, namespace="ns7")
    stack.pinecone.settle("src")
    runs_before = len(jobs_and_runs.runs_of(db, job_id))
    backups.write_text("a file where the backups' directory goes")

    failed = cli(stack, "sync", str(job_id), "--new-namespaces")

    assert failed.exit_code == 1, failed.output
    assert "backup failed, so the new namespaces were not added to the job" in failed.output, failed.output
    assert len(jobs_and_runs.runs_of(db, job_id)) == runs_before and not events(db, job_id, "namespaces_added")
    assert "ns7" not in stack.pinecone.snapshot("dst")

    wait_final(db, job_id)  # the sync's part that went through: the job's runs verified again
    backups.unlink()
    added = cli(stack, "sync", str(job_id), "--new-namespaces", "--wait")

    assert added.exit_code == 0, added.output
    (directory,) = backups.iterdir()
    manifest = directory / MANIFEST_NAME
    listed = json.loads(manifest.read_text())["namespaces"]
    assert [(e["namespace"], e["count"]) for e in listed] == [("ns7", 2)], listed
    assert sorted(pq.read_table(directory / file_name_for("ns7")).column("id").to_pylist()) == ["late-1", "late-2"]
    [written] = events(db, job_id, "backup_written")
    assert written["detail"] == {"manifest": str(manifest.resolve()), "namespaces": 1, "vectors": 2}
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    assert sorted(stack.pinecone.snapshot("dst")["ns7"]) == ["late-1", "late-2"]


def test_the_check_detects_a_target_answering_differently(app_stack: AppStack) -> None:
    stack, _ = app_stack
    _, job_id = migrated(stack, cutover=GENEROUS)
    rng = np.random.default_rng(6)
    # The target's ns0 changed behind the job's back: same ids, other vectors.
    stack.pinecone.load("dst", "ns0", [(f"v0-{i:04d}", rng.random(DIM).tolist(), {"n": 0}) for i in range(60)])

    code, report = check(stack, job_id)

    assert code == 1 and any("cutover.min_agreement" in p for p in report["problems"]), report["problems"]
    assert report["agreement"] < 0.9 and "ns0" in report["disagreeing"] and "ns1" not in report["disagreeing"]


PGVECTOR = {"kind": "pgvector", "database_url_env": "NSMIGRATE_PGVECTOR_URL"}


def test_dual_writes_reach_a_pgvector_target_and_reads_follow_to_it(
    app_stack: AppStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, _ = app_stack
    monkeypatch.setenv("NSMIGRATE_PGVECTOR_URL", stack.database_url)  # the workers get the same (Stack.env)
    db, job_id = migrated(stack, target=PGVECTOR, cutover=STEPPING)
    target = open_store(PgvectorStoreSpec.model_validate(PGVECTOR))
    app = dual_writer(stack, job_id, new=StoreIndex(target), max_age_s=0.2)
    vector = np.random.default_rng(7).random(DIM).tolist()

    app.upsert(vectors=[("late-0", vector, {"n": 0})], namespace="ns0")
    app.delete(ids=["v0-0003"], namespace="ns0")

    [late] = target.fetch("ns0", ["late-0"])
    assert np.allclose(late.values, vector) and late.metadata["n"] == 0 and "migrated_from" in late.metadata
    assert target.fetch("ns0", ["v0-0003"]) == [] and "v0-0003" not in stack.pinecone.snapshot("src")["ns0"]
    publish(stack, job_id)
    assert events(db, job_id, "dual_write_failed") == []

    walk_to(stack, job_id, 100)
    answer = wait_until(
        lambda: app.query(vector=vector, top_k=1, namespace="ns0"),
        what="ns0 read from pgvector",
        done=lambda a: isinstance(a.matches[0], Match),  # the store's answer, not the SDK's
        timeout_s=10,
    )
    assert answer.matches[0].id == "late-0"


def set_reads(stack: Stack, job_id: int, *args: str) -> Any:
    return cli(stack, "cutover", "set", str(job_id), "--reads", *args)


def test_reads_new_needs_a_percent_and_the_steps_go_in_order_unless_forced_with_a_reason(app_stack: AppStack) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover=STEPPING)
    assert check(stack, job_id)[0] == 0

    no_percent = set_reads(stack, job_id, "new")
    assert no_percent.exit_code == 2 and "--reads new needs --percent" in no_percent.output, no_percent.output
    skipping = set_reads(stack, job_id, "new", "--percent", "25")  # a first step of 25 %
    assert skipping.exit_code == 1 and "the next step is 5 %" in skipping.output, skipping.output
    assert f"cutover set {job_id} --reads new --percent 25 --force --reason TEXT" in skipping.output
    no_reason = set_reads(stack, job_id, "new", "--percent", "25", "--force")
    assert no_reason.exit_code == 2 and "--force needs --reason" in no_reason.output, no_reason.output
    too_far = set_reads(stack, job_id, "new", "--percent", "50", "--force", "--reason", "in a hurry")
    assert too_far.exit_code == 1 and "skips one step, never more" in too_far.output, too_far.output
    assert events(db, job_id, "cutover_set") == []

    forced = set_reads(stack, job_id, "new", "--percent", "25", "--force", "--reason", "5 % ran on staging")
    assert forced.exit_code == 0, forced.output
    again = set_reads(stack, job_id, "new", "--percent", "25")  # a repeat is done, not an error
    assert again.exit_code == 0 and "already: done" in again.output, again.output

    [step] = [e["detail"] for e in events(db, job_id, "cutover_set")]
    assert step["percent"] == 25 and step["skipped"] == [5] and step["reason"] == "5 % ran on staging"


def test_each_step_needs_a_passing_check_of_the_job_taken_within_check_valid_s(app_stack: AppStack) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover={**STEPPING, "check_valid_s": 0.001})
    command = f"`nsmigrate cutover check {job_id}`"

    unchecked = set_reads(stack, job_id, "new", "--percent", "5")
    assert unchecked.exit_code == 1 and "no `cutover check`" in unchecked.output and command in unchecked.output
    assert check(stack, job_id)[0] == 0
    stale = set_reads(stack, job_id, "new", "--percent", "5")
    assert stale.exit_code == 1 and "cutover.check_valid_s = 0.001 s" in stale.output, stale.output
    assert command in stale.output and events(db, job_id, "cutover_set") == []


def test_the_next_step_waits_min_step_s_with_no_breach_and_reads_old_goes_at_once(app_stack: AppStack) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover={**GENEROUS, "min_step_s": 3600})
    walk_to(stack, job_id, 5)

    early = set_reads(stack, job_id, "new", "--percent", "25")
    assert early.exit_code == 1 and "cutover.min_step_s = 3600 s" in early.output, early.output
    assert re.search(r"(359\d|3600) s left", early.output), early.output

    stack.pinecone.set_faults("dst", Faults(error_rate_5xx=1.0, error_ops=("query",)))
    assert check(stack, job_id)[0] == 1  # a breach while the 5 % step is live
    stack.pinecone.set_faults("dst", Faults())
    failed = set_reads(stack, job_id, "new", "--percent", "25")
    assert failed.exit_code == 1 and "failed" in failed.output and f"cutover check {job_id}" in failed.output
    assert check(stack, job_id)[0] == 0
    restarted = set_reads(stack, job_id, "new", "--percent", "25")
    assert restarted.exit_code == 1 and "a breach at" in restarted.output, restarted.output

    back = set_reads(stack, job_id, "old")  # no check, no wait: the way out
    assert back.exit_code == 0, back.output
    assert [e["detail"]["percent"] for e in events(db, job_id, "cutover_set")] == [5, 0]


# What the application's reads see: DualWriteIndex follows the rollout the fleet publishes in Redis (no job table in
# its process), measures its reads per side and sends them to the fleet, where `cutover watch` judges them with its
# own and `status` and the job page show them; a breach moves reads back within its window.

#: Limits a loaded machine's local reads stay far below, and a latency fault far above them: the breach is the
#: fault's doing, not the machine's speed. Five reads of 3 s each fit in the window.
BREACHING = {**STEPPING, "p95_ms": 1000, "p99_ms": 1000, "breach_window_s": 20}
SLOW_MS = 3000

#: The application, in a process of its own whose every way to the job table fails: it writes once, then answers
#: each line on stdin with the side that served a read of ns0.
APP = """
import json, sys
import psycopg, sqlalchemy

def refuse(*args, **kwargs):
    raise AssertionError("the application opened the job table")

sqlalchemy.create_engine = psycopg.connect = refuse
from pinecone import Pinecone
from nsmigrate import DualWriteIndex

job_id, old, new, redis_url, key = sys.argv[1:6]
pc = Pinecone(api_key=key)
app = DualWriteIndex(
    old=pc.Index(host=old), new=pc.Index(host=new), job_id=int(job_id), redis_url=redis_url, max_age_s=0.2
)
vector = [0.25] * int(sys.argv[6])
app.upsert(vectors=[("from-app", vector, {"n": 0})], namespace="ns0")
print("written", flush=True)
for _ in sys.stdin:
    [match] = app.query(vector=vector, top_k=1, namespace="ns0", include_metadata=True).matches
    print("new" if "migrated_from" in (match.metadata or {}) else "old", flush=True)
"""


class Child:
    """The application's process: each ``side()`` asks it which side served a read now."""

    def __init__(self, stack: Stack, job_id: int) -> None:
        hosts = [stack.pinecone.host("src"), stack.pinecone.host("dst")]
        args = [sys.executable, "-c", APP, str(job_id), *hosts, stack.redis_url, SANDBOX_API_KEY, str(DIM)]
        env = {k: v for k, v in stack.env().items() if not k.startswith("NSMIGRATE_DATABASE")}
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self._line() == "written"

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line, f"the application ended: exit code {self.process.wait()}"
        return line

    def side(self) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write("read\n")
        self.process.stdin.flush()
        return self._line()

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


def test_the_application_writes_and_follows_the_rollout_with_no_job_table_in_its_process(
    app_stack: AppStack,
) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover=STEPPING)
    publish(stack, job_id)
    child = Child(stack, job_id)
    try:
        # Its dual write reached both sides, the new one routed and enriched as the copy is.
        assert "from-app" in stack.pinecone.snapshot("src")["ns0"]
        assert "migrated_from" in stack.pinecone.snapshot("dst")["ns0"]["from-app"][1]
        assert child.side() == "old"

        walk_to(stack, job_id, 100)
        wait_until(child.side, what="ns0 read from the new index", done=lambda side: side == "new", timeout_s=10)
        assert cli(stack, "cutover", "set", str(job_id), "--reads", "old").exit_code == 0
        wait_until(child.side, what="ns0 read from the old index", done=lambda side: side == "old", timeout_s=10)
    finally:
        child.stop()
    assert [e["detail"]["percent"] for e in events(db, job_id, "cutover_set")] == [5, 25, 50, 100, 0]


def sample(name: str, job_id: int, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"job_id": str(job_id), **labels}) or 0.0


def test_each_sides_reads_errors_and_empty_answers_are_prometheus_metrics_of_the_application(
    app_stack: AppStack,
) -> None:
    stack, _ = app_stack
    _, job_id = migrated(stack, cutover=STEPPING)
    walk_to(stack, job_id, 50)  # ns0 reads the new index, ns1 the old
    index(stack, "dst").delete(delete_all=True, namespace="ns1")  # its copy is gone: the new side answers nothing
    stack.pinecone.settle("dst")  # once its reads show the delete (a query right after it may still find the copy)
    app = dual_writer(stack, job_id, compare_share=1.0)
    vector = np.random.default_rng(8).random(DIM).tolist()

    for _ in range(4):
        app.query(vector=vector, top_k=3, namespace="ns0")
        app.query(vector=vector, top_k=3, namespace="ns1")
    app.close()  # every comparing read ended
    stack.pinecone.set_faults("dst", Faults(error_rate_5xx=1.0, error_ops=("query",)))
    failing = dual_writer(stack, job_id, compare_share=0)
    with pytest.raises(Exception, match="503"):  # the application sees the error, as without the wrapper
        failing.query(vector=vector, top_k=3, namespace="ns0")
    stack.pinecone.set_faults("dst", Faults())
    failing.close()

    answered = {
        side: sample("nsmigrate_cutover_reads_total", job_id, side=side, reader="app", outcome="answered")
        for side in ("new", "old")
    }
    assert answered == {"new": 8, "old": 8}  # each read of one side compared with the other
    assert sample("nsmigrate_cutover_reads_total", job_id, side="new", reader="app", outcome="error") == 1
    # ns1's copy answered nothing where the source answered: 4 empty answers, all on the new side.
    assert sample("nsmigrate_cutover_empty_reads_total", job_id, side="new", reader="app") == 4
    assert sample("nsmigrate_cutover_empty_reads_total", job_id, side="old", reader="app") == 0
    assert sample("nsmigrate_cutover_read_seconds_count", job_id, side="new", reader="app") == 8
    assert sample("nsmigrate_cutover_reads_new_percent", job_id, reader="app") == 50
    assert sample("nsmigrate_cutover_limit", job_id, limit="p95_ms") == STEPPING["p95_ms"]


class Reading:
    """An application thread reading ns0 and ns1 through ``app`` (about 50 times a second) until stopped, keeping
    (began, side) of each read of ns0 on this process's monotonic clock."""

    def __init__(self, app: DualWriteIndex) -> None:
        self.app, self.reads, self.errors = app, list[tuple[float, str]](), list[str]()
        self._stop = threading.Event()
        self._vector = np.random.default_rng(9).random(DIM).tolist()
        self._thread = threading.Thread(target=self._read, name="application reads", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                [match] = self.app.query(vector=self._vector, top_k=1, namespace="ns0", include_metadata=True).matches
                self.app.query(vector=self._vector, top_k=1, namespace="ns1")
            except Exception as e:  # kept: the test says what went wrong
                self.errors.append(f"{type(e).__name__}: {e}")
                continue
            self.reads.append((began, "new" if "migrated_from" in (match.metadata or {}) else "old"))
            self._stop.wait(0.02)  # an application's pace, well within the service's query limit

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.app.close()


def test_status_and_the_job_page_show_what_the_watch_and_the_applications_reads_saw(app_stack: AppStack) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover={**STEPPING, "breach_window_s": 1})
    walk_to(stack, job_id, 50)
    reading = Reading(dual_writer(stack, job_id, compare_share=1.0))
    try:
        watched = cli(stack, "cutover", "watch", str(job_id), "--duration", "3")
    finally:
        reading.stop()

    assert watched.exit_code == 0 and "no breach" in watched.output, watched.output
    windows = [e["detail"] for e in events(db, job_id, "cutover_reads")]
    assert windows and all(w["percent"] == 50 for w in windows)
    assert any(w["instances"] == 1 and w["figures"]["new"]["by_reader"]["app"] > 0 for w in windows), windows
    assert sample("nsmigrate_cutover_reads_total", job_id, side="new", reader="watch", outcome="answered") > 0
    shown = cli(stack, "status", str(job_id))
    assert "reads at 50 % new, window of 1.0 s" in shown.output, shown.output
    assert "1 application instance(s)" in shown.output and "by applications)" in shown.output, shown.output
    as_json = json.loads(cli(stack, "status", str(job_id), "--json").stdout)["cutover"]
    assert as_json["reads"]["figures"]["new"]["reads"] > 0 and as_json["breach"] is None
    view = read_cutover(stack.database_url, job_id)
    assert view.reads is not None and view.reads[0] == windows[-1]


def test_a_breach_during_a_step_rolls_back_within_its_window_and_the_application_reads_old_after(
    app_stack: AppStack,
) -> None:
    stack, _ = app_stack
    db, job_id = migrated(stack, cutover=BREACHING)
    walk_to(stack, job_id, 50)  # ns0 reads the new index
    reading = Reading(dual_writer(stack, job_id, max_age_s=0.2, compare_share=1.0))
    try:
        wait_until(lambda: reading.reads[-1:], what="the application reading ns0", timeout_s=10)
        assert reading.reads[-1][1] == "new"
        stack.pinecone.set_faults("dst", Faults(latency_ms=SLOW_MS))  # the target serves every read slowly now
        breach = cli(stack, "cutover", "watch", str(job_id), "--duration", "60")
        rolled_back = time.monotonic()
        stack.pinecone.set_faults("dst", Faults())
        # The application goes on reading; each read after its rollout's age has passed shows where it reads now.
        after = rolled_back + 0.2
        wait_until(
            lambda: [r for r in reading.reads if r[0] > after][5:], what="reads after the roll back", timeout_s=30
        )
    finally:
        reading.stop()

    assert breach.exit_code == 1 and "reads moved back to 25 % new" in breach.output, breach.output
    assert reading.errors == []
    assert {side for began, side in reading.reads if began > after} == {"old"}  # never the breaching side after
    [evidence] = [e["detail"] for e in events(db, job_id, "cutover_breach")]
    assert evidence["percent"] == 50 and "cutover.p95_ms = 1000 ms" in evidence["problems"][0]
    window = evidence["window"]
    # Decided within its window of the first breaching read, on the watch's own clock; the applications' reads
    # were judged with the watch's.
    assert window["decided_at_s"] - window["breaching_since_s"] <= BREACHING["breach_window_s"], window
    assert window["new"]["by_reader"]["app"] > 0, window
    assert [e["detail"]["percent"] for e in events(db, job_id, "cutover_set")] == [5, 25, 50, 25]
    assert sample("nsmigrate_cutover_rollbacks_total", job_id) == 1
    assert read_cutover(stack.database_url, job_id).rollout.percent == 25


def test_the_check_times_the_first_query_to_every_namespace_and_names_the_slow_one(app_stack: AppStack) -> None:
    stack, _ = app_stack
    load_small(stack, namespaces=4)
    db, _, job_id = start_job(stack, small_spec(stack, cutover=GENEROUS))
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    stack.pinecone.set_faults("dst", Faults(latency_ms=2500, latency_namespaces=["ns2"]))

    code, report = check(stack, job_id)

    assert code == 1 and report["cold_queries"] == 4, report
    assert report["cold_slowest"][0][0] == "ns2" and report["cold_slowest"][0][1] >= 2500
    [cold] = [p for p in report["problems"] if "cutover.cold_query_ms" in p]
    assert "(the first query to ns2 " in cold and "ns0" not in cold, cold


def test_the_check_replays_the_applications_filters_and_names_each_query_whose_answers_differ(
    app_stack: AppStack, tmp_path: Any
) -> None:
    stack, _ = app_stack
    _, job_id = migrated(stack, cutover=GENEROUS)
    # The target's copy of v0-0003 says another `n` than its source: a filter on `n` reads it otherwise.
    [(values, metadata)] = [stack.pinecone.snapshot("dst")["ns0"]["v0-0003"]]
    stack.pinecone.load("dst", "ns0", [("v0-0003", values.tolist(), {**metadata, "n": 9})])
    vector = np.random.default_rng(10).random(DIM).tolist()
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        json.dumps({"namespace": "ns0", "id": "v0-0003", "top_k": 5, "filter": {"n": {"$eq": 0}}})
        + "\n"
        + json.dumps({"namespace": "ns1", "vector": vector, "top_k": 5, "filter": {"i": {"$lt": 10}}})
        + "\n"
    )
    app = dual_writer(stack, job_id, compare_share=1.0)  # every filtered query recorded
    app.query(vector=vector, top_k=5, namespace="ns1", filter={"i": {"$gte": 50}})
    app.close()

    result = cli(stack, "cutover", "check", str(job_id), "--json", "--queries", str(queries))

    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["filters"]["replayed"] == 3, report["filters"]
    [differs] = report["filters"]["differing"]
    assert differs.startswith(f"query {queries}:1 (namespace 'ns0'") and "only the source's: ['v0-0003']" in differs
    assert differs in report["problems"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"namespace": "ns0", "filter": {"n": 0}}\n')
    refused = cli(stack, "cutover", "check", str(job_id), "--queries", str(bad))
    assert refused.exit_code == 2 and f"query {bad}:1: give exactly one of vector and id" in refused.output


def test_a_step_first_warms_the_namespaces_it_moves_that_the_application_reads_most(app_stack: AppStack) -> None:
    stack, _ = app_stack
    load_small(stack, namespaces=4)  # by name hash: 50 % moves ns0 and ns3; 100 % then ns1 and ns2
    db, _, job_id = start_job(stack, small_spec(stack, cutover={**STEPPING, "warm_top_n": 1}))
    assert set(states(wait_final(db, job_id)).values()) == {RunState.VERIFIED}
    app = dual_writer(stack, job_id, compare_share=0)
    vector = np.random.default_rng(11).random(DIM).tolist()
    for namespace in ("ns2", "ns2", "ns2", "ns1"):
        app.query(vector=vector, top_k=1, namespace=namespace)
    app.close()  # its reads per namespace sent

    walk_to(stack, job_id, 100)

    warmed = {e["detail"]["percent"]: e["detail"].get("warmed") for e in events(db, job_id, "cutover_set")}
    assert [w["namespace"] for w in warmed[100]] == ["ns2"]  # of ns1 and ns2, the one read most
    assert warmed[100][0]["error"] is None and warmed[100][0]["first_ms"] is not None
    assert [w["namespace"] for w in warmed[50]] in (["ns0"], ["ns3"])  # no reads counted: the largest, or the first


def test_one_watch_kept_through_the_steps_watches_the_step_live_now(app_stack: AppStack) -> None:
    """The manual keeps one watch running through every step: after `cutover set` moved reads on, its windows are
    kept for the new step (status shows that step), and it probes the namespaces that step reads new."""
    from nsmigrate.workers.steps.cutover_watch import watch_job

    stack, ctx = app_stack
    db, job_id = migrated(stack, cutover={**STEPPING, "breach_window_s": 0.5})
    walk_to(stack, job_id, 50)
    spec = jobs_and_runs.job_spec(db, job_id)
    windows: list[dict[str, Any]] = []

    def step_on(figures: dict[str, Any]) -> None:
        windows.append(figures)
        if len(windows) == 1:  # another operator's step, while the watch runs
            moved = cli(stack, "cutover", "set", str(job_id), "--reads", "new", "--percent", "100")
            assert moved.exit_code == 0, moved.output

    report = watch_job(ctx, job_id, spec.cutover, "tester", duration_s=2.5, on_window=step_on)

    assert report["watched"] and report["percent"] == 100, report
    kept = [e["detail"]["percent"] for e in events(db, job_id, "cutover_reads")]
    assert kept[0] == 50 and kept[-1] == 100, kept
