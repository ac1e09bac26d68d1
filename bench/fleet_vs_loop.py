"""Benchmark: the seeds' sequential list → fetch → upsert loop against the nsmigrate fleet.

Both copy the same data between indexes of the local Pinecone data plane, each index served by its own process, with
50 ms added to every request and Pinecone's serverless per-second limits enforced (429 + Retry-After). The fleet runs
two jobs on one set of workers: the first on freshly started workers (every process pays its first-task costs), the
second on the same workers warm, as a standing fleet runs a migration; ``--fleets`` (3) such fleets are started one
after the other. Each fleet job is started as a user starts one, ``nsmigrate run SPEC --wait`` in its own process
(``bench.user_clock``). Reported per data set, all measured in one run: the loop's time and, for the median fleet job
of each kind, the job's clock (its job-table row to its last batch) and the user's clock (the command to its last
batch), each as a ratio to the loop (with the range over the fleets), the share of requests answered 429, the
fleet's worker CPU seconds per 1,000 vectors on the job clock, and where the CPU went (workers, data plane,
Postgres, Redis, the command).

    make bench                                   # both data sets
    .venv/bin/python -m bench.fleet_vs_loop --sets seed --copy-pool prefork --copy-workers 1   # a variant

``BENCH_DEADLINE_S`` (600) bounds a fleet job. Never a timed test: these are figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis as redis_lib
import sqlalchemy as sa
from pinecone import Pinecone

from bench.user_clock import job_clock, run_cli, timeline, timeline_lines
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.messaging.task_names import PLANNER_KEY
from nsmigrate.orchestrator.models import Batch, BatchState, NamespaceRun, RunState
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate_sandbox.memory import KEPT_MB
from nsmigrate_sandbox.pinecone_server import SERVERLESS_LIMITS
from nsmigrate_sandbox.seed import SeedData, seed_dataset
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

LATENCY_MS = 50
#: Every per-second limit Pinecone documents for serverless indexes (requests, upserted bytes, deleted records), as
#: the local data plane enforces them: a contender is held to all of them, as the real service would hold it.
SERVER_LIMITS: dict[str, Any] = dict(SERVERLESS_LIMITS)


@dataclass(frozen=True)
class FleetShape:
    """The fleet under test: its worker processes and the job knobs that decide how work is cut."""

    list_pool: str = "threads"
    list_workers: int = 1
    list_concurrency: int = 16
    copy_pool: str = "threads"
    copy_workers: int = 2
    copy_concurrency: int = 16  # docker-compose.yml's default (bench/README.md: "Copy threads")
    batch_size: int = 200
    parallel_upserts: int = 4
    #: `nsmigrate run --plan-here`: the command plans the job itself instead of handing it to the list worker's
    #: planner (``workers.fleet.plan_server``), as every version before the planner did.
    plan_here: bool = False

    def describe(self) -> str:
        return (
            f"list workers {self.list_workers} × {self.list_pool} {self.list_concurrency}, copy workers "
            f"{self.copy_workers} × {self.copy_pool} {self.copy_concurrency}; batch_size {self.batch_size}, "
            f"parallel_upserts {self.parallel_upserts}"
            + ("; planned in the command (--plan-here)" if self.plan_here else "")
        )


@dataclass
class Result:
    name: str
    vectors: int
    seconds: float
    requests: int
    responses_429: int
    #: Worker CPU seconds on the job clock (the job's row to its last batch).
    cpu_s: float | None = None
    #: Worker CPU seconds on the user's clock (the command to the last batch): the idle fleet's own ticks while
    #: `nsmigrate run` starts and plans are in it too.
    cpu_user_clock_s: float | None = None
    server_cpu_s: float | None = None
    #: CPU seconds of everything else on the machine during the run: job table, Redis, the bench's own polling.
    others_cpu_s: dict[str, float] | None = None
    #: The user's clock: from the moment `nsmigrate run` was typed to the last batch (``seconds`` is the job's own,
    #: from its row in the job table). None for the loop, timed from its first request.
    user_seconds: float | None = None
    #: Who planned the job: "the fleet" (its planner) or "the command".
    planned_by: str | None = None
    #: The job's steps on the user's clock (``bench.user_clock.timeline``).
    timeline: dict[str, float | None] | None = None

    @property
    def vectors_per_s(self) -> float:
        return self.vectors / self.seconds

    @property
    def share_429(self) -> float:
        return self.responses_429 / max(self.requests, 1)


class DataPlane:
    """The local Pinecone data plane: one child process per index, as the source and the target of a real migration
    are served by different machines. Its CPU then competes neither with the loop's nor (through one interpreter lock)
    between the index being read and the index being written."""

    INDEXES = ("src", "loop", "fleet", "fleet-warm")

    def __init__(self, dimension: int, workdir: Path, stored_mb: int = 0, indexes: tuple[str, ...] = INDEXES) -> None:
        """``stored_mb``: about how much the vectors an index will hold take (their values as JSON text)."""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hosts: dict[str, str] = {}
        for name in indexes:
            # Every index serverless: what is compared is the list → fetch → upsert path, and only serverless lists (a
            # pod source is enumerated by a catalogue or a sweep instead: `nsmigrate plan` shows what that costs).
            kind = ""
            port_file = workdir / f"{name}.json"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nsmigrate_sandbox.pinecone_server",
                    "--index",
                    f"{name}:{dimension}{kind}",
                    "--port-file",
                    str(port_file),
                    # It stands in for a remote service but shares the fleet's cores: its page faults would take
                    # CPU the fleet is measured on. So it keeps freed memory (sandbox.memory) and
                    # touches the heap its stored vectors will need before the run.
                    "--prefault-mb",
                    str(min(KEPT_MB, 2 * stored_mb)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.procs.append(proc)
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the data plane of index {name} did not start")
                time.sleep(0.05)
            self.hosts.update(json.loads(port_file.read_text())["indexes"])

    def admin(self, index: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.hosts[index] + path,
            data=data,
            method="POST" if data else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read() or b"{}")

    def set_faults(self, **faults: Any) -> None:
        for index in self.hosts:
            self.admin(index, "/_sandbox/faults", faults)

    def counts(self) -> tuple[int, int]:
        """(data-plane requests, 429 answers) summed over the indexes since the last reset."""
        total = answered_429 = 0
        for index in self.hosts:
            stats = self.admin(index, "/_sandbox/stats")
            total += sum(stats["requests"].values())
            answered_429 += stats["responses_429"]
        return total, answered_429

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)


def load_source(plane: DataPlane, data: SeedData, index_name: str = "src") -> None:
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=plane.hosts[index_name])
    per_request = max(1, min(1000, 1_500_000 // (data.dimension * 20)))
    for ns, records in data.namespaces.items():
        for start in range(0, len(records), per_request):
            chunk = records[start : start + per_request]
            index.upsert(vectors=[(i, [float(x) for x in v], m) for i, v, m in chunk], namespace=ns)


def warm_source(plane: DataPlane, data: SeedData, index_name: str = "src") -> None:
    """Read every source vector once, untimed: the data plane makes a vector's float32 JSON on its first fetch, and
    the loop and the fleet should both find it made."""
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=plane.hosts[index_name])
    for ns, records in data.namespaces.items():
        for start in range(0, len(records), 1000):
            index.fetch(ids=[i for i, _, _ in records[start : start + 1000]], namespace=ns)


def sequential_loop(plane: DataPlane, data: SeedData) -> Result:
    """The seeds' one-off script: for each namespace, list a page, fetch it, upsert it; one request at a time."""
    pc = Pinecone(api_key=SANDBOX_API_KEY)
    src, dst = pc.Index(host=plane.hosts["src"]), pc.Index(host=plane.hosts["loop"])
    per_upsert = max(1, min(100, 1_500_000 // (data.dimension * 20)))
    before = plane.counts()
    server_cpu = plane.cpu_seconds()
    started, copied = time.monotonic(), 0
    for ns in data.namespaces:
        for page in src.list(namespace=ns, limit=100):
            ids = [
                i for i in (item if isinstance(item, str) else item.id for item in page) if i
            ]  # SDK 10 yields ListItems
            vectors = src.fetch(ids=ids, namespace=ns).vectors
            items = [(v.id, v.values, v.metadata or {}) for v in vectors.values()]
            for i in range(0, len(items), per_upsert):
                dst.upsert(vectors=items[i : i + per_upsert], namespace=ns)
            copied += len(items)
    seconds = time.monotonic() - started
    requests, r429 = (a - b for a, b in zip(plane.counts(), before, strict=True))
    return Result("sequential loop", copied, seconds, requests, r429, server_cpu_s=plane.cpu_seconds() - server_cpu)


def fleet(
    plane: DataPlane,
    data: SeedData,
    redis_url: str,
    database_url: str,
    workdir: Path,
    shape: FleetShape,
    services: dict[str, subprocess.Popen[bytes]],
) -> tuple[Result, Result]:
    """Two jobs on one worker fleet, each copying the whole data set: the first on freshly started workers (every
    process pays its first-task costs: connections, SQL compilation, allocator growth), the second on the same
    workers warm, as a standing fleet runs a migration."""
    env = dict(
        os.environ, NSMIGRATE_DATABASE_URL=database_url, NSMIGRATE_REDIS_URL=redis_url, PINECONE_API_KEY=SANDBOX_API_KEY
    )
    procs = [
        _worker(env, "list,verify", shape.list_pool, shape.list_concurrency, f"list{n}", workdir)
        for n in range(shape.list_workers)
    ]
    procs += [
        _worker(env, "copy", shape.copy_pool, shape.copy_concurrency, f"copy{n}", workdir)
        for n in range(shape.copy_workers)
    ]
    db = jobs_database.Database(database_url)
    try:
        wait_for_workers(redis_url, len(procs))  # start-up is not copy time
        if not shape.plan_here:
            _wait_for_planner(redis_url)
        first = _fleet_job("fleet, fresh workers", "fleet", shape, plane, db, env, procs, services, workdir)
        warm = _fleet_job("fleet, warm workers", "fleet-warm", shape, plane, db, env, procs, services, workdir)
        return first, warm
    finally:
        db.dispose()
        stop_processes(procs)


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 30) -> None:
    """Ask every process to stop first, then wait for each: they shut down side by side."""
    procs = list(procs)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout_s)


