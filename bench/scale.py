"""Benchmark: many small namespaces — planning, launching and `status` of a job of 1,000 and of 12,000 namespaces.

A synthetic inventory (N namespaces of 3 vectors, UUID names, as one twin per namespace in the seeds' model) is
planned with the real planner (``make_plan``), written to a real Postgres job table and launched onto a real Redis
(``launch.launch``: one lister message per namespace; no worker consumes them), and every run is then marked
verified with a report of the usual shape (what `status` reads at the end of a job). For each N it prints the CPU
seconds and the peak Python memory (tracemalloc) of the plan, the CPU seconds of writing and launching the job, and
`nsmigrate status JOB --json` as a user runs it (its own process: wall and CPU seconds, median of ``--repeats``), with
the ratios from 1,000 to 12,000.

    .venv/bin/python -m bench.scale [--sizes 1000,12000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid

import sqlalchemy as sa

from orchestrator import jobs, launch
from orchestrator.dispatch import Dispatcher
from orchestrator.models import NamespaceRun, RunState
from orchestrator.plan_types import Inventory
from orchestrator.planner import make_plan
from orchestrator.settings import Settings
from orchestrator.spec import parse_spec
from sandbox.services import PostgresServer, RedisServer

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


def verified(db: jobs.Database, job_id: int) -> None:
    """Every run of the job verified with a report like ``REPORT``: what `status` reads at the end of a job."""
    with db.transaction() as s:
        s.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.job_id == job_id)
            .values(verification=REPORT, state=RunState.VERIFIED, copied=NamespaceRun.source_count)
        )


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,12000", help="comma-separated namespace counts")
    parser.add_argument("--repeats", type=int, default=3, help="runs of `status --json` per size (median)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    spec = parse_spec(
        {
            "name": "many-namespaces",
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
        }
    )
    rows = []
    with RedisServer() as redis, PostgresServer() as pg:
        settings = Settings(database_url=pg.url, redis_url=redis.url)
        db = jobs.Database(pg.url)
        env = dict(os.environ, NSMIGRATE_DATABASE_URL=pg.url)
        for n in sizes:
            names = {str(uuid.UUID(int=k + 1)): 3 for k in range(n)}
            source = Inventory("src", 8, names, "cosine")
            target = Inventory("dst", 8, {}, "cosine")
            tracemalloc.start()
            cpu = time.process_time()
            plan = make_plan(spec, source, target, {})
            plan_cpu = time.process_time() - cpu
            plan_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            prepared = launch.Prepared(spec, plan, "src", "dst")
            cpu = time.process_time()
            job_id = launch.launch(db, Dispatcher(settings), prepared)
            launch_cpu = time.process_time() - cpu
            verified(db, job_id)
            cpu = time.process_time()
            jobs.job_status(db, job_id)
            status_in_process = time.process_time() - cpu
            walls, cpus = [], []
            for _ in range(args.repeats):
                before, started = cpu_of_children(), time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "cli", "status", str(job_id), "--json"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    check=True,
                )
                walls.append(time.perf_counter() - started)
                cpus.append(cpu_of_children() - before)
            rows.append((n, plan_cpu, plan_peak, launch_cpu, status_in_process, walls, cpus))
        db.dispose()
    print(f"\nN namespaces of 3 vectors, synthetic inventory, real Postgres and Redis; {os.cpu_count()} cores")
    print(
        f"{'namespaces':>10}{'plan CPU s':>11}{'plan peak MB':>13}{'write+launch CPU s':>19}"
        f"{'job_status CPU s':>17}{'status --json s':>16}{'its CPU s':>10}"
    )
    for n, plan_cpu, peak, launch_cpu, in_proc, walls, cpus in rows:
        print(
            f"{n:>10}{plan_cpu:>11.2f}{peak / 2**20:>13.1f}{launch_cpu:>19.2f}{in_proc:>17.2f}"
            f"{statistics.median(walls):>16.2f}{statistics.median(cpus):>10.2f}"
        )
    if len(rows) >= 2:
        (n0, p0, m0, l0, _, w0, _), (n1, p1, m1, l1, _, w1, _) = rows[0], rows[-1]
        print(
            f"{n0} → {n1} namespaces: plan CPU {p1 / p0:.1f}×, plan memory {m1 / m0:.1f}×, write+launch "
            f"{l1 / l0:.1f}×, status --json {statistics.median(w1) / statistics.median(w0):.1f}×"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
