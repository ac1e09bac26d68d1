"""A fleet over several hosts: Redis, Postgres and the Pinecone data plane on a services host, `nsmigrate worker` on
three worker hosts, the job started with `nsmigrate run` from the root namespace (a client host).

The hosts are network namespaces on a bridge of the test's own (``sandbox.hosts``); the services host adds 5 ms each
way to everything it serves (``sandbox.delay_relay``: this kernel has no netem) and serves the data plane over TLS.
A worker host is cut off mid-job (its link down) while it holds batches: the job still finishes, with no operator
action, (a) when the link comes back and (b) when the host is gone for good. The proof is the job table (every run
verified by nsmigrate: counts, ids, contents; every batch done, each id in exactly one batch) and the data read back
here with the SDK (every id, every value, every metadata field, the counts); for (b) also Postgres, which says no
worker waited for a lock the gone host held.

Needs root and iproute2; without them every test here is skipped, with a warning that says so.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis as redis_lib
import sqlalchemy as sa
import yaml
from pinecone import Index

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import Batch, BatchState, Job, NamespaceRun, RunState, utcnow
from nsmigrate_sandbox.hosts import HostNetwork, unavailable
from nsmigrate_sandbox.services_host import ServicesHost
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers
from tests.chaos import FAST_RECOVERY
from tests.fleet_jobs import batches
from tests.polling import wait_until

WHY_NOT = unavailable()
if WHY_NOT is not None:
    warnings.warn(f"tests/fleet/test_hosts.py: the multi-host fleet is NOT TESTED here: {WHY_NOT}", stacklevel=1)
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"multi-host fleet NOT TESTED: {WHY_NOT}")

SRC, DST = "hosts-src", "hosts-dst"
DIM = 8
WORKER_HOSTS = ["w1", "w2", "w3"]
DELAY_MS = 5
#: A worker host's task slots (threads).
SLOTS = 4
#: How long a host that comes back is cut off. Nothing on a worker host times out sooner than 30 s (a data-plane
#: request, the lister's lock; Redis and Postgres connections have no timeout and the Redis transport no heartbeat),
#: so what an outage tests is TCP riding it out: it must outlast the first retransmissions, so that the host's
#: connections come back through TCP's backoff. Linux retransmits data 0.2, 0.6, 1.4 and 3.0 s after the cut (a
#: new connection's SYN 1 and 3 s after), then at 6.2 s: 4 s is past four of them, and the link is back before
#: the fifth. (A 15 s outage proved the same and waited for the retransmission at 25.4 s.)
OUTAGE_S = 4

Loaded = dict[str, dict[str, tuple[list[float], dict[str, Any]]]]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostNetwork, ServicesHost]]:
    network = HostNetwork.create(["services", *WORKER_HOSTS])
    try:
        indexes = [f"{SRC}:{DIM}", f"{DST}:{DIM}"]
        services = ServicesHost.start(network, "services", indexes, DELAY_MS, tmp_path_factory.mktemp("services"))
        yield network, services
    finally:
        network.destroy()


@dataclass
class Fleet:
    network: HostNetwork
    services: ServicesHost
    workdir: Path
    db: jobs_database.Database

    def index(self, name: str) -> Index:
        return Index(host=self.services.indexes[name], api_key=SANDBOX_API_KEY, ssl_ca_certs=self.services.ca_file)

    def sandbox(self, name: str, path: str, body: dict[str, Any] | None = None) -> None:
        """POST to the data plane's ``/_sandbox/`` admin endpoint of index ``name``."""
        url = f"{self.services.indexes[name]}/_sandbox/{path}"
        with httpx.Client(verify=self.services.ca_file) as client:
            client.post(url, json=body or {}, headers={"Api-Key": SANDBOX_API_KEY}).raise_for_status()

    def start_workers(self, **env: str) -> None:
        """A worker on each worker host; its job-table sessions carry the host's name (``application_name``)."""
        for host in WORKER_HOSTS:
            self.services.start_worker(self.network, host, SLOTS, self.workdir, PGAPPNAME=_app_name(host), **env)
        wait_for_workers(self.services.redis_url, len(WORKER_HOSTS))  # each host takes its share from the start

    def run(self, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
        """`nsmigrate run SPEC --wait` in the root namespace, as a user starts a job."""
        path = self.workdir / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        nsmigrate = str(Path(sys.executable).with_name("nsmigrate"))
        with open(self.workdir / "run.log", "ab") as log:
            proc = subprocess.Popen(
                [nsmigrate, "run", str(path), "--wait"], env=self.services.env(), stdout=log, stderr=subprocess.STDOUT
            )
        self.network.processes.append(proc)
        return proc

    def job_id(self, name: str) -> int:
        def probe() -> int | None:
            with self.db.transaction() as s:
                return s.scalar(sa.select(Job.id).where(Job.name == name).order_by(Job.id.desc()).limit(1))

        return wait_until(probe, what=f"the job row of {name}", timeout_s=60)

    def held_by(self, host: str, job_id: int) -> set[int]:
        """The batches of ``job_id`` running on a worker of ``host`` right now (a batch names its worker's pid)."""
        pids = {str(pid) for pid in self.network.pids(host)}
        return {b.id for b in batches(self.db, job_id) if b.state == BatchState.RUNNING and _pid(b) in pids}

    def explain(self) -> str:
        """The job table, the broker's unacknowledged tasks and every log: what a job that did not finish left."""
        broker = redis_lib.Redis.from_url(self.services.redis_url)
        with self.db.transaction() as s:
            runs = s.execute(sa.select(NamespaceRun.source_namespace, NamespaceRun.state)).all()
            open_batches = s.execute(
                sa.select(Batch.id, Batch.state, Batch.worker, Batch.attempts).where(Batch.state != BatchState.DONE)
            ).all()
        lines = [
            f"runs: {runs}",
            f"batches not done: {open_batches}",
            f"unacked: {broker.zcard('unacked_index')}, unacked_mutex ttl: {broker.ttl('unacked_mutex')}",
            f"queues: {[(q, broker.llen(q)) for q in ('list', 'copy', 'verify')]}",
        ]
        for log in sorted(self.workdir.glob("*.log")):
            lines.append(f"--- {log.name}:\n{log.read_text(errors='replace')[-1500:]}")
        return "\n".join(lines)


def _pid(batch: Batch) -> str:
    return (batch.worker or "").rsplit(":", 1)[-1]


def _app_name(host: str) -> str:
    """The ``application_name`` of ``host``'s job-table sessions (libpq reads ``PGAPPNAME``)."""
    return f"nsmigrate-{host}"


#: A session of ``host`` inside a transaction, waiting for its client, that another session waits for.
_WAITS_FOR_HOST = sa.text(
    "SELECT waiting.query AS waits, holder.query AS holds FROM pg_stat_activity waiting "
    "JOIN pg_stat_activity holder ON holder.pid = ANY (pg_blocking_pids(waiting.pid)) "
    "WHERE holder.application_name = :app AND holder.state LIKE 'idle in transaction%'"
)


class LockWatch:
    """Watches Postgres, from the cut until ``stop``, for a session waiting on a transaction of a host that was cut
    off: that host's client is gone, so the transaction waits for it, and holds its locks, until Postgres ends the
    session (``orchestrator.jobs.database.IDLE_IN_TRANSACTION_S``, a minute), and so does whoever waits on them.
    What is seen is a state of the database, not a duration: any sighting is one too many."""

    def __init__(self, fleet: Fleet, host: str) -> None:
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(fleet.db, _app_name(host)), daemon=True)
        self._thread.start()

    def _watch(self, db: jobs_database.Database, app: str) -> None:
        while not self._stop.wait(0.1):
            with db.single_statement() as conn:
                self.seen += [(row.waits, row.holds) for row in conn.execute(_WAITS_FOR_HOST, {"app": app})]

    def stop(self) -> list[tuple[str, str]]:
        """Stop watching; (what waited, what the cut host's transaction ran last) for each sighting."""
        self._stop.set()
        self._thread.join()
        return self.seen


