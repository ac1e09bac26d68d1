"""What the chaos tests (``tests/fleet/test_chaos_*.py``, one file per kind of fault) share: the data they copy, when
to strike, a standby worker to take over, and the checks that nothing was lost.

Real `nsmigrate worker` processes, real Redis and Postgres, the real Pinecone SDK against the local data plane. The
data plane answers slowly (``slow_data_plane``) so that every fault lands mid-job; when to strike is decided by
polling the job table (some batches done, not all), never by a fixed sleep. Once the fault has landed the latency is
taken off (``fault_landed``): what follows proves recovery, which needs no slow data plane. After each fault the tests
check the data itself: every source id is in the target with equal values and metadata (read back with the SDK),
every id was put in exactly one batch, every batch row is ``done`` and nothing failed.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil
import pytest
import redis as redis_lib
import sqlalchemy as sa
from celery import Celery
from pinecone import Pinecone

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import BatchState, NamespaceRun, RunState
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.fleet_jobs import batches
from tests.polling import wait_until
from tests.service_fixtures import TEST_LAG_S

SRC, DST = "chaos-src", "chaos-dst"
DIM = 16
#: Worker settings that make a dead worker's work come back within seconds instead of the production hour:
#: Redis redelivers an unacknowledged task after 5 s, and a dead lister's lock expires after 3 s.
FAST_RECOVERY = {"NSMIGRATE_VISIBILITY_TIMEOUT_S": "5", "NSMIGRATE_LISTER_LOCK_TTL_S": "3"}
#: Short store retries: an outage of the job table or of Redis must not be hidden behind minutes of backoff.
QUICK_RETRIES = {"NSMIGRATE_RETRY_ATTEMPTS": "8", "NSMIGRATE_RETRY_MAX_WAIT_S": "1"}
#: The queues of a chaos job's workers.
QUEUES = "list,copy,verify"
#: What a standby worker consumes until it takes over: a queue no chaos job sends to.
STANDBY_QUEUE = "cleanup"

Loaded = dict[str, dict[str, tuple[list[float], dict[str, Any]]]]
T = TypeVar("T")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    """The chaos tests' data plane (import it into a test module that uses ``stack`` or ``sandbox``)."""
    return [IndexSpec(SRC, dimension=DIM), IndexSpec(DST, dimension=DIM)]


def make_stack(
    redis_url: str, database_url: str, workdir: Path, servers: list[RedisServer | PostgresServer] | None = None
) -> Stack:
    indexes = [IndexSpec(SRC, dimension=DIM), IndexSpec(DST, dimension=DIM)]
    sandbox = PineconeSandbox(indexes=indexes, freshness_lag_s=TEST_LAG_S).start()
    return Stack(
        redis_url=redis_url, database_url=database_url, pinecone=sandbox, workdir=workdir, servers=list(servers or [])
    )


def load_source(stack: Stack, namespaces: int, per_namespace: int) -> Loaded:
    """``namespaces`` × ``per_namespace`` random vectors with metadata in the source index; returns what was loaded."""
    rng = np.random.default_rng(42)
    loaded: Loaded = {}
    for n in range(namespaces):
        ns = f"ns{n}"
        records = {
            f"{ns}-{i:05d}": (rng.random(DIM).astype(np.float32).tolist(), {"n": n, "i": i, "tag": f"t{i % 7}"})
            for i in range(per_namespace)
        }
        stack.pinecone.load(SRC, ns, [(vid, values, meta) for vid, (values, meta) in records.items()])
        loaded[ns] = records
    return loaded


def chaos_spec(stack: Stack, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "chaos",
        "source": {"kind": "pinecone", "host": stack.pinecone.host(SRC)},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(DST)},
        "batch_size": 20,
        "max_batches_in_flight": 8,
        "rate": {"read_rps": 1000, "list_rps": 1000, "write_rps": 1000},
    }
    spec.update(overrides)
    return spec


def slow_data_plane(stack: Stack, latency_ms: float, indexes: tuple[str, ...] = (SRC, DST)) -> None:
    for index in indexes:
        stack.pinecone.set_faults(index, Faults(latency_ms=latency_ms))


def fault_landed(stack: Stack) -> None:
    """The fault struck mid-job (the test has checked it): take the latency off, so that the recovery, the rest of
    the copy, the verification and the test's own read-back do not crawl. Recovery does not depend on it."""
    for index in stack.pinecone.names():
        stack.pinecone.set_faults(index, Faults())


