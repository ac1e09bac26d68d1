"""Benchmark: scale — jobs of 1,000 and 12,000 namespaces planned, launched and run, and a job of 1M batches.

For each size N (``--sizes``), in a database of its own and on freshly started processes:

- **orchestrator**: a synthetic inventory (N namespaces of 3 vectors, UUID names, as one twin per namespace in the
  seeds' model) planned with the real planner, written to the job table and launched onto Redis, in a process of its
  own: its CPU seconds, its peak RSS, and (in a second such process, whose job no worker takes) the tracemalloc peak
  of plan + write + launch;
- **workers**: the job run by a real fleet on a thin data plane (the local Pinecone data plane, no latency and no
  limits; one list worker × 16 threads and one copy worker × 8 threads, ``auto_verify`` off) until every namespace
  is copied: each worker's RSS and peak RSS after the run;
- **Flower** (``nsmigrate flower`` with its default ``--max-tasks``), watching the run: its RSS after the run and
  the response time of ``/api/tasks?limit=100``, ``/api/workers`` and the tasks page;
- **the exporter** (``nsmigrate metrics``), up during the run: its RSS and peak RSS after a scrape of ``/metrics``
  and of the job's page, and their response times;
- **job table**: every run then marked verified with a report of the usual shape, ``VACUUM``, and the bytes of the
  job tables (``pg_total_relation_size``, indexes and TOAST included) per vector;
- **status**: ``nsmigrate status JOB --json`` and ``nsmigrate status JOB`` as a user runs them (own process: wall
  and CPU seconds, median of ``--repeats``).

Then a job of ``--batches`` (1M) batches: ``--big-namespaces`` (12,000) namespaces whose vector counts make that many
batches of ``batch_size`` 100 planned and written to the job table, and its batches' rows written as a lister writes
them (100 random UUIDs each, packed) by ``COPY`` (the ids are made up; each row stores its own), every batch done and
every run verified: the job table's bytes per vector and batch, and ``status`` of that job.

    .venv/bin/python -m bench.scale                                   # 1,000 and 12,000 namespaces, 1M batches
    .venv/bin/python -m bench.scale --sizes 1000 --batches 0          # a quick run
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import sqlalchemy as sa

from bench.fleet_vs_loop import DataPlane, _worker, stop_processes
from nsmigrate.cli.render import SUMMARY_ROWS
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import Batch, NamespaceRun, RunState
from nsmigrate.orchestrator.packed_ids import pack_ids
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.planner import make_plan
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.snapshot import SNAPSHOT_SQL, SUMMARY_SQL
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate_sandbox.services import PostgresServer, RedisServer, free_port, wait_for_port
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

DIM = 8
PER_NAMESPACE = 3
JOB_TABLES = ("jobs", "namespace_runs", "batches", "events", "erase_places", "nsmigrate_schema")
FLOWER_PASSWORD = "bench-flower"  # a local Flower of this run only
#: A verification report of a three-vector namespace as `verify` writes it (its shape; ids made up).
REPORT = {
    "passed": True,
    "summary": "3 = 3 vectors; ids equal; 3 contents equal",
    "checked_at": "2026-01-01T00:00:00+00:00",
    "counts": {"source": 3, "target": 3},
    "ids": {"missing": [], "extra": [], "missing_count": 0, "extra_count": 0},
    "contents": {"checked": 3, "mismatches": [], "mismatch_count": 0, "digest": "0" * 64},
    "queries": {"samples": 0, "latency": {"p50_ms": 12.5, "p95_ms": 20.1}},
}


def names_of(n: int) -> list[str]:
    return [str(uuid.UUID(int=k + 1)) for k in range(n)]


def job_spec(n: int, source: str, target: str) -> dict[str, Any]:
    return {
        "name": f"scale-{n}",
        "source": {"kind": "pinecone", "host": source},
        "target": {"kind": "pinecone", "host": target},
        "auto_verify": False,
        # The thin data plane has no limits: the budgets must not be what paces the run.
        "rate": {"read_rps": 5000, "stats_rps": 5000, "list_rps": 5000, "write_rps": 5000},
    }


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


# ------------------------------------------------------------------------------------------------ the orchestrator


def orchestrate(args: argparse.Namespace) -> int:
    """In a process of its own: plan, write and launch a job of ``--orchestrate`` namespaces; print its figures."""
    spec = parse_spec(job_spec(args.orchestrate, *args.hosts.split(",")) | {"batch_size": args.batch_size})
    names = {name: args.per_namespace for name in names_of(args.orchestrate)}
    settings = Settings(database_url=args.database_url, redis_url=args.redis_url)
    db = jobs_database.Database(args.database_url)
    after_imports = proc_status(os.getpid())["VmRSS"]
    if args.tracemalloc:
        tracemalloc.start()
    cpu = time.process_time()
    plan = make_plan(spec, Inventory("src", DIM, names, "cosine"), Inventory("dst", DIM, {}, "cosine"), {})
    plan_cpu = time.process_time() - cpu
    del names
    job_id = launch.launch(db, Dispatcher(settings), Prepared(spec, plan, "src", "dst"))
    cpu = time.process_time() - cpu
    traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
    figures = {
        "job_id": job_id,
        "batches": plan.total_batches,
        "plan_cpu": plan_cpu,
        "cpu": cpu,
        "traced_peak": traced,
        "rss_after_imports": after_imports,
        "peak_rss": proc_status(os.getpid())["VmHWM"],
    }
    print(json.dumps(figures))
    return 0


def run_orchestrator(n: int, database_url: str, redis_url: str, hosts: str, *extra: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.scale", "--orchestrate", str(n), "--hosts", hosts]
    out = subprocess.run(
        [*command, "--database-url", database_url, "--redis-url", redis_url, *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------ the run


def load_source(host: str, names: list[str]) -> None:
    """Three vectors per namespace, one upsert each, eight at a time, over keep-alive connections."""
    local = httpx.Client(base_url=host, headers={"Api-Key": SANDBOX_API_KEY}, timeout=30)

    def load(k: int) -> None:
        vectors = [{"id": f"v{k}-{j}", "values": [(k + j + d) % 7 / 7 + 0.1 for d in range(DIM)]} for j in range(3)]
        local.post("/vectors/upsert", json={"vectors": vectors, "namespace": names[k]}).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(load, range(len(names))))
    local.close()


def wait_copied(db: jobs_database.Database, job_id: int, deadline_s: float) -> float:
    """Seconds until every run of the job is copied; raises on a failure or after ``deadline_s``."""
    started = time.monotonic()
    of_job = NamespaceRun.job_id == job_id
    while True:
        with db.transaction() as s:
            left, failed = s.execute(
                sa.select(
                    sa.func.count().filter(NamespaceRun.state != RunState.COPIED),
                    sa.func.count().filter(NamespaceRun.state == RunState.LIST_FAILED),
                ).where(of_job)
            ).one()
        if not left:
            return time.monotonic() - started
        if failed or time.monotonic() - started > deadline_s:
            raise RuntimeError(f"job {job_id}: {left} runs not copied ({failed} list_failed)")
        time.sleep(1)


class Served:
    """`nsmigrate COMMAND` (flower, or metrics: the job pages and gauges) on a free port, with Flower's basic auth."""

    def __init__(self, env: dict[str, str], workdir: Path, command: str = "flower") -> None:
        self.port = free_port()
        env = dict(env, NSMIGRATE_FLOWER_PASSWORD=FLOWER_PASSWORD)
        with open(workdir / f"{command}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nsmigrate", command, "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, 60, self.proc)
        token = base64.b64encode(f"admin:{FLOWER_PASSWORD}".encode()).decode()
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Basic {token}"}
        )

    def timed(self, path: str, repeats: int = 5) -> tuple[float, int]:
        """Median seconds of GET ``path`` and the size of its answer."""
        times, size = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            answer = self.client.get(path, timeout=60)
            times.append(time.perf_counter() - started)
            answer.raise_for_status()
            size = len(answer.content)
        return statistics.median(times), size

    def tasks_known(self) -> int:
        return len(self.client.get("/api/tasks", params={"limit": 1_000_000}, timeout=120).json())

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(20)