@pytest.fixture
def fleet(hosts: tuple[HostNetwork, ServicesHost], tmp_path: Path) -> Iterator[Fleet]:
    """The hosts, with nothing running on the worker hosts, every link up, empty indexes and queues."""
    network, services = hosts
    redis_lib.Redis.from_url(services.redis_url).flushdb()
    db = jobs_database.Database(services.database_url)
    fleet = Fleet(network, services, tmp_path, db)
    for name in (SRC, DST):
        fleet.sandbox(name, "reset")
        fleet.sandbox(name, "faults", {})
    started = len(network.processes)
    yield fleet
    for host in WORKER_HOSTS:
        network.restore(host)
    for proc in network.processes[started:]:
        if proc.poll() is None:
            proc.kill()
        proc.wait(15)
    for host in WORKER_HOSTS:
        network.kill_host(host)  # a threads worker is one process; nothing of this test outlives it
    del network.processes[started:]
    db.dispose()


def load_source(fleet: Fleet, namespaces: int, per_namespace: int) -> Loaded:
    """``namespaces`` × ``per_namespace`` random vectors with metadata, upserted through the SDK over the network."""
    rng = np.random.default_rng(7)
    index = fleet.index(SRC)
    loaded: Loaded = {}
    for n in range(namespaces):
        ns = f"ns{n}"
        loaded[ns] = {
            f"{ns}-{i:05d}": (rng.random(DIM).astype(np.float32).tolist(), {"n": n, "i": i, "tag": f"t{i % 5}"})
            for i in range(per_namespace)
        }
        items = [{"id": vid, "values": v, "metadata": m} for vid, (v, m) in loaded[ns].items()]
        for start in range(0, len(items), 500):
            index.upsert(vectors=items[start : start + 500], namespace=ns)
    return loaded


