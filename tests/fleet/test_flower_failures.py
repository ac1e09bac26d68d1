"""Flower tells the truth about failures, on the real stack: real `nsmigrate worker` processes, the real `nsmigrate
flower`, the real SDK against the local data plane answering 503 on purpose.

A batch that gave up is a FAILURE task in Flower, with its error, job, namespace and batch in its kwargs and
exception, acknowledged once (not redelivered); its re-run after `nsmigrate retry` is a SUCCESS whose result says
what it copied and what it cost. No secret reaches a task's args, kwargs, result or exception.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
import redis
from pinecone import Pinecone

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.messaging.task_names import TaskName
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.flower_api import failures_of, open_flower, tasks_of
from tests.polling import wait_for_job, wait_until

SECRET = "pcsk-test-SECRET-flower-failures"  # key-shaped canary (the local data plane accepts any key)
COPY = TaskName.COPY_BATCH.value
GROUP = TaskName.COPY_SMALL_NAMESPACES.value


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("ff-src", dimension=8), IndexSpec("ff-dst", dimension=8)]


@pytest.fixture
def pinecone_api_key() -> str:
    return SECRET  # this process plans the job with the same key the workers and Flower get


def load(stack: Stack, sizes: dict[str, int]) -> dict[str, list[str]]:
    """``sizes``: ids per source namespace ("" is the default one)."""
    loaded: dict[str, list[str]] = {}
    for n, (ns, size) in enumerate(sizes.items()):
        ids = [f"{ns or 'default'}-{i:04d}" for i in range(size)]
        stack.pinecone.load(
            "ff-src", ns, [(id_, [0.1 * (n + 1), k / size] + [0.5] * 6, {"n": n}) for k, id_ in enumerate(ids)]
        )
        loaded[ns] = ids
    return loaded


def spec_of(stack: Stack, batch_size: int, name: str) -> dict[str, Any]:
    """A copy from ff-src to ff-dst."""
    return {
        "name": name,
        "source": {"kind": "pinecone", "host": stack.pinecone.host("ff-src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("ff-dst")},
        "batch_size": batch_size,
    }


def settings_of(stack: Stack) -> Settings:
    return Settings(database_url=stack.database_url, redis_url=stack.redis_url)


def start_job(stack: Stack, batch_size: int) -> tuple[jobs_database.Database, int]:
    """`nsmigrate run` of a copy from ff-src to ff-dst, as a user starts it."""
    path = stack.workdir / "flower-failures.yaml"
    path.write_text(json.dumps(spec_of(stack, batch_size, "flower-failures")))  # JSON is YAML
    started = cli(stack, "run", str(path))
    assert started.returncode == 0, started.stderr
    return jobs_database.Database(stack.database_url), int(started.stdout.strip().splitlines()[-1])


def start_fleet(stack: Stack, attempts: int = 2) -> httpx.Client:
    """A worker whose store requests give up after ``attempts`` quick attempts, and Flower started right after it (as
    the demo and a compose file start them) and receiving the worker's events before any job."""
    stack.start_worker(
        "list,copy,verify,cleanup",
        4,
        pool="threads",  # what Flower shows of a task does not depend on the pool (test_flower.py runs both)
        name="ff",
        PINECONE_API_KEY=SECRET,
        NSMIGRATE_RETRY_ATTEMPTS=str(attempts),
        NSMIGRATE_RETRY_MAX_WAIT_S="0.05",
    )
    return open_flower(stack, "ff", PINECONE_API_KEY=SECRET)


def flower_found_the_pool(client: httpx.Client) -> None:
    """Flower's first inspection (at its start, never refreshed) found the worker's pool and queues: its Workers
    page shows them."""
    [info] = [v for k, v in client.get("/api/workers").json().items() if k.startswith("ff@")]
    assert info["stats"]["pool"]["max-concurrency"] == 4
    assert sorted(q["name"] for q in info["active_queues"]) == ["cleanup", "copy", "list", "verify"]


def judged(status: JobStatus) -> bool:
    return all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in status.runs)