def start_standby(
    stack: Stack,
    name: str,
    concurrency: int = 6,
    pool: str = "threads",
    consuming: str = STANDBY_QUEUE,
    **env: str,
) -> str:
    """A worker started now that consumes only ``consuming`` (default: none of a chaos job's queues) until
    ``take_over``: the successor of a worker about to be killed, booted while the job runs instead of after the
    fault (a boot takes seconds). Returns its node name."""
    stack.start_worker(consuming, concurrency, pool=pool, name=name, **env)
    return f"{name}@{socket.gethostname()}"


def take_over(stack: Stack, node: str, queues: str = QUEUES) -> None:
    """The standby ``node`` starts consuming ``queues`` (Celery's ``add_consumer``), as a worker started with them
    would; it answered before this returns."""
    control = Celery("chaos-take-over", broker=stack.redis_url, set_as_current=False)
    try:
        wait_until(
            lambda: control.control.ping(destination=[node], timeout=0.5),
            what=f"the standby {node} to answer (booted)",
            timeout_s=60,
            interval_s=0,
        )
        for queue in queues.split(","):
            replies = control.control.add_consumer(queue, destination=[node], reply=True, timeout=10)
            assert replies and node in replies[0], f"{node} did not take queue {queue}: {replies}"
    finally:
        control.close()


#: What a probe raises while Redis or Postgres is down or restarting.
SERVICE_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, redis_lib.ConnectionError)


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    timeout_s: float = 60,
    poll_s: float = 0.05,
    explain: Callable[[], object] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout_s`` saying what we waited for
    (and ``explain()``). A probe that hits a service mid-restart (connection refused) is simply asked again."""
    result = wait_until(
        probe, what=what, timeout_s=timeout_s, interval_s=poll_s, retry_on=SERVICE_DOWN, explain=explain
    )
    assert result is not None
    return result


def batch_states(db: jobs_database.Database, job_id: int) -> Counter[str]:
    return Counter(b.state for b in batches(db, job_id))


def mid_copy(db: jobs_database.Database, job_id: int, total_batches: int, *, min_done: int = 10) -> Callable[[], bool]:
    """True while the copy is in full swing: some batches done, some running, most still to do."""

    def probe() -> bool:
        states = batch_states(db, job_id)
        return min_done <= states[BatchState.DONE] <= total_batches // 2 and states[BatchState.RUNNING] > 0

    return probe


def freeze_mid_batch(
    worker: subprocess.Popen[bytes], db: jobs_database.Database, job_id: int, total_batches: int
) -> None:
    """Stop (SIGSTOP) the worker and everything it forked while batches run (``kill_frozen`` then kills it). It is
    stopped only once some batch is running with every statement it sent applied, so that some batch is left
    running by the kill; when none runs at that moment, it goes on (SIGCONT) and is stopped again later."""
    while True:
        wait_for(mid_copy(db, job_id, total_batches), "batches to be running mid-copy")
        os.killpg(worker.pid, signal.SIGSTOP)
        applied = functools.partial(_all_applied, db, _job_table_ports(worker, db))
        wait_for(applied, "the statements the stopped worker sent to be applied")
        if any(b.state == BatchState.RUNNING for b in batches(db, job_id)):
            return
        os.killpg(worker.pid, signal.SIGCONT)


def kill_frozen(stack: Stack, worker: subprocess.Popen[bytes], db: jobs_database.Database, job_id: int) -> set[int]:
    """SIGKILL a worker ``freeze_mid_batch`` stopped; returns the batches it left running, read once Postgres has
    ended its sessions. Not before: Postgres applies a statement it has received even when its client is stopped or
    dead, so a batch seen running at the stop could still end ``done`` by the killed worker, with one attempt (a
    finish sent just before the stop and read by its session after the look: seen in CI)."""
    ports = _job_table_ports(worker, db)
    stack.kill(worker, signal.SIGKILL)
    wait_for(lambda: not _sessions(db, ports), "Postgres to end the killed worker's sessions")
    left = {b.id for b in batches(db, job_id) if b.state == BatchState.RUNNING}
    assert left, "the killed worker left no batch running: every batch it held was finished by a late statement"
    return left


def _job_table_ports(worker: subprocess.Popen[bytes], db: jobs_database.Database) -> set[int]:
    """The local ports of the connections ``worker`` and the processes it forked hold to the job table's Postgres."""
    parent = psutil.Process(worker.pid)
    return {
        c.laddr.port
        for p in [parent, *parent.children(recursive=True)]
        for c in p.net_connections("tcp")
        if c.raddr and c.raddr.port == db.engine.url.port
    }


def _sessions(db: jobs_database.Database, ports: set[int]) -> list[tuple[int, str]]:
    """(client port, state) of Postgres's sessions for the connections on ``ports``."""
    query = sa.text("SELECT client_port, state FROM pg_stat_activity WHERE client_port = ANY(:ports)")
    with db.transaction() as s:
        return [(port, state) for port, state in s.execute(query, {"ports": sorted(ports)})]