def fleet_run(
    n: int, pg: PostgresServer, redis: RedisServer, plane: DataPlane, workdir: Path, deadline_s: float
) -> dict[str, Any]:
    """A job of ``n`` namespaces planned, launched and run on fresh workers in a database of its own."""
    url = new_database(pg, f"scale_{n}")
    traced_url = new_database(pg, f"traced_{n}")
    hosts = f"{plane.hosts['src']},{plane.hosts[f'dst{n}']}"
    # The traced run's job goes to a Redis database no worker reads.
    traced = run_orchestrator(n, traced_url, redis.url[:-1] + "1", hosts, "--tracemalloc")
    env = dict(os.environ, NSMIGRATE_DATABASE_URL=url, NSMIGRATE_REDIS_URL=redis.url, PINECONE_API_KEY=SANDBOX_API_KEY)
    workers = {
        "list": _worker(env, "list", "threads", 16, f"list{n}", workdir),
        "copy": _worker(env, "copy", "threads", 8, f"copy{n}", workdir),
    }
    flower = Served(env, workdir)
    exporter = Served(env, workdir, "metrics")
    try:
        wait_for_workers(redis.url, len(workers))
        figures = run_orchestrator(n, url, redis.url, hosts)
        db = jobs_database.Database(url, create=False)
        figures["run_s"] = wait_copied(db, figures["job_id"], deadline_s)
        time.sleep(2)  # Flower takes the last task events in
        figures["workers"] = {name: proc_status(p.pid) for name, p in workers.items()}
        figures["flower_rss"] = psutil.Process(flower.proc.pid).memory_info().rss
        figures["flower_tasks"] = flower.tasks_known()
        figures["flower_api_tasks"] = flower.timed("/api/tasks?limit=100")
        figures["flower_api_workers"] = flower.timed("/api/workers")
        figures["flower_tasks_page"] = flower.timed("/tasks")
        figures["exporter_metrics"] = exporter.timed("/metrics")
        figures["exporter_page"] = exporter.timed(f"/jobs/{figures['job_id']}")
        figures["exporter_rss"] = proc_status(exporter.proc.pid)
    finally:
        exporter.stop()
        flower.stop()
        stop_processes(workers.values())
    figures["traced_peak"] = traced["traced_peak"]
    mark_verified(db, figures["job_id"])
    figures["vectors"] = n * PER_NAMESPACE
    figures["bytes"] = job_table_bytes(db)
    figures["status"] = status_of(url, figures["job_id"])
    db.dispose()
    return figures