def namespaces_of(task: dict[str, Any]) -> list[str]:
    kwargs = task["kwargs"]
    return list(kwargs["namespaces"]) if "namespaces" in kwargs else [kwargs["namespace"]]


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nsmigrate", *args],
        env=stack.env(PINECONE_API_KEY=SECRET),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=stack.workdir,  # where `erase` writes its receipt
    )


def no_secret_in_tasks(client: httpx.Client, tasks: list[dict[str, Any]]) -> None:
    raw = client.get("/api/tasks").text
    assert SECRET not in raw
    for task in tasks:
        info = client.get(f"/api/task/info/{task['uuid']}").text
        assert SECRET not in info, task["name"]


def test_every_namespace_with_a_failed_batch_is_a_flower_failure_and_its_retry_a_success(stack: Stack) -> None:
    # Two namespaces of several batches (the default one among them) and two small ones copied by group tasks.
    sizes = {"": 45, "big": 60, "tiny-a": 3, "tiny-b": 4}
    loaded = load(stack, sizes)
    client = start_fleet(stack)
    stack.pinecone.set_faults("ff-dst", Faults(error_rate_5xx=1.0, error_ops=("upsert",)))
    db, job_id = start_job(stack, batch_size=20)
    shown = {"": "__default__", "big": "big", "tiny-a": "tiny-a", "tiny-b": "tiny-b"}

    def every_batch_failed(s: JobStatus) -> bool:
        busy = any(r.batches.queued or r.batches.running for r in s.runs)
        return sum(r.batches.failed for r in s.runs) == 3 + 3 + 1 + 1 and not busy

    status = wait_for_job(db, job_id, every_batch_failed, timeout_s=60)
    failed_batches = {b.batch_id: b for b in status.failed_batches}
    assert {b.namespace for b in failed_batches.values()} == set(sizes)

    # Flower: one FAILURE per failed batch (copy tasks) or small namespace (group tasks), each naming its job,
    # namespace and error; none redelivered (every message acknowledged), none SUCCESS.
    failures = wait_until(
        lambda: tasks_of(client, state="FAILURE", search=f"kwargs:job_id={job_id}"),
        what="every failed batch a FAILURE in Flower",
        done=lambda ts: len(ts) == len(failed_batches),
        timeout_s=30,
        interval_s=0.25,
    )
    copy_failures = [t for t in failures if t["name"] == COPY]
    assert sorted(t["kwargs"]["batch_id"] for t in copy_failures) == sorted(
        b.batch_id for b in failed_batches.values() if b.namespace in ("", "big")
    )
    assert sorted(ns for t in failures for ns in namespaces_of(t)) == sorted(
        shown[b.namespace] for b in failed_batches.values()
    )
    for task in failures:
        assert task["kwargs"]["job_id"] == job_id
        assert "answered 503 after 2 attempts" in task["exception"], task["exception"]
        for ns in namespaces_of(task):
            assert f"namespace {ns}" in task["exception"] or f"{ns}: " in task["exception"], task["exception"]
    for task in copy_failures:
        assert task["exception"].startswith("BatchFailed("), task["exception"]
        assert f"batch {task['kwargs']['batch_id']})" in task["exception"]
    assert {t["name"] for t in failures} == {COPY, GROUP}
    assert not [t for t in tasks_of(client, taskname=COPY) if t["state"] == "SUCCESS"]
    assert redis.Redis.from_url(stack.redis_url).hlen("unacked") == 0, (
        "a failed task's message was left for Redis to redeliver"
    )

    # The CLI says the same: the failed batches with their errors, the summary's count, an event per failure.
    as_json = json.loads(cli(stack, "status", str(job_id), "--json").stdout)
    assert sorted(b["batch_id"] for b in as_json["failed_batches"]) == sorted(failed_batches)
    assert all("503" in b["error"] and b["attempts"] == 1 for b in as_json["failed_batches"])
    summary = cli(stack, "status", str(job_id)).stdout
    assert "8 batches failed in 4 namespaces" in summary, summary
    events = jobs_status.events_of(db, job_id)
    assert sorted(e["detail"]["batch_id"] for e in events if e["action"] == "batch_failed") == sorted(failed_batches)

    # The fault is gone: `nsmigrate retry` re-queues exactly those batches and says which.
    stack.pinecone.set_faults("ff-dst", Faults())
    retried = cli(stack, "retry", str(job_id))
    assert retried.returncode == 0, retried.stderr
    assert "8 failed batches and 0 failed listers re-queued" in retried.stdout
    for b in failed_batches.values():
        assert f"{shown[b.namespace]}: " in retried.stdout
    [retry_event] = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "retry"]
    assert retry_event["detail"]["batches"] == 8 and sorted(retry_event["detail"]["namespaces"]) == sorted(sizes)

    status = wait_for_job(db, job_id, judged)
    assert all(r.state == RunState.VERIFIED for r in status.runs), status
    target = Pinecone(api_key=SECRET).Index(host=stack.pinecone.host("ff-dst"))
    for ns, ids in loaded.items():
        assert set(target.fetch(ids=ids, namespace=ns).vectors) == set(ids)

    # Flower shows each re-run a SUCCESS with what it copied (the batch's vectors) and its requests.
    reruns = wait_until(
        lambda: [t for t in tasks_of(client, taskname=COPY, state="SUCCESS")],
        what="the re-runs SUCCESS in Flower",
        done=lambda ts: len(ts) == len(failed_batches),
        timeout_s=30,
        interval_s=0.25,
    )
    assert sorted(t["kwargs"]["batch_id"] for t in reruns) == sorted(failed_batches)
    assert not jobs_status.job_status(db, job_id).failed_batches
    copied = {t["kwargs"]["batch_id"]: t["result"] for t in reruns}
    assert sum(r["vectors"] for r in copied.values()) == sum(len(ids) for ids in loaded.values())
    assert all(r["requests"] >= 2 and r["5xx"] == 0 and r["retries"] == 0 for r in copied.values()), copied
    no_secret_in_tasks(client, tasks_of(client))
    flower_found_the_pool(client)
    assert "Inspect method" not in (stack.workdir / "flower.log").read_text(errors="replace")
    client.close()
    db.dispose()


