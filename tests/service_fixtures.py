"""Services the service and fleet tiers share, defined once (Redis and Postgres are in ``tests/conftest.py``, which
loads this module as a plugin).

- ``sandbox_indexes``: the indexes of a module's local Pinecone data plane. A test module overrides this fixture to
  choose them (``@pytest.fixture(scope="module") def sandbox_indexes(): return [IndexSpec(...), ...]``), and
  ``sandbox_lag_s`` (``TEST_LAG_S``) only with a reason it states.
- ``module_sandbox``: that data plane, started once per module (for module-scoped data); ``sandbox`` is the same one
  as each test gets it: emptied, without faults, and with the SDK's per-host state forgotten. Its reads lag writes
  (as the service's do) by ``TEST_LAG_S``: a test's setup that reads what it just wrote calls ``settle()`` first.
- ``stack``: a test's own worker stack (the session's Redis, a fresh database, a fresh data plane with the module's
  indexes); the test starts the workers it needs. ``pinecone_api_key`` is the key the test process sends.
- ``module_stack``: a stack a module's tests share, for tests that each run their own jobs on workers the module
  starts once (its own Redis, nobody flushes it; a job-table database of the module's; the module's data plane);
  ``shared_stack`` is that stack as each test gets it: the data plane and the job table emptied (no earlier test's
  jobs, whose history a deletion's checks would read), no faults, a workdir of the test's own; the next test gets
  it once this test's tasks ended (``wait_for_tasks_to_end``). A test on it finds its jobs by id, and must not
  stop, kill or restart what the module started.
- ``start_standin``: starts PostgREST stand-ins (Supabase's REST API over a test database), stopped after the test.
- ``pg``: an engine on a fresh database that ``$NSMIGRATE_PGVECTOR_URL`` names (the pgvector commands' and the
  documented store's default), for the tests of pgvector tables; ``$NSMIGRATE_DATABASE_URL`` names it too (the job
  table, where those commands write their audit records).
- ``object_storage``: an S3-compatible server (moto's, in this process, started once per session) with one empty
  bucket of the test's own (``ObjectStorage.bucket``), and the keys of a storage integration that reads it; a
  Pinecone data plane's bulk imports read from it once told (``ObjectStorage.configure``).
- ``worker_context``: makes the ``WorkerContext`` a task runs with (optionally with a stand-in dispatcher that records
  what would be sent); its stores and job-table connections are closed after the test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa
from celery import Celery

from nsmigrate.orchestrator.models import Base, SchemaInfo
from nsmigrate.orchestrator.settings import load_settings
from nsmigrate.workers.context import WorkerContext
from nsmigrate_sandbox.pinecone_control import ControlFaults
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.postgrest import PostgrestStandIn
from nsmigrate_sandbox.services import RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.polling import wait_until
from tests.sdk_internals import reset_sdk_host_state

#: How long the tests' data planes' reads lag their writes: the service's lag (a second; a document index's minute),
#: shortened so that a job waits for it in a fraction of the time. Reads never see a write at once.
TEST_LAG_S = 0.2


@dataclasses.dataclass(frozen=True)
class ObjectStorage:
    """The test's bucket on the session's S3-compatible server, and the storage integration that reads it."""

    url: str
    bucket: str
    region: str = "us-east-1"
    access_key_id: str = "nsmigrate-test-key-id"
    secret_access_key: str = "nsmigrate-test-secret"  # the local server checks no signature: not a credential
    integration_id: str = "nsmigrate-test-integration"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every key of the bucket under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def configure(self, sandbox: PineconeSandbox, *names: str, pace_s: float = 0.5) -> None:
        """Let the data plane's indexes ``names`` (none given: the project's every index, those created later too)
        import from this server, through the integration ``integration_id``."""
        integration = {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}
        storage = {"endpoint_url": self.url, "region": self.region, "pace_s": pace_s}
        for name in names or [None]:
            sandbox.set_object_storage(name, {**storage, "integrations": {self.integration_id: integration}})


@pytest.fixture(scope="session")
def object_storage_server() -> Iterator[str]:
    """An S3-compatible server (moto's server mode, in a thread of this process) for the session: its URL."""
    from moto.server import ThreadedMotoServer

    from nsmigrate_sandbox.services import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def object_storage(object_storage_server: str, request: pytest.FixtureRequest) -> ObjectStorage:
    """A bucket of this test's own on the session's S3-compatible server, empty."""
    import hashlib

    bucket = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    storage = ObjectStorage(object_storage_server, bucket)
    client = storage.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    for key in storage.object_keys():
        client.delete_object(Bucket=bucket, Key=key)
    return storage


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    """The indexes of this module's data plane; override it in a test module to choose others."""
    return [IndexSpec("src", dimension=8), IndexSpec("dst", dimension=8)]


@pytest.fixture(scope="module")
def sandbox_lag_s() -> float:
    """How long the module's data plane's reads lag its writes (``TEST_LAG_S``); a module overrides it only with a
    reason it states."""
    return TEST_LAG_S


@pytest.fixture(scope="module")
def module_sandbox(sandbox_indexes: list[IndexSpec], sandbox_lag_s: float) -> Iterator[PineconeSandbox]:
    """The module's local Pinecone data plane, started once for all its tests."""
    sb = PineconeSandbox(indexes=sandbox_indexes, freshness_lag_s=sandbox_lag_s).start()
    yield sb
    sb.stop()


@pytest.fixture
def sandbox(module_sandbox: PineconeSandbox) -> PineconeSandbox:
    """The module's data plane with no data, no faults and fresh stats, as a newly started one would be."""
    sandbox = module_sandbox
    for name in sandbox.names():
        sandbox.set_faults(name, Faults())
    sandbox.control.set_faults(ControlFaults())
    sandbox.reset()
    # The SDK's retry budget and bulk gate are process-global per hostname; start each test from a full budget.
    reset_sdk_host_state()
    return sandbox


@pytest.fixture
def pinecone_api_key() -> str:
    """The ``PINECONE_API_KEY`` a stack's test process sends (the local data plane accepts any key)."""
    return SANDBOX_API_KEY


@pytest.fixture
def stack(
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sandbox_indexes: list[IndexSpec],
    sandbox_lag_s: float,
    pinecone_api_key: str,
) -> Iterator[Stack]:
    """A stack of this test's own: no worker yet (``stack.start_worker``), stopped with everything it started."""
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_api_key)  # this process plans the job with the same key
    sandbox = PineconeSandbox(indexes=sandbox_indexes, freshness_lag_s=sandbox_lag_s).start()
    stack = Stack(redis_url=redis_url, database_url=database_url, pinecone=sandbox, workdir=tmp_path)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def module_stack(
    module_job_table_url: str, module_sandbox: PineconeSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One stack for a module's tests, no worker yet: a worker start costs ~1.2-1.8 CPU-s and each prefork child
    its own connections, so a module whose tests only run jobs starts its workers once (a module fixture). Its
    Redis is its own: the ``redis_url`` of other tests is flushed before each of them."""
    redis = RedisServer().start()
    workdir = tmp_path_factory.mktemp("module-stack")
    urls = {"redis_url": redis.url, "database_url": module_job_table_url}
    stack = Stack(**urls, pinecone=module_sandbox, workdir=workdir, servers=[redis])
    yield stack
    stack.stop()


@pytest.fixture
def shared_stack(
    module_stack: Stack,
    sandbox: PineconeSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pinecone_api_key: str,
) -> Iterator[Stack]:
    """The module's stack for this test: its data plane emptied and without faults (``sandbox``), its job table
    emptied of the earlier tests' jobs (``empty_job_table``), files in a workdir of the test's own (the workers and
    their logs stay the module's). Handed on only once the test's tasks ended (``wait_for_tasks_to_end``): a task
    left running would write into the next test's data plane."""
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_api_key)  # this process plans the job with the same key
    assert sandbox is module_stack.pinecone
    empty_job_table(module_stack.database_url)
    yield dataclasses.replace(module_stack, workdir=tmp_path)
    wait_for_tasks_to_end(module_stack.redis_url)


def empty_job_table(database_url: str) -> None:
    """Delete every job of the job table at ``database_url`` (its schema stays; ids go on from where they were, so
    nothing a worker remembers by job id can meet another job). An earlier test's jobs are history a deletion's
    checks rightly read: a cleanup of the same namespaces would make this test's ``sync --propagate-deletes`` refuse."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name != SchemaInfo.__tablename__)
    with contextlib.closing(engine.connect()) as conn, conn.begin():
        conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))  # an idle worker holds no lock; say so if one does
        conn.execute(sa.text(f"TRUNCATE {tables}"))
    engine.dispose()


def wait_for_tasks_to_end(redis_url: str, timeout_s: float = 60) -> None:
    """Block until the workers on the broker at ``redis_url`` have no task left (``tasks_left``).

    Raises:
        pytest.fail.Exception: after ``timeout_s``, naming the tasks, queues and unacked messages still there.
    """
    probe = functools.partial(tasks_left, redis_url)
    wait_until(probe, what="the previous test's tasks to end", timeout_s=timeout_s, done=lambda left: not left)


def tasks_left(redis_url: str) -> dict[str, object]:
    """What the workers on the broker at ``redis_url`` still have: tasks running, prefetched or waiting for their time
    (Celery's inspect), messages in a queue they consume or in Redis' ``unacked`` set; empty when they are idle. The
    broker is read before and after the workers answer: a worker takes a message from its queue and records it
    unacked in one pass of its event loop, the loop that answers the inspect, so one of the reads sees it."""
    control = Celery("nsmigrate-tests-handover", broker=redis_url, set_as_current=False)
    broker = redis_lib.Redis.from_url(redis_url)
    with contextlib.closing(control), contextlib.closing(broker):
        return _tasks_left(control, broker)


def _tasks_left(control: Celery, broker: redis_lib.Redis) -> dict[str, object]:
    workers = [name for reply in control.control.ping(timeout=0.5) or [] for name in reply]
    if not workers:
        return {}
    inspect = control.control.inspect(destination=workers, limit=len(workers), timeout=5)
    queues = sorted({queue["name"] for found in (inspect.active_queues() or {}).values() for queue in found})

    def in_broker() -> dict[str, object]:
        counts = {f"queue {queue}": broker.llen(queue) for queue in queues} | {"unacked": broker.hlen("unacked")}
        return {key: n for key, n in counts.items() if n}

    before = in_broker()
    requests = {
        "running": inspect.active() or {},
        "prefetched": inspect.reserved() or {},
        "scheduled": {w: [entry["request"] for entry in found] for w, found in (inspect.scheduled() or {}).items()},
    }
    tasks = {
        f"{kind} on {worker}": [_call(task) for task in found]
        for kind, by_worker in requests.items()
        for worker, found in by_worker.items()
        if found
    }
    return before | tasks | in_broker()


def _call(task: dict[str, Any]) -> str:
    """A task as Celery's inspect describes it, as a call: ``nsmigrate.copy_batch(7, job_id=2)``."""
    args = [repr(a) for a in task.get("args") or ()] + [f"{k}={v!r}" for k, v in (task.get("kwargs") or {}).items()]
    return f"{task.get('name')}({', '.join(args)})"


@pytest.fixture
def start_standin() -> Iterator[Callable[..., PostgrestStandIn]]:
    """``start_standin(database_url, api_key, max_rows=1000)`` serves that database's tables as Supabase does;
    every stand-in started is stopped after the test."""
    started: list[PostgrestStandIn] = []

    def start(database_url: str, api_key: str, *, max_rows: int = 1000) -> PostgrestStandIn:
        server = PostgrestStandIn(database_url, api_key=api_key, max_rows=max_rows).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def worker_context() -> Iterator[Callable[..., WorkerContext]]:
    """``worker_context(database_url, redis_url, dispatcher=None)``: a ``WorkerContext`` over those services;
    ``dispatcher`` replaces the one that sends Celery tasks."""
    made: list[WorkerContext] = []

    def make(database_url: str, redis_url: str, dispatcher: Any = None) -> WorkerContext:
        context = WorkerContext(load_settings(database_url=database_url, redis_url=redis_url))
        if dispatcher is not None:
            context.dispatcher = dispatcher
        made.append(context)
        return context

    yield make
    for context in made:
        for store in context._stores.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()
        context.db.dispose()


@pytest.fixture
def pg(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    monkeypatch.setenv("NSMIGRATE_PGVECTOR_URL", database_url)
    monkeypatch.setenv("NSMIGRATE_DATABASE_URL", database_url)
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    yield engine
    engine.dispose()