def _wait_for_planner(redis_url: str, timeout_s: float = 30) -> None:
    """Until the list worker's planner is up (its heartbeat starts with the worker, a moment after Celery's ping)."""
    client = redis_lib.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    while not client.exists(PLANNER_KEY):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no planner heartbeat within {timeout_s:.0f} s (see the list worker's log)")
        time.sleep(0.05)


def _fleet_job(
    label: str,
    target_index: str,
    shape: FleetShape,
    plane: DataPlane,
    db: jobs_database.Database,
    env: dict[str, str],
    procs: list[subprocess.Popen[bytes]],
    services: dict[str, subprocess.Popen[bytes]],
    workdir: Path,
) -> Result:
    """Copy the whole source index into ``target_index`` with the running fleet and measure it."""
    spec = {
        "name": f"bench-{target_index}",
        "source": {"kind": "pinecone", "host": plane.hosts["src"]},
        "target": {"kind": "pinecone", "host": plane.hosts[target_index]},
        "max_batches_in_flight": 64,
        "batch_size": shape.batch_size,
        "parallel_upserts": shape.parallel_upserts,
        "auto_verify": False,
        # The fleet's budget sits under the server's limits so (almost) nothing is answered 429.
        "rate": {"read_rps": 90, "stats_rps": 90, "list_rps": 180, "write_rps": 90},
    }
    parse_spec(spec)  # a bad spec fails here, not in the child
    sampler = CpuSampler(procs)
    cpu_before = _cpu_seconds(procs)
    listers = procs[: shape.list_workers]
    list_before = _cpu_seconds(listers)
    before = plane.counts()
    server_cpu = plane.cpu_seconds()
    others_before = {name: _cpu_seconds([p]) for name, p in services.items()}
    # As a user starts it: `nsmigrate run SPEC --wait` in its own process (start-up and planning on the clock).
    cli = run_cli(spec, env, workdir, float(os.environ.get("BENCH_DEADLINE_S", "600")), plan_here=shape.plan_here)
    created, finished = job_clock(db, cli.job_id)
    steps = timeline(db, cli, plane.admin(target_index, "/_sandbox/stats"))
    _, _, copied = _progress(db, cli.job_id)
    cpu = _cpu_seconds(procs) - cpu_before
    sampler.stop()
    others = {name: _cpu_seconds([p]) - others_before[name] for name, p in services.items()}
    others["of which the list workers"] = _cpu_seconds(listers) - list_before
    others["nsmigrate run"] = cli.cpu_s
    requests, r429 = (a - b for a, b in zip(plane.counts(), before, strict=True))
    return Result(
        label,
        copied,
        finished - created,
        requests,
        r429,
        cpu_s=sampler.at(finished) - sampler.at(created),
        cpu_user_clock_s=cpu,
        server_cpu_s=plane.cpu_seconds() - server_cpu,
        others_cpu_s=others,
        user_seconds=finished - cli.started,
        planned_by="the fleet" if cli.planned_by_fleet else "the command",
        timeline=steps,
    )


def _progress(db: jobs_database.Database, job_id: int) -> tuple[int, int, int]:
    """(runs not yet copied, failed batches, vectors copied) of a job."""
    runs = sa.select(NamespaceRun.id).where(NamespaceRun.job_id == job_id).scalar_subquery()
    with db.transaction() as s:
        unfinished, copied = s.execute(
            sa.select(
                sa.func.count().filter(NamespaceRun.state != RunState.COPIED),
                sa.func.coalesce(sa.func.sum(NamespaceRun.copied), 0),
            ).where(NamespaceRun.job_id == job_id)
        ).one()
        failed = s.scalar(sa.select(sa.func.count()).where(Batch.run_id.in_(runs), Batch.state == BatchState.FAILED))
    return int(unfinished), int(failed or 0), int(copied)


def _worker(
    env: dict[str, str], queues: str, pool: str, concurrency: int, name: str, workdir: Path
) -> subprocess.Popen[bytes]:
    """A real `nsmigrate worker` process logging to ``workdir/<name>.log``."""
    with open(workdir / f"{name}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nsmigrate",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "--pool",
                pool,
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class CpuSampler:
    """The CPU seconds of processes read every ``interval_s`` in a thread, so that the CPU spent between two
    moments known only afterwards (the job's row and its last batch, from the job table) can be read back."""

    def __init__(self, procs: list[subprocess.Popen[bytes]], interval_s: float = 0.02) -> None:
        # Found once: looking for children scans every process of the machine (~5 ms of CPU), which 50 times a
        # second would take a quarter of a core from the fleet being measured.
        self._procs = [q for p in procs for q in _with_children(p)]
        self._samples: list[tuple[float, float]] = [(time.time(), self._read())]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _read(self) -> float:
        return _cpu_of(self._procs)

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._samples.append((time.time(), self._read()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._samples.append((time.time(), self._read()))

    def at(self, when: float) -> float:
        """The CPU seconds at ``when`` (epoch seconds), interpolated between the two samples around it."""
        before = max((s for s in self._samples if s[0] <= when), default=self._samples[0])
        after = min((s for s in self._samples if s[0] >= when), default=self._samples[-1])
        if after[0] <= before[0]:
            return before[1]
        return before[1] + (after[1] - before[1]) * (when - before[0]) / (after[0] - before[0])


def _with_children(p: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        proc = psutil.Process(p.pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    return _cpu_of([q for p in procs for q in _with_children(p)])


def _cpu_of(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (a process that has exited counts nothing)."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


DATA_SETS: dict[str, dict[str, Any]] = {
    "seed": dict(),  # 805 vectors, dimension 3072, 30 UUID namespaces + default
    "large": dict(n_vectors=20_000, dimension=1536, n_twin_namespaces=50, default_count=0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="seed,large", help="comma-separated: seed, large")
    default = FleetShape()
    pools = ["threads", "prefork"]
    parser.add_argument("--list-pool", choices=pools, default=default.list_pool, help="the list/verify worker's pool")
    parser.add_argument("--list-workers", type=int, default=default.list_workers, help="list/verify worker processes")
    parser.add_argument(
        "--list-concurrency", type=int, default=default.list_concurrency, help="task slots per list/verify worker"
    )
    parser.add_argument("--copy-pool", choices=pools, default=default.copy_pool, help="the copy workers' pool")
    parser.add_argument("--copy-workers", type=int, default=default.copy_workers, help="copy worker processes")
    parser.add_argument(
        "--copy-concurrency", type=int, default=default.copy_concurrency, help="task slots per copy worker"
    )
    parser.add_argument(
        "--batch-size", type=int, default=default.batch_size, help="the jobs' batch_size (spec default 100)"
    )
    parser.add_argument(
        "--parallel-upserts",
        type=int,
        default=default.parallel_upserts,
        help="the jobs' parallel_upserts (spec default 2)",
    )
    parser.add_argument(
        "--plan-here",
        action="store_true",
        help="start each job with `nsmigrate run --plan-here`: planned in the command, not by the fleet's planner",
    )
    parser.add_argument(
        "--fleets",
        type=int,
        default=3,
        help="fleets started per data set, each running a fresh and a warm job: the rows show the median job and "
        "the range of ratios over the fleets (on a small machine one job's figures move by ±15 %%)",
    )
    args = parser.parse_args(argv)
    if args.fleets < 1:
        parser.error("--fleets must be ≥ 1")
    shape = FleetShape(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FleetShape)})
    rows = []
    tmp = tempfile.mkdtemp(prefix="nsmigrate-bench-")  # kept only if a run goes wrong: its worker logs
    with RedisServer() as redis, PostgresServer() as pg:
        for name in args.sets.split(","):
            data = seed_dataset(**DATA_SETS[name])
            workdir = Path(tmp) / name
            workdir.mkdir()
            # ~13 bytes per value as float32 JSON text
            plane = DataPlane(data.dimension, workdir, stored_mb=(data.total * data.dimension * 13) >> 20)
            try:
                load_source(plane, data)
                warm_source(plane, data)
                plane.set_faults(latency_ms=LATENCY_MS, **SERVER_LIMITS)
                loop = sequential_loop(plane, data)
                db_url = pg.url  # one job table; each set is its own job
                services = {"postgres": pg.process, "redis": redis.process}
                fresh_jobs, warm_jobs = [], []
                for n in range(args.fleets):
                    if n:  # the next fleet copies into the same (emptied) target indexes
                        plane.admin("fleet", "/_sandbox/reset", {})
                        plane.admin("fleet-warm", "/_sandbox/reset", {})
                    first, warm = fleet(
                        plane,
                        data,
                        redis.url,
                        db_url,
                        workdir,
                        shape,
                        {name: p for name, p in services.items() if p is not None},
                    )
                    fresh_jobs.append(first)
                    warm_jobs.append(warm)
            finally:
                plane.stop()
            rows.append((name, data, loop, fresh_jobs, warm_jobs))
    shutil.rmtree(tmp)  # every set finished: the worker logs are not needed (an error above keeps them)
    print(
        f"\nlocal Pinecone data plane, {LATENCY_MS} ms added per request, serverless limits enforced; "
        f"fleet: {shape.describe()}; {os.cpu_count()} cores; median job of {args.fleets} fleet(s)"
    )
    print(
        f"{'data set':<28}{'fleet job':<16}{'loop s':>7}{'job s':>7}{'user s':>8}{'job ×loop':>10}{'user ×loop':>11}"
        f"{'user range':>12}{'429 fleet':>10}{'fleet CPU s/1k vec':>19}"
    )
    for name, data, loop, *jobs_by_kind in rows:
        label = f"{name} ({data.total}×{data.dimension}, {len(data.namespaces)} ns)"
        fleet_jobs = []
        for of_kind in jobs_by_kind:
            # Same vectors copied by the loop and by each job: the ratio of times is the ratio of throughputs.
            user_ratios = sorted(loop.seconds / (j.user_seconds or j.seconds) for j in of_kind)
            flt = sorted(of_kind, key=lambda j: j.user_seconds or j.seconds)[len(of_kind) // 2]
            fleet_jobs.append(flt)
            job = flt.name.removeprefix("fleet, ")
            user_s = flt.user_seconds or flt.seconds
            print(
                f"{label:<28}{job:<16}{loop.seconds:>7.2f}{flt.seconds:>7.2f}{user_s:>8.2f}"
                f"{loop.seconds / flt.seconds:>9.1f}×{loop.seconds / user_s:>10.1f}×"
                f"{f'{user_ratios[0]:.1f}–{user_ratios[-1]:.1f}×':>12}{max(j.share_429 for j in of_kind):>10.2%}"
                f"{(flt.cpu_s or 0) / flt.vectors * 1000:>19.2f}"
            )
            label = ""
        print(
            f"{'':<28}loop: {loop.vectors_per_s:.0f} vectors/s, 429s {loop.share_429:.2%}, data plane CPU "
            f"{loop.server_cpu_s:.1f} s"
        )
        for flt in fleet_jobs:
            others = ", ".join(f"{n} {cpu:.1f}" for n, cpu in (flt.others_cpu_s or {}).items())
            before_job = (flt.user_seconds or flt.seconds) - flt.seconds
            print(
                f"{'':<28}{flt.name}: {flt.vectors_per_s:.0f} vectors/s on the job clock; {before_job:.2f} s from "
                f"the command to the job's row (planned by {flt.planned_by}); CPU s: workers {flt.cpu_s:.1f} on the "
                f"job clock ({flt.cpu_user_clock_s:.1f} on the user's), data plane {flt.server_cpu_s:.1f}, {others}"
            )
        title = f"{name}: the median jobs' steps, seconds from `nsmigrate run`"
        print("\n".join(timeline_lines(title, [j.timeline or {} for j in fleet_jobs], ["fresh", "warm"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