def test_one_failed_batch_of_forty_is_the_one_flower_failure_and_the_rest_is_copied_and_verified(
    stack: Stack,
) -> None:
    loaded = load(stack, {"a": 200, "b": 200, "c": 200, "d": 200})  # 4 namespaces × 10 batches of 20
    client = start_fleet(stack)
    poison = loaded["c"][107]  # in c's sixth batch: the target refuses every upsert holding it
    stack.pinecone.set_faults("ff-dst", Faults(refuse_ids=(poison,)))
    db, job_id = start_job(stack, batch_size=20)

    def three_verified_one_failed(s: JobStatus) -> bool:
        return sum(r.state == RunState.VERIFIED for r in s.runs) == 3 and len(s.failed_batches) == 1

    status = wait_for_job(db, job_id, three_verified_one_failed, timeout_s=90)
    [failed] = status.failed_batches
    assert failed.namespace == "c" and "503" in (failed.error or "")
    [c] = [r for r in status.runs if r.source_namespace == "c"]
    assert (c.state, c.batches.done, c.batches.failed, c.copied, c.failed) == (RunState.COPYING, 9, 1, 180, 20)
    summary = cli(stack, "status", str(job_id)).stdout
    assert "1 batch failed in 1 namespace" in summary, summary
    watched = cli(stack, "watch", str(job_id))  # settled: it prints its live line once, then the summary
    assert watched.returncode == 1
    assert f"job {job_id}: 780/800 copied, 20 failed; 1 batch failed in 1 namespace\n" in watched.stdout, watched.stdout

    # The 39 other batches are in the target, equal to the source; the failed one's ids are not.
    source = Pinecone(api_key=SECRET).Index(host=stack.pinecone.host("ff-src"))
    target = Pinecone(api_key=SECRET).Index(host=stack.pinecone.host("ff-dst"))
    failed_ids = set(loaded["c"][100:120])
    assert poison in failed_ids
    for ns, ids in loaded.items():
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            written = target.fetch(ids=chunk, namespace=ns).vectors
            assert set(written) == set(chunk) - failed_ids
            originals = source.fetch(ids=chunk, namespace=ns).vectors
            assert all(written[i].values == originals[i].values for i in written)

    # Flower: exactly one copy FAILURE (that batch, its namespace and error), 39 copy SUCCESSes.
    copies = wait_until(
        lambda: tasks_of(client, taskname=COPY),
        what="40 finished copy tasks in Flower",
        done=lambda ts: sum(t["state"] in ("SUCCESS", "FAILURE") for t in ts) == 40,
        timeout_s=30,
        interval_s=0.25,
    )
    [failure] = [t for t in copies if t["state"] == "FAILURE"]
    assert failure["kwargs"] == {"batch_id": failed.batch_id, "job_id": job_id, "run_id": c.run_id, "namespace": "c"}
    assert (
        "503" in failure["exception"]
        and f"(job {job_id}, namespace c, batch {failed.batch_id})" in failure["exception"]
    )
    successes = [t for t in copies if t["state"] == "SUCCESS"]
    assert len(successes) == 39 and all(t["result"]["vectors"] == 20 for t in successes)

    # A copy task delivered again for a batch that is done does nothing and stays SUCCESS.
    done = successes[0]["kwargs"]
    Dispatcher(settings_of(stack)).copy_batch(
        done["batch_id"], job_id=job_id, run_id=done["run_id"], namespace=done["namespace"]
    )
    again = wait_until(
        lambda: [t for t in tasks_of(client, taskname=COPY) if t["kwargs"]["batch_id"] == done["batch_id"]],
        what="the copy task sent again finished in Flower",
        done=lambda ts: len(ts) == 2 and all(t["state"] in ("SUCCESS", "FAILURE") for t in ts),
        timeout_s=30,
        interval_s=0.25,
    )
    assert [t["state"] for t in again] == ["SUCCESS", "SUCCESS"]
    assert sorted(t["result"]["vectors"] for t in again) == [0, 20]
    no_secret_in_tasks(client, copies)
    client.close()
    db.dispose()