# ------------------------------------------------------------------------------------------------ the job table


def new_database(pg: PostgresServer, name: str) -> str:
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = pg.url.rsplit("/", 1)[0] + f"/{name}"
    jobs_database.Database(url).dispose()
    return url


def mark_verified(db: jobs_database.Database, job_id: int) -> None:
    """Every run verified with a report like ``REPORT``: what `status` reads at the end of a job."""
    with db.transaction() as s:
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id)
            .values(verification=REPORT, state=RunState.VERIFIED, copied=NamespaceRun.source_count)
        )


def job_table_bytes(db: jobs_database.Database) -> int:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        return int(
            conn.scalar(
                sa.text("SELECT sum(pg_total_relation_size(t)) FROM unnest(cast(:t as regclass[])) t"),
                {"t": list(JOB_TABLES)},
            )
        )


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def status_of(database_url: str, job_id: int, repeats: int = 3) -> dict[str, tuple[float, float]]:
    """`nsmigrate status JOB [--json]` in its own process: (median wall, median CPU seconds) of each; and, in this
    process, the statements alone on an open connection (median wall, and the client's CPU seconds): the snapshot's
    (``--json``) and the summary's (the table)."""
    env = dict(os.environ, NSMIGRATE_DATABASE_URL=database_url)
    out = {}
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        for label, sql in (("statement", SNAPSHOT_SQL), ("summary statement", SUMMARY_SQL)):
            walls, cpus = [], []
            for _ in range(repeats + 1):
                cpu, started = time.process_time(), time.perf_counter()
                conn.execute(sql, {"job_id": job_id, "rows": SUMMARY_ROWS}).fetchone()
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu)
            out[label] = (statistics.median(walls[1:]), statistics.median(cpus[1:]))
    for label, extra in (("--json", ["--json"]), ("table", [])):
        walls, cpus = [], []
        for _ in range(repeats):
            before, started = cpu_of_children(), time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "nsmigrate", "status", str(job_id), *extra],
                env=env,
                stdout=subprocess.DEVNULL,
                check=True,
            )
            walls.append(time.perf_counter() - started)
            cpus.append(cpu_of_children() - before)
        out[label] = (statistics.median(walls), statistics.median(cpus))
    return out


