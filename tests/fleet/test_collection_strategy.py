"""`strategy: collection` end to end on the local data plane: a pod index (which cannot list) → a collection → a new
serverless index created from it, driven as a job by real workers and verified by nsmigrate (every target id
fetched from the pod source and compared, and the counts); then a verification that must fail does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import redis as redis_lib
import yaml
from pinecone import Pinecone

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.task_names import TaskName
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.fleet_jobs import nsmigrate
from tests.flower_api import failures_of, open_flower, tasks_of
from tests.polling import wait_for_job, wait_until

POD, NEW = "legacy-pod", "native-serverless"
DIM = 8
NAMESPACES = {"": 40, "twin-a": 130, "twin-b": 7}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(POD, DIM, "euclidean", kind="pod")]


def load_pod(sandbox: PineconeSandbox) -> None:
    rng = np.random.default_rng(7)
    for ns, n in NAMESPACES.items():
        records = [(f"{ns or 'd'}-{i}", rng.random(DIM).tolist(), {"i": i, "tags": ["x", ns]}) for i in range(n)]
        sandbox.load(POD, ns, records)


def write_spec(stack: Stack) -> str:
    control = stack.pinecone.control_host
    data = {
        "name": "Seeds.Native",
        "strategy": "collection",
        "source": {"kind": "pinecone", "index": POD, "control_host": control},
        "target": {
            "kind": "pinecone",
            "index": NEW,
            "control_host": control,
            "create": {"deletion_protection": "enabled", "tags": {"migrated": "collection"}},
        },
        "verify": {"count_timeout_s": 3},  # a count that differs for good fails after this
    }
    path = stack.workdir / "native.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_pod_index_moves_through_a_collection_and_is_verified(stack: Stack) -> None:
    sandbox = stack.pinecone
    load_pod(sandbox)
    sandbox.control.set_delays(ready_delay_s=0.8, collection_delay_s=0.8)
    spec = write_spec(stack)

    planned = nsmigrate(stack, "plan", spec)
    assert planned.exit_code == 0, planned.output
    plan_text = " ".join(planned.output.split())
    assert f"target index {NEW} will be created: serverless aws/us-east-1, {DIM}-dim euclidean" in plan_text
    assert f"strategy collection: a collection of pod index {POD}, then serverless index {NEW}" in plan_text
    assert sandbox.control.collection_names() == [] and NEW not in sandbox.names()  # a dry run

    stack.start_worker("list,verify", 4, pool="threads")
    result = nsmigrate(stack, "run", spec, "--wait")

    assert result.exit_code == 0, result.output
    db = jobs_database.Database(stack.database_url)
    try:
        job_id = jobs_status.list_jobs(db)[0]["job_id"]
        status = jobs_status.job_status(db, job_id)
        assert status.phase == "restored"
        assert {r.source_namespace: r.state for r in status.runs} == dict.fromkeys(NAMESPACES, "verified")
        by_ns = {r.source_namespace: r for r in jobs_and_runs.runs_of(db, job_id)}
        for ns, n in NAMESPACES.items():
            report = by_ns[ns].verification or {}
            assert report["passed"] and report["ids_expected"] == n and report["content_checked"] == n
            assert (report["source_count"], report["target_count"]) == (n, n)
        actions = [e["action"] for e in jobs_status.events_of(db, job_id)]
        for action in ("collection_collecting", "collection_restoring", "target_index_created", "collection_restored"):
            assert action in actions
        assert actions.index("collection_collecting") < actions.index("collection_restoring")
    finally:
        db.dispose()

    # Equal contents, every namespace under its own name; the pod index was never listed.
    source, target = sandbox.snapshot(POD), sandbox.snapshot(NEW)
    assert target.keys() == source.keys()
    for ns, records in source.items():
        assert target[ns].keys() == records.keys()
        for id_, (values, metadata) in records.items():
            assert np.array_equal(target[ns][id_][0], values) and target[ns][id_][1] == metadata
    assert not {"list", "list_namespaces"} & set(sandbox.stats(POD)["requests"])
    described = Pinecone(api_key=SANDBOX_API_KEY, host=sandbox.control_host).describe_index(NEW)
    assert described.deletion_protection == "enabled" and described.tags == {"migrated": "collection"}
    shown = nsmigrate(stack, "status", str(job_id))
    assert "strategy collection: restored" in " ".join(shown.output.split())

    # The same verification fails when the copy is not what the source holds.
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=sandbox.host(NEW))
    index.upsert(vectors=[("intruder", [1.0] * DIM)], namespace="twin-b")
    index.upsert(vectors=[("twin-a-3", [9.0] * DIM, {"i": 3, "tags": ["x", "twin-a"]})], namespace="twin-a")
    index.delete(ids=["d-0"], namespace="")
    sandbox.settle(NEW)  # changed before the verification was asked for: its reads show it
    failed = nsmigrate(stack, "verify", str(job_id))
    assert failed.exit_code == 1, failed.output
    reports = {
        r["source_namespace"]: r["verification"] for r in json.loads(nsmigrate(stack, "report", str(job_id)).stdout)
    }
    assert reports["twin-b"]["extra_ids"] == ["intruder"] and not reports["twin-b"]["passed"]
    assert reports["twin-a"]["content_mismatches"][0]["id"] == "twin-a-3"
    assert (reports["__default__"]["source_count"], reports["__default__"]["target_count"]) == (40, 39)
    assert "target count 39 ≠ source count 40" in reports["__default__"]["reasons"]


def test_an_existing_target_is_refused_before_anything_is_made(stack: Stack, tmp_path: Path) -> None:
    sandbox = stack.pinecone
    load_pod(sandbox)
    sandbox.add_index(IndexSpec(NEW, DIM, "euclidean"))
    result = nsmigrate(stack, "run", write_spec(stack))
    assert result.exit_code == 2, result.output
    assert f"strategy `collection` creates the target index {NEW}, and it exists already" in " ".join(
        result.stderr.split()
    )
    assert sandbox.control.collection_names() == []


def test_a_step_that_fails_ends_the_runs_with_the_error_and_retry_goes_on(stack: Stack) -> None:
    sandbox = stack.pinecone
    load_pod(sandbox)
    sandbox.control.set_delays(ready_delay_s=0.3, collection_delay_s=1.5)
    stack.start_worker("list,verify", 2, pool="threads", name="coll")
    flower = open_flower(stack, "coll")
    started = nsmigrate(stack, "run", write_spec(stack))
    assert started.exit_code == 0, started.output
    db = jobs_database.Database(stack.database_url)
    try:
        job_id = jobs_status.list_jobs(db)[0]["job_id"]
        wait_until(sandbox.control.collection_names, what="the collection started", timeout_s=30)
        sandbox.add_index(IndexSpec(NEW, DIM, "euclidean"))  # someone takes the target's name meanwhile

        def failed(status: JobStatus) -> bool:
            return all(r.state == "list_failed" for r in status.runs)

        status = wait_for_job(db, job_id, failed, timeout_s=60)
        assert status.phase == "collecting"
        assert all(
            f"target index {NEW} appeared before nsmigrate created it" in (r.last_error or "") for r in status.runs
        )
        shown = " ".join(nsmigrate(stack, "status", str(job_id)).output.split())
        assert "strategy collection: collecting" in shown and "list_failed" in shown
        # The step that gave up is a FAILURE in Flower, with the reason and the job, where operators look first.
        [failure] = failures_of(flower, TaskName.COLLECTION_STEP)
        assert failure["kwargs"]["job_id"] == job_id
        assert failure["exception"].startswith("CollectionFailed("), failure
        assert f"target index {NEW} appeared before nsmigrate created it" in failure["exception"]
        assert f"(job {job_id})" in failure["exception"]

        sandbox.remove_index(NEW)
        retried = nsmigrate(stack, "retry", str(job_id))
        assert retried.exit_code == 0, retried.output

        def verified(status: JobStatus) -> bool:
            return all(r.state == "verified" for r in status.runs)

        status = wait_for_job(db, job_id, verified, timeout_s=90)
        assert status.phase == "restored"
        assert sandbox.count(NEW) == sum(NAMESPACES.values())
        actions = [e["action"] for e in jobs_status.events_of(db, job_id)]
        assert actions.count("collection_collecting") == 1 and "collection_failed" in actions
        succeeded = tasks_of(flower, taskname=TaskName.COLLECTION_STEP.value, state="SUCCESS")
        assert any(task["result"]["step"] == "restored" for task in succeeded), succeeded
    finally:
        db.dispose()
        flower.close()


def test_a_step_whose_message_is_lost_is_sent_again_by_the_sweep(stack: Stack) -> None:
    """The job's first step is taken off its queue by a worker that died (kombu's BRPOP before Redis records it): no
    step would ever come, the job `collecting` for good until an operator's `resume`. The workers' sweep sends the step
    again once the job's runs saw no change for the visibility timeout (5 s here); a step sent again while the job's
    chain is alive would take it over (``workers.steps.step_chain``), so a collection job is swept as any."""
    sandbox = stack.pinecone
    load_pod(sandbox)
    sandbox.control.set_delays(ready_delay_s=0.5, collection_delay_s=0.5)
    started = nsmigrate(stack, "run", write_spec(stack))  # no worker yet: the first step waits on its queue
    assert started.exit_code == 0, started.output
    assert redis_lib.Redis.from_url(stack.redis_url).rpop("list") is not None  # taken by a worker that died

    stack.start_worker("list,verify", 4, pool="threads", NSMIGRATE_VISIBILITY_TIMEOUT_S="5")
    db = jobs_database.Database(stack.database_url)
    try:
        job_id = jobs_status.list_jobs(db)[0]["job_id"]
        wait_for_job(db, job_id, lambda s: all(r.state == "verified" for r in s.runs), timeout_s=120)
        actions = [e["action"] for e in jobs_status.events_of(db, job_id)]
    finally:
        db.dispose()
    assert "stalled_runs_resent" in actions and actions.count("collection_collecting") == 1, actions
    assert sandbox.snapshot(NEW).keys() == sandbox.snapshot(POD).keys()