def test_a_successful_task_counts_the_429s_and_5xxs_it_retried_and_the_steps_that_judge_fail_too(
    stack: Stack,
) -> None:
    loaded = load(stack, {"p": 120, "q": 120, "tiny": 3})
    client = start_fleet(stack, attempts=12)
    # Upserts answer 503 or 429 now and then (seeded); every one is retried within the task, which then succeeds.
    faults = Faults(error_rate_5xx=0.2, error_rate_429=0.2, retry_after_s=0.01, error_ops=("upsert",), seed=3)
    stack.pinecone.set_faults("ff-dst", faults)
    db, job_id = start_job(stack, batch_size=20)
    status = wait_for_job(db, job_id, judged)
    assert all(r.state == RunState.VERIFIED for r in status.runs), status
    copies = wait_until(
        lambda: [t for t in tasks_of(client) if t["name"] in (COPY, GROUP) and t["state"] == "SUCCESS"],
        what="every copy task SUCCESS in Flower",
        done=lambda ts: sum(t["result"]["vectors"] for t in ts) == sum(len(ids) for ids in loaded.values()),
        timeout_s=30,
        interval_s=0.25,
    )
    injected = stack.pinecone.stats("ff-dst")
    assert sum(t["result"]["5xx"] for t in copies) == injected["injected_5xx"] > 0
    assert sum(t["result"]["429"] for t in copies) == injected["injected_429"] > 0
    assert all(t["result"]["retries"] == t["result"]["429"] + t["result"]["5xx"] for t in copies), copies
    assert sum(t["result"]["requests"] for t in copies) > len(copies)

    # A verification that does not pass is a FAILURE naming its namespace and why; so is a lister that fails.
    stack.pinecone.set_faults("ff-dst", Faults())
    target = Pinecone(api_key=SECRET).Index(host=stack.pinecone.host("ff-dst"))
    target.delete(ids=loaded["p"][:3], namespace="p")
    assert cli(stack, "verify", str(job_id), "--namespace", "p").returncode == 1
    [verdict] = failures_of(client, TaskName.VERIFY_NAMESPACE)
    assert verdict["exception"].startswith("VerificationFailed(") and "3 source ids missing" in verdict["exception"]
    assert f"(job {job_id}, namespace p)" in verdict["exception"]
    # A cleanup of that namespace is refused (the spec's cleanup.mode is `never`), deletes nothing and is a FAILURE.
    [p_run] = [r for r in jobs_status.job_status(db, job_id).runs if r.source_namespace == "p"]
    Dispatcher(settings_of(stack)).cleanup_namespace(p_run.run_id, job_id=job_id, namespace="p")
    [cleanup] = failures_of(client, TaskName.CLEANUP_NAMESPACE)
    assert (
        cleanup["exception"].startswith("CleanupFailed(")
        and "cleanup refused: the job spec's cleanup.mode is `never`" in cleanup["exception"]
    )
    assert f"(job {job_id}, namespace p)" in cleanup["exception"]
    assert stack.pinecone.stats("ff-src")["requests"].get("delete_namespace", 0) == 0

    stack.pinecone.load("ff-src", "r", [(f"r-{i:03d}", [0.5] * 8, {}) for i in range(150)])
    spec = parse_spec({**spec_of(stack, 20, "flower-failures-list"), "namespaces": {"include": ["r"]}})
    prepared = launch.prepare(spec, open_retrying_store, stack.workdir)  # planned while the source lists …
    stack.pinecone.set_faults("ff-src", Faults(error_rate_5xx=1.0, error_ops=("list",)))  # … then it never does
    listed_job = launch.launch(db, Dispatcher(settings_of(stack)), prepared)
    [lister] = failures_of(client, TaskName.LIST_NAMESPACE)
    assert lister["exception"].startswith("ListingFailed(") and "answered 503 after 12 attempts" in lister["exception"]
    assert lister["kwargs"]["job_id"] == listed_job
    no_secret_in_tasks(client, tasks_of(client))
    client.close()
    db.dispose()