def big_job(pg: PostgresServer, redis: RedisServer, batches: int, namespaces: int) -> dict[str, Any]:
    """A job of ``batches`` batches of 100 ids over ``namespaces`` namespaces: planned, written, every batch's row
    written (by COPY), done and verified."""
    per_run = -(-batches // namespaces)
    url = new_database(pg, "scale_batches")
    figures = run_orchestrator(
        namespaces,
        url,
        redis.url[:-1] + "1",
        "http://src.invalid:1,http://dst.invalid:1",
        "--per-namespace",
        str(per_run * 100),
        "--batch-size",
        "100",
    )
    job_id = figures["job_id"]
    rng = random.Random(3)
    blobs = [pack_ids([str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(100)]) for _ in range(1000)]
    db = jobs_database.Database(url, create=False)
    with db.transaction() as s:
        run_ids = list(
            s.scalars(sa.select(NamespaceRun.id).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id))
        )
    started = time.perf_counter()
    write_done_batches(db, run_ids, per_run, blobs, 100)
    written_s = time.perf_counter() - started
    mark_done(db, job_id, per_run, f"{per_run * 100} = {per_run * 100} vectors; ids equal")
    with db.transaction() as s:
        written = s.scalar(sa.select(sa.func.count()).select_from(Batch))
    figures.update(
        namespaces=namespaces,
        batches_written=written,
        copy_s=written_s,
        vectors=namespaces * per_run * 100,
        bytes=job_table_bytes(db),
        batches_bytes=table_bytes(db, "batches"),
        status=status_of(url, job_id),
    )
    db.dispose()
    return figures


def write_done_batches(
    db: jobs_database.Database, run_ids: list[int], per_run: int, blobs: list[bytes], vectors: int
) -> None:
    """``per_run`` done batches of ``vectors`` ids for each run, by ``COPY`` (the packed ids taken in turn from
    ``blobs``), as a lister and the copy workers leave them."""
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        now = datetime.now(UTC)
        columns = (
            "run_id, seq, ids, state, attempts, vectors, missing, bytes, worker, created_at, started_at, finished_at"
        )
        with cursor.copy(f"COPY batches ({columns}) FROM STDIN") as copy:
            k = 0
            for run_id in run_ids:
                for seq in range(per_run):
                    copy.write_row(
                        (run_id, seq, blobs[k % len(blobs)], "done", 1, vectors, 0, 9_000, "copy0@bench", now, now, now)
                    )
                    k += 1
        raw.commit()
    finally:
        raw.close()


def mark_done(db: jobs_database.Database, job_id: int, per_run: int, summary: str) -> None:
    """Every run of the job listed (``per_run`` batches), copied and verified with a report like ``REPORT``."""
    with db.transaction() as s:
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id)
            .values(
                listed=NamespaceRun.source_count,
                batches_total=per_run,
                listing_done=True,
                verification=REPORT | {"summary": summary},
                state=RunState.VERIFIED,
                copied=NamespaceRun.source_count,
            )
        )


