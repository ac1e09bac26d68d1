"""Flower smoke test on the real stack: `nsmigrate flower` serves its UI and API behind basic auth only, shows the
fleet's tasks with readable identifiers (job, namespace, batch), and no secret reaches Flower, the worker logs or the
job table.

The workers and Flower get a distinctive ``PINECONE_API_KEY`` (the local data plane accepts any key): if any layer
leaked it — task arguments, worker info, a log line, the stored spec, an event — the string would show up below.
"""

from __future__ import annotations

import ast
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.messaging.task_names import TaskName
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.polling import wait_until

SECRET = "pcsk-test-SECRET-should-never-show"  # key-shaped canary (any key works locally)
NAMESPACES = ("ns0", "ns1")
PER_NAMESPACE = 60
BATCH_SIZE = 20


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("small-src", dimension=8), IndexSpec("small-dst", dimension=8)]


@pytest.fixture
def pinecone_api_key() -> str:
    return SECRET  # this process plans the job with the same key the workers and Flower get


def run_small_job(stack: Stack) -> tuple[jobs_database.Database, int]:
    for n, ns in enumerate(NAMESPACES):
        stack.pinecone.load(
            "small-src", ns, [(f"{ns}-{i:03d}", [0.1 * (n + 1)] * 8, {"n": n}) for i in range(PER_NAMESPACE)]
        )
    spec = parse_spec(
        {
            "name": "flower-smoke",
            "source": {"kind": "pinecone", "host": stack.pinecone.host("small-src")},
            "target": {"kind": "pinecone", "host": stack.pinecone.host("small-dst")},
            "batch_size": BATCH_SIZE,
        }
    )
    settings = Settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    job_id = launch.launch(db, Dispatcher(settings), launch.prepare(spec, open_retrying_store, stack.workdir))
    return db, job_id


def job_table_text(db: jobs_database.Database) -> str:
    """Every row of every job-table table, as text."""
    with db.engine.connect() as conn:
        return "\n".join(
            json.dumps([list(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))], default=str)
            for table in ("jobs", "namespace_runs", "batches", "events")
        )


# A threads worker publishes its task events on a timer (workers.fleet.app.Consumer); a prefork one after each.
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_flower_requires_auth_shows_readable_tasks_and_no_secret(stack: Stack, pool: str) -> None:
    stack.start_worker("list,copy,verify,cleanup", 4, name="fw", pool=pool, PINECONE_API_KEY=SECRET)
    url = stack.start_flower(PINECONE_API_KEY=SECRET)  # before the job: Flower only sees events from its start
    auth = ("admin", stack.flower_password or "")
    client = httpx.Client(base_url=url, timeout=10)

    # Basic auth guards the UI and the API.
    assert client.get("/").status_code == 401
    assert client.get("/api/tasks").status_code == 401
    assert client.get("/", auth=("admin", "wrong-password")).status_code == 401
    assert client.get("/", auth=auth).status_code == 200

    # Flower's event consumer must be connected before the job, or it misses the first tasks.
    wait_until(
        lambda: client.get("/api/workers", auth=auth, params={"refresh": "true"}).json(),
        what="the worker in Flower",
        done=lambda workers: any(name.startswith("fw@") for name in workers),
        timeout_s=30,
        interval_s=0.25,
    )

    db, job_id = run_small_job(stack)
    batches = len(NAMESPACES) * PER_NAMESPACE // BATCH_SIZE
    status = wait_until(
        lambda: jobs_status.job_status(db, job_id),
        what="a verified job",
        done=lambda s: all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in s.runs),
        timeout_s=60,
        interval_s=0.25,
    )
    assert all(r.state == RunState.VERIFIED for r in status.runs), status

    def succeeded(tasks: dict[str, Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for task in tasks.values():
            if task.get("state") == "SUCCESS":
                out[task["name"]] = out.get(task["name"], 0) + 1
        return out

    expected = {
        TaskName.LIST_NAMESPACE.value: len(NAMESPACES),
        TaskName.COPY_BATCH.value: batches,
        TaskName.VERIFY_NAMESPACE.value: len(NAMESPACES),
    }
    tasks_response = wait_until(
        lambda: client.get("/api/tasks", auth=auth),
        what="every task succeeded in Flower",
        done=lambda r: (
            r.status_code == 200 and all(succeeded(r.json()).get(name, 0) >= n for name, n in expected.items())
        ),
        timeout_s=30,
        interval_s=0.25,
    )
    tasks: dict[str, Any] = tasks_response.json()

    # Tasks are named by what they do and carry readable identifiers (only ids: no vectors, no keys).
    assert {t["name"] for t in tasks.values()} <= {name.value for name in TaskName}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for task in tasks.values():
        by_name.setdefault(task["name"], []).append(ast.literal_eval(task["kwargs"]))
    copy_kwargs = by_name[TaskName.COPY_BATCH.value]
    assert all(
        k["job_id"] == job_id and k["namespace"] in NAMESPACES and isinstance(k["batch_id"], int) for k in copy_kwargs
    ), copy_kwargs
    assert len({k["batch_id"] for k in copy_kwargs}) == batches
    # Every namespace was listed; a lister may also have been woken by a batch that finished while it was paging.
    assert {k["namespace"] for k in by_name[TaskName.LIST_NAMESPACE.value]} == set(NAMESPACES)
    assert all(set(k) == {"job_id", "run_id", "namespace"} for k in by_name[TaskName.LIST_NAMESPACE.value])

    # The key is nowhere: Flower's task and worker APIs (and pages), worker and Flower logs, the job table.
    task_info = [client.get(f"/api/task/info/{task_id}", auth=auth).text for task_id in list(tasks)[:5]]
    workers = client.get("/api/workers", auth=auth, params={"refresh": "true"})
    assert workers.status_code == 200 and any(name.startswith("fw@") for name in workers.json())
    pages = [client.get(path, auth=auth).text for path in ("/", "/tasks", "/workers", "/broker")]
    for where, text in [
        ("/api/tasks", tasks_response.text),
        ("/api/task/info", "\n".join(task_info)),
        ("/api/workers", workers.text),
        ("Flower pages", "\n".join(pages)),
    ]:
        assert SECRET not in text, where
    logs = [*sorted(stack.workdir.glob("worker-*.log")), stack.workdir / "flower.log"]
    assert len(logs) == 2
    for log in logs:
        text = log.read_text(errors="replace")
        assert SECRET not in text and auth[1] not in text, log.name
    assert SECRET not in job_table_text(db)
    assert "PINECONE_API_KEY" in job_table_text(db)  # the spec names the variable, as it should
    client.close()
    db.dispose()