def test_an_erasure_place_that_fails_is_a_flower_failure_and_its_resume_a_success(stack: Stack) -> None:
    stack.pinecone.load("ff-dst", "creator_a.1", [("x", [0.5] * 8, None), ("y", [0.4] * 8, None)])
    client = start_fleet(stack)
    spec = stack.workdir / "erase.yaml"
    store = {"kind": "pinecone", "host": stack.pinecone.host("ff-dst")}
    spec.write_text(json.dumps({"name": "erase-flower", "source": store, "target": store}))
    stack.pinecone.set_faults("ff-dst", Faults(error_rate_5xx=1.0, error_ops=("delete", "delete_namespace")))

    failed = cli(stack, "erase", "a.1", "--spec", str(spec), "--yes", "--timeout-s", "60")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    [failure] = failures_of(client, TaskName.ERASE_PLACE)
    job_id = failure["kwargs"]["job_id"]
    assert failure["kwargs"]["place"].endswith("/creator_a.1")
    assert failure["exception"].startswith("ErasureFailed(") and "(503)" in failure["exception"], failure
    assert f"(job {job_id}, place namespace creator_a.1)" in failure["exception"]
    stack.pinecone.set_faults("ff-dst", Faults())

    resumed = cli(stack, "erase", "--resume", str(job_id), "--timeout-s", "60")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    [success] = wait_until(
        lambda: tasks_of(client, taskname=TaskName.ERASE_PLACE.value, state="SUCCESS"),
        what="the resumed erasure SUCCESS in Flower",
        timeout_s=30,
        interval_s=0.25,
    )
    assert success["result"]["erased"] == 2 and success["result"]["requests"] > 0
    no_secret_in_tasks(client, tasks_of(client))
    client.close()