def table_bytes(db: jobs_database.Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT pg_total_relation_size(cast(:t as regclass))"), {"t": table}))


# ------------------------------------------------------------------------------------------------ report


def mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


def report(rows: dict[int, dict[str, Any]], big: dict[str, Any] | None) -> None:
    print(
        f"\nscale: N namespaces of {PER_NAMESPACE} vectors, thin local data plane, real Postgres, Redis, workers, "
        f"Flower; {os.cpu_count()} cores"
    )
    print(
        f"{'namespaces':>10}{'plan CPU s':>11}{'plan+write+launch CPU s':>24}{'traced peak MB':>15}"
        f"{'orch. peak RSS MB':>18}{'run s':>7}{'list wk RSS/peak MB':>20}{'copy wk RSS/peak MB':>20}"
    )
    for n, r in rows.items():
        w = r["workers"]
        print(
            f"{n:>10}{r['plan_cpu']:>11.2f}{r['cpu']:>24.2f}{mb(r['traced_peak']):>15}{mb(r['peak_rss']):>18}"
            f"{r['run_s']:>7.0f}{mb(w['list']['VmRSS']) + '/' + mb(w['list']['VmHWM']):>20}"
            f"{mb(w['copy']['VmRSS']) + '/' + mb(w['copy']['VmHWM']):>20}"
        )
    print(
        f"{'namespaces':>10}{'job table MB':>13}{'B/vector':>9}{'status --json s (CPU)':>22}{'status s (CPU)':>16}"
        f"{'statement s':>12}{'summary s':>10}"
        f"{'Flower tasks':>13}{'Flower RSS MB':>14}{'/api/tasks ms':>14}{'/api/workers ms':>16}{'/tasks ms':>10}"
    )
    for n, r in rows.items():
        js, table = r["status"]["--json"], r["status"]["table"]
        print(
            f"{n:>10}{mb(r['bytes']):>13}{r['bytes'] / r['vectors']:>9.0f}{f'{js[0]:.2f} ({js[1]:.2f})':>22}"
            f"{f'{table[0]:.2f} ({table[1]:.2f})':>16}{r['status']['statement'][0]:>12.3f}"
            f"{r['status']['summary statement'][0]:>10.3f}"
            f"{r['flower_tasks']:>13}{mb(r['flower_rss']):>14}"
            f"{r['flower_api_tasks'][0] * 1000:>14.0f}{r['flower_api_workers'][0] * 1000:>16.0f}"
            f"{r['flower_tasks_page'][0] * 1000:>10.0f}"
        )
    print(f"{'namespaces':>10}{'exporter RSS/peak MB':>21}{'/metrics ms':>12}{'job page ms':>12}{'page KB':>8}")
    for n, r in rows.items():
        rss, page = r["exporter_rss"], r["exporter_page"]
        print(
            f"{n:>10}{mb(rss['VmRSS']) + '/' + mb(rss['VmHWM']):>21}{r['exporter_metrics'][0] * 1000:>12.0f}"
            f"{page[0] * 1000:>12.0f}{page[1] / 1024:>8.0f}"
        )
    if len(rows) >= 2:
        (n0, a), (n1, b) = min(rows.items()), max(rows.items())
        ratios = {
            "orchestrator peak RSS": b["peak_rss"] / a["peak_rss"],
            "orchestrator traced peak": b["traced_peak"] / a["traced_peak"],
            "list worker RSS": b["workers"]["list"]["VmRSS"] / a["workers"]["list"]["VmRSS"],
            "list worker peak RSS": b["workers"]["list"]["VmHWM"] / a["workers"]["list"]["VmHWM"],
            "copy worker RSS": b["workers"]["copy"]["VmRSS"] / a["workers"]["copy"]["VmRSS"],
            "copy worker peak RSS": b["workers"]["copy"]["VmHWM"] / a["workers"]["copy"]["VmHWM"],
            "Flower RSS": b["flower_rss"] / a["flower_rss"],
            "exporter peak RSS": b["exporter_rss"]["VmHWM"] / a["exporter_rss"]["VmHWM"],
            "job table bytes per vector": (b["bytes"] / b["vectors"]) / (a["bytes"] / a["vectors"]),
            "status --json wall": b["status"]["--json"][0] / a["status"]["--json"][0],
        }
        print(f"{n0} → {n1} namespaces: " + ", ".join(f"{k} {v:.2f}×" for k, v in ratios.items()))
    if big:
        js, table = big["status"]["--json"], big["status"]["table"]
        print(
            f"job of {big['namespaces']} namespaces, {big['batches']} batches planned, "
            f"{big['batches_written']} written (100 UUID ids each), {big['vectors']} vectors: "
            f"plan CPU {big['plan_cpu']:.2f} s, "
            f"plan+write+launch {big['cpu']:.2f} s, orchestrator peak RSS {mb(big['peak_rss'])} MB; batch rows "
            f"by COPY in {big['copy_s']:.0f} s; job table {mb(big['bytes'])} MB = {big['bytes'] / big['vectors']:.1f} "
            f"B/vector (batches {big['batches_bytes'] / big['batches_written']:.0f} B/batch); status --json "
            f"{js[0]:.2f} s ({js[1]:.2f} CPU), status {table[0]:.2f} s ({table[1]:.2f} CPU), its statements "
            f"{big['status']['statement'][0]:.3f} s (snapshot), {big['status']['summary statement'][0]:.3f} s (summary)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,12000", help="comma-separated namespace counts")
    parser.add_argument("--batches", type=int, default=1_000_000, help="batches of the big job (0: none)")
    parser.add_argument("--big-namespaces", type=int, default=12_000, help="namespaces of the big job")
    parser.add_argument("--deadline", type=float, default=1800, help="seconds a run may take")
    # the orchestrator's own process (internal)
    parser.add_argument("--orchestrate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--hosts", help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--per-namespace", type=int, default=PER_NAMESPACE, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.orchestrate:
        return orchestrate(args)
    sizes = [int(n) for n in args.sizes.split(",") if n]
    rows: dict[int, dict[str, Any]] = {}
    big = None
    with RedisServer() as redis, PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="nsmigrate-scale-") as tmp:
        workdir = Path(tmp)
        if sizes:
            plane = DataPlane(DIM, workdir, indexes=("src", *(f"dst{n}" for n in sizes)))
            try:
                started = time.monotonic()
                load_source(plane.hosts["src"], names_of(max(sizes)))
                print(f"loaded {max(sizes)} namespaces in {time.monotonic() - started:.0f} s", flush=True)
                for n in sizes:
                    rows[n] = fleet_run(n, pg, redis, plane, workdir, args.deadline)
                    print(json.dumps({n: rows[n]}), flush=True)
            finally:
                plane.stop()
        if args.batches:
            big = big_job(pg, redis, args.batches, args.big_namespaces)
            print(json.dumps({"big": big}), flush=True)
    report(rows, big)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