def _all_applied(db: jobs_database.Database, ports: set[int]) -> bool:
    """No session of the connections on ``ports`` runs a statement, and Postgres has read every byte they sent (a
    statement sent just before its client stopped waits, unread, in the server's socket: /proc/net/tcp's rx_queue).
    Not proof (a session may have read a statement and not yet said it runs): ``kill_frozen`` reads after the end."""
    if any(state == "active" for _, state in _sessions(db, ports)):
        return False
    server_port = db.engine.url.port
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, _, queues = line.split()[1:5]
        to_server = int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) in ports
        if to_server and int(queues.split(":")[1], 16):
            return False
    return True


def all_verified(db: jobs_database.Database, job_id: int) -> Callable[[], JobStatus | None]:
    def probe() -> JobStatus | None:
        status = jobs_status.job_status(db, job_id)
        return status if all(r.state == RunState.VERIFIED for r in status.runs) else None

    return probe


def target_index(stack: Stack) -> Any:
    return Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host(DST))


def fetch_all(index: Any, namespace: str, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for start in range(0, len(ids), 200):  # ids travel in the query string: keep the URL short
        out.update(index.fetch(ids=ids[start : start + 200], namespace=namespace).vectors)
    return out


def assert_target_holds_source(stack: Stack, loaded: Loaded) -> None:
    """Read the target back with the SDK: every source id present, values equal (float32), source metadata kept."""
    index = target_index(stack)
    for ns, records in loaded.items():
        fetched = fetch_all(index, ns, sorted(records))
        missing = set(records) - set(fetched)
        assert not missing, f"{len(missing)} ids of {ns} are not in the target, e.g. {sorted(missing)[:5]}"
        for vid, (values, meta) in records.items():
            got = fetched[vid]
            np.testing.assert_allclose(
                np.asarray(got.values, dtype=np.float32),
                np.asarray(values, dtype=np.float32),
                rtol=0,
                atol=1e-6,
                err_msg=vid,
            )
            assert {k: got.metadata.get(k) for k in meta} == meta, vid
        assert stack.pinecone.count(DST, ns) == len(records), ns  # and nothing else was written there


def assert_each_id_batched_once(db: jobs_database.Database, job_id: int, loaded: Loaded) -> None:
    with db.transaction() as s:
        run_ns = dict(
            s.execute(
                sa.select(NamespaceRun.id, NamespaceRun.source_namespace).where(NamespaceRun.job_id == job_id)
            ).all()
        )
    seen: dict[str, Counter[str]] = {ns: Counter() for ns in loaded}
    for b in batches(db, job_id):
        seen[run_ns[b.run_id]].update(b.ids)
    for ns, records in loaded.items():
        twice = [vid for vid, n in seen[ns].items() if n > 1]
        assert not twice, f"{len(twice)} ids of {ns} were put in more than one batch, e.g. {twice[:5]}"
        assert set(seen[ns]) == set(records), ns


def assert_nothing_lost(stack: Stack, db: jobs_database.Database, job_id: int, loaded: Loaded) -> JobStatus:
    """The job finished well and the data says so too."""

    def explain() -> object:
        return [
            {k: r.as_dict()[k] for k in ("source_namespace", "state", "listed", "copied", "batches", "last_error")}
            for r in jobs_status.job_status(db, job_id).runs
        ]

    status = wait_for(all_verified(db, job_id), "every namespace verified", timeout_s=90, poll_s=0.2, explain=explain)
    states = batch_states(db, job_id)
    assert set(states) == {BatchState.DONE}, states
    assert status.totals.failed == 0
    assert status.totals.copied == sum(len(r) for r in loaded.values())
    assert_each_id_batched_once(db, job_id, loaded)
    assert_target_holds_source(stack, loaded)
    for ns, records in loaded.items():  # the copy never deletes from the source
        assert stack.pinecone.count(SRC, ns) == len(records)
    return status


def kill_and_lose_its_messages(
    stack: Stack, worker: subprocess.Popen[bytes], db: jobs_database.Database, job_id: int, successor: str
) -> set[int]:
    """SIGKILL ``worker`` (``kill_frozen``), empty the queues and Redis' ``unacked`` set (as after a broker failover),
    and have the standby ``successor`` (started with the production visibility timeout: nothing comes back by itself)
    take over. Returns the batches left ``running``."""
    stuck = kill_frozen(stack, worker, db, job_id)
    broker = redis_lib.Redis.from_url(stack.redis_url)
    broker.delete("unacked", "unacked_index", "list", "copy", "verify")
    fault_landed(stack)
    take_over(stack, successor)
    return stuck