def spec(fleet: Fleet, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"kind": "pinecone", "host": fleet.services.indexes[SRC]},
        "target": {"kind": "pinecone", "host": fleet.services.indexes[DST]},
        "batch_size": 50,
        "rate": {"read_rps": 1000, "list_rps": 1000, "write_rps": 1000},
        "verify": {"contents": "all"},
    }


def slow_data_plane(fleet: Fleet, latency_ms: float = 150) -> None:
    """Every data-plane request takes ``latency_ms`` longer, so that a host is cut off while batches run on it (a
    batch takes a few of them)."""
    for name in (SRC, DST):
        fleet.sandbox(name, "faults", {"latency_ms": latency_ms})


def finishes(fleet: Fleet, run: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """The `nsmigrate run --wait` command ends with exit code 0: every namespace verified."""
    try:
        code = run.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`nsmigrate run --wait` did not end within {timeout_s} s\n{fleet.explain()}")
    assert code == 0, fleet.explain()


def assert_nothing_lost(fleet: Fleet, job_id: int, loaded: Loaded) -> None:
    """The job table says every run verified, every batch done, each id batched once; the data says the same."""
    status = jobs_status.job_status(fleet.db, job_id)
    assert {r.source_namespace: r.state for r in status.runs} == {ns: RunState.VERIFIED for ns in loaded}
    assert status.totals.failed == 0
    assert status.totals.copied == sum(len(records) for records in loaded.values())
    with fleet.db.transaction() as s:
        run_ns = dict(s.execute(sa.select(NamespaceRun.id, NamespaceRun.source_namespace)).all())
    seen: dict[str, Counter[str]] = {ns: Counter() for ns in loaded}
    all_batches = batches(fleet.db, job_id)
    assert {b.state for b in all_batches} == {BatchState.DONE}
    for b in all_batches:
        seen[run_ns[b.run_id]].update(b.ids)
    target, source = fleet.index(DST), fleet.index(SRC)
    for ns, records in loaded.items():
        assert not [vid for vid, n in seen[ns].items() if n > 1], f"ids of {ns} batched twice"
        assert set(seen[ns]) == set(records), ns
        fetched: dict[str, Any] = {}
        ids = sorted(records)
        for start in range(0, len(ids), 200):
            fetched.update(target.fetch(ids=ids[start : start + 200], namespace=ns).vectors)
        assert set(fetched) == set(records), f"{len(set(records) - set(fetched))} ids of {ns} missing in the target"
        for vid, (values, meta) in records.items():
            np.testing.assert_allclose(np.asarray(fetched[vid].values, np.float32), values, rtol=0, atol=1e-6)
            assert {k: fetched[vid].metadata.get(k) for k in meta} == meta, vid
    for index in (target, source):  # nothing else in the target, nothing gone from the source
        counts = {ns: summary.vector_count for ns, summary in index.describe_index_stats().namespaces.items()}
        assert counts == {ns: len(records) for ns, records in loaded.items()}


def test_a_job_runs_on_workers_on_three_hosts_against_a_services_host(fleet: Fleet) -> None:
    loaded = load_source(fleet, namespaces=3, per_namespace=1000)
    fleet.start_workers()
    run = fleet.run(spec(fleet, "hosts-all"))
    finishes(fleet, run)
    job_id = fleet.job_id("hosts-all")
    assert_nothing_lost(fleet, job_id, loaded)
    pids = {host: {str(pid) for pid in fleet.network.pids(host)} for host in WORKER_HOSTS}
    by_host = Counter(host for b in batches(fleet.db, job_id) for host in WORKER_HOSTS if _pid(b) in pids[host])
    assert set(by_host) == set(WORKER_HOSTS), by_host  # every host copied some of it


#: The data plane's latency while a host is being cut off: a batch running on it then has seconds of work left
#: (its next request), however late the cut takes effect on a busy machine.
WHILE_CUTTING_MS = 3000


def cut_mid_job(fleet: Fleet, name: str, host: str) -> tuple[int, set[int]]:
    """Wait until ``host`` runs 2 batches or more of job ``name``, slow the data plane right down, cut the host off,
    and wait until what it holds stopped changing (the same in two reads 1 s apart: whatever it had sent before the
    cut has arrived); returns the job and the batches ``host`` holds then (asserted to be some). The caller sets the
    data plane's latency for the rest of the job."""
    job_id = fleet.job_id(name)

    def holding() -> set[int]:
        every = batches(fleet.db, job_id)
        if sum(b.state == BatchState.DONE for b in every) < 3:
            return set()
        pids = {str(pid) for pid in fleet.network.pids(host)}
        return {b.id for b in every if b.state == BatchState.RUNNING and _pid(b) in pids}

    wait_until(holding, what=f"{host} running batches of {name}", timeout_s=90, interval_s=0.05, done=_two_or_more)
    slow_data_plane(fleet, latency_ms=WHILE_CUTTING_MS)
    fleet.network.cut(host)
    reads: list[set[int]] = []

    def settled() -> set[int] | None:
        reads.append(fleet.held_by(host, job_id))
        return reads[-1] if len(reads) > 1 and reads[-1] == reads[-2] else None

    held = wait_until(settled, what=f"what {host} holds to settle", timeout_s=30, interval_s=1, done=_some)
    assert held, f"{host} finished its batches before the cut took effect: held {reads}"
    return job_id, held


def _two_or_more(held: set[int]) -> bool:
    return len(held) >= 2


def _some(value: object) -> bool:
    return value is not None


def test_a_worker_host_cut_off_mid_job_finishes_its_batches_when_its_link_comes_back(fleet: Fleet) -> None:
    """The production visibility timeout (an hour): nothing is redelivered while the host is away, and the cut
    host's batches stay running (the others go on with what is listed; a namespace whose lister the cut host runs
    waits for it). When the link is back its worker finishes them, and the job finishes."""
    loaded = load_source(fleet, namespaces=3, per_namespace=1000)
    slow_data_plane(fleet)
    fleet.start_workers()
    run = fleet.run(spec(fleet, "hosts-back"))
    job_id, held = cut_mid_job(fleet, "hosts-back", "w3")
    w3 = {str(pid) for pid in fleet.network.pids("w3")}  # a process of w3's may end before the job does
    slow_data_plane(fleet, latency_ms=0)  # w3 is cut off holding batches: the rest need not be slow
    # The outage itself: longer than TCP's first retransmissions, so w3's connections come back through backoff.
    time.sleep(OUTAGE_S)
    assert {b.id for b in batches(fleet.db, job_id) if b.state == BatchState.RUNNING} >= held
    assert run.poll() is None

    restored = utcnow()
    fleet.network.restore("w3")
    finishes(fleet, run)
    assert_nothing_lost(fleet, job_id, loaded)
    # Not started again elsewhere while w3 was away. Once its link is back, a copy that met the outage is retried by
    # Celery as a new message, which any host may take: then its last start comes after the link came back.
    w3 |= {str(pid) for pid in fleet.network.pids("w3")}
    last_start = {b.id: (_pid(b), b.started_at) for b in batches(fleet.db, job_id) if b.id in held}
    elsewhere = {i: (pid, at) for i, (pid, at) in last_start.items() if pid not in w3}
    assert all(at is not None and at >= restored for _, at in elsewhere.values()), (elsewhere, w3, restored)


def test_a_worker_host_gone_for_good_mid_job_has_its_batches_redelivered(fleet: Fleet) -> None:
    """The host is cut off, then its processes die (a machine that is gone): its batches are sent again after the
    visibility timeout (5 s here; by Redis' redelivery of its unacknowledged tasks, or by the fleet's sweep for
    stalled runs) and the other hosts finish the job, with no `resume`. Meanwhile no worker waits for a lock the gone
    host held: a transaction it left open would hold its rows for a minute, and its run's every batch with them."""
    loaded = load_source(fleet, namespaces=3, per_namespace=1000)
    slow_data_plane(fleet)
    fleet.start_workers(**FAST_RECOVERY)
    run = fleet.run(spec(fleet, "hosts-gone"))
    job_id, held = cut_mid_job(fleet, "hosts-gone", "w3")
    watch = LockWatch(fleet, "w3")
    fleet.network.kill_host("w3")
    slow_data_plane(fleet, latency_ms=0)  # w3 is gone holding batches: the rest need not be slow

    finishes(fleet, run)
    assert watch.stop() == [], "workers waited for locks of the gone host's open transactions"
    assert_nothing_lost(fleet, job_id, loaded)
    again = {b.id: b.attempts for b in batches(fleet.db, job_id) if b.id in held}
    assert all(n >= 2 for n in again.values()), again  # started again elsewhere, by redelivery
