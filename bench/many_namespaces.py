"""Benchmark: many small namespaces copied and verified end to end by a real fleet.

N namespaces of three vectors each (UUID names, one twin per namespace as in the seeds' model) are loaded into a
source index of the local Pinecone data plane (``--latency-ms`` added a request, none by default; Pinecone's
serverless per-second limits enforced: 429 + Retry-After) and copied to a target index of the same data plane by a
real fleet — `nsmigrate worker` processes on Redis and Postgres: one list worker, ``--verify-workers`` verify workers
(``--verify-pool``), ``--copy-workers`` copy workers and, with ``--cleanup-concurrency``, a cleanup worker — in one job
with ``auto_verify`` on (and ``cleanup.mode: auto`` with the cleanup worker), started as a user starts it
(``nsmigrate run SPEC --wait``, ``bench.user_clock``).

Reported, all from one run:

- the **copy clock** (job row → last batch copied), the **verify tail** (last batch → last verification), the job
  row → all verified, the **cleanup tail** (last verdict → last source cleaned up) and the user's clock (the command
  → all verified, or all cleaned up);
- worker CPU seconds per namespace of each phase, split by worker: the copy phase is the list and copy workers, the
  verification phase the verify workers; and the CPU of the data plane, Postgres, Redis and the command;
- data-plane requests per namespace and phase. The target's are by operation (upserts are the copy's; fetch, list,
  stats and queries the verification's); the source's list and fetch requests are shared by both phases, so the
  copy is credited with one list and one fetch per batch (a three-vector namespace is one page and one batch) and
  the verification with the rest;
- the ratios verification ÷ copy;
- with ``--reverify``, then ``nsmigrate verify JOB --wait`` of the verified job as a user runs it: its wall clock
  (every verdict judged again), the verify workers' CPU per namespace and the command's CPU.

    .venv/bin/python -m bench.many_namespaces                       # 12,000 namespaces
    .venv/bin/python -m bench.many_namespaces --namespaces 1000     # a quick run
    .venv/bin/python -m bench.many_namespaces --namespaces 2000 --reverify   # then `nsmigrate verify JOB --wait`
    .venv/bin/python -m bench.many_namespaces --namespaces 500 --latency-ms 50 --verify-workers 1 \\
        --verify-pool prefork --verify-concurrency 2 --cleanup-pool prefork --cleanup-concurrency 1  # another shape

``--deadline`` (1800 s) bounds the job. Never a timed test: figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pinecone import Pinecone

from bench.fleet_vs_loop import SERVER_LIMITS, DataPlane, _cpu_seconds, _worker, stop_processes
from bench.user_clock import job_clock, run_cli
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.models import Batch, Event, NamespaceRun, RunState
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

VECTORS_PER_NAMESPACE = 3


def namespace_names(n: int) -> list[str]:
    return [str(uuid.UUID(int=k + 1)) for k in range(n)]


def load_source(host: str, names: list[str], dimension: int) -> None:
    """Three vectors per namespace, one upsert each, eight at a time (before any limit is switched on)."""
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=host)

    def load(k_ns: tuple[int, str]) -> None:
        k, ns = k_ns
        vectors = [
            (f"{ns[-6:]}-{j}", [((k * 7 + j * 3 + d) % 17) / 17 + 0.01 for d in range(dimension)], {"k": k, "j": j})
            for j in range(VECTORS_PER_NAMESPACE)
        ]
        index.upsert(vectors=vectors, namespace=ns)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(load, enumerate(names)))


def requests_by_op(plane: DataPlane) -> dict[str, Counter[str]]:
    return {index: Counter(plane.admin(index, "/_sandbox/stats")["requests"]) for index in plane.hosts}


@dataclasses.dataclass(frozen=True)
class Clocks:
    """Epoch seconds of the job's row, its last batch, its last verdict and its last source cleaned up (None without
    cleanups); its runs that passed (verified or cleaned up), failed verification, and its batches."""

    created: float
    last_batch: float
    last_verdict: float
    last_cleaned: float | None
    passed: int
    failed: int
    batches: int


def clocks(db: jobs_database.Database, job_id: int) -> Clocks:
    created, last_batch = job_clock(db, job_id)
    with db.transaction() as s:
        passed, failed = s.execute(
            sa.select(
                sa.func.count().filter(NamespaceRun.state.in_([RunState.VERIFIED, RunState.CLEANED])),
                sa.func.count().filter(NamespaceRun.state == RunState.VERIFY_FAILED),
            ).where(NamespaceRun.job_id == job_id)
        ).one()
        # The events, not the runs' own times: a cleanup moves a verified run on.
        last = dict(
            s.execute(
                sa.select(Event.action, sa.func.max(Event.at))
                .where(Event.job_id == job_id, Event.action.in_(["verified", "verify_failed", "source_deleted"]))
                .group_by(Event.action)
            ).all()
        )
        batches = s.scalar(
            sa.select(sa.func.count()).select_from(Batch).join(NamespaceRun).where(NamespaceRun.job_id == job_id)
        )
    verdicts = [at for action, at in last.items() if action != "source_deleted"]
    cleaned = last.get("source_deleted")
    return Clocks(
        created,
        last_batch,
        float(max(verdicts).timestamp()),
        float(cleaned.timestamp()) if cleaned is not None else None,
        int(passed),
        int(failed),
        int(batches or 0),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=12_000, help="namespaces of three vectors")
    parser.add_argument("--dimension", type=int, default=8)
    parser.add_argument("--list-concurrency", type=int, default=16, help="threads of the list worker")
    parser.add_argument("--verify-workers", type=int, default=2, help="as many as copy workers by default")
    parser.add_argument("--verify-concurrency", type=int, default=8, help="task slots per verify worker")
    parser.add_argument(
        "--verify-pool", choices=("threads", "prefork"), default="threads", help="the verify workers' pool"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every data-plane request")
    parser.add_argument(
        "--cleanup-concurrency",
        type=int,
        default=0,
        help="task slots of a cleanup worker; with it the job cleans up by itself (cleanup.mode: auto); 0: no cleanup",
    )
    parser.add_argument("--cleanup-pool", choices=("threads", "prefork"), default="threads")
    parser.add_argument("--copy-workers", type=int, default=2)
    parser.add_argument("--copy-concurrency", type=int, default=8, help="threads per copy worker")
    parser.add_argument("--deadline", type=float, default=1800, help="seconds the job may take")
    parser.add_argument(
        "--reverify", action="store_true", help="then time `nsmigrate verify JOB --wait` of the verified job"
    )
    args = parser.parse_args(argv)
    n = args.namespaces
    names = namespace_names(n)
    tmp = Path(tempfile.mkdtemp(prefix="nsmigrate-many-"))
    with RedisServer() as redis, PostgresServer() as pg:
        plane = DataPlane(args.dimension, tmp, indexes=("src", "dst"))
        procs = []
        try:
            started = time.monotonic()
            load_source(plane.hosts["src"], names, args.dimension)
            print(f"loaded {n} namespaces in {time.monotonic() - started:.1f} s", flush=True)
            plane.set_faults(latency_ms=args.latency_ms, **SERVER_LIMITS)
            env = dict(
                os.environ,
                NSMIGRATE_DATABASE_URL=pg.url,
                NSMIGRATE_REDIS_URL=redis.url,
                PINECONE_API_KEY=SANDBOX_API_KEY,
            )
            lister = _worker(env, "list", "threads", args.list_concurrency, "list", tmp)
            verifiers = [
                _worker(env, "verify", args.verify_pool, args.verify_concurrency, f"verify{k}", tmp)
                for k in range(args.verify_workers)
            ]
            copiers = [
                _worker(env, "copy", "threads", args.copy_concurrency, f"copy{k}", tmp)
                for k in range(args.copy_workers)
            ]
            cleaners = (
                [_worker(env, "cleanup", args.cleanup_pool, args.cleanup_concurrency, "cleanup", tmp)]
                if args.cleanup_concurrency
                else []
            )
            procs = [lister, *verifiers, *copiers, *cleaners]
            wait_for_workers(redis.url, len(procs))
            spec = {
                "name": f"many-{n}",
                "source": {"kind": "pinecone", "host": plane.hosts["src"]},
                "target": {"kind": "pinecone", "host": plane.hosts["dst"]},
                "auto_verify": True,
                # Under the server's limits, as the fleet bench: (almost) nothing is answered 429.
                "rate": {"read_rps": 90, "stats_rps": 90, "list_rps": 180, "write_rps": 90},
                **({"cleanup": {"mode": "auto"}} if cleaners else {}),
            }
            parse_spec(spec)
            services = {"postgres": pg.process, "redis": redis.process}
            cpu_before = {
                "list": _cpu_seconds([lister]),
                "copy": _cpu_seconds(copiers),
                "verify": _cpu_seconds(verifiers),
                "cleanup": _cpu_seconds(cleaners),
                "data plane": plane.cpu_seconds(),
                **{k: _cpu_seconds([p]) for k, p in services.items() if p is not None},
            }
            before = requests_by_op(plane)
            cli = run_cli(spec, env, tmp, args.deadline)
            cpu = {
                "list": _cpu_seconds([lister]),
                "copy": _cpu_seconds(copiers),
                "verify": _cpu_seconds(verifiers),
                "cleanup": _cpu_seconds(cleaners),
                "data plane": plane.cpu_seconds(),
                **{k: _cpu_seconds([p]) for k, p in services.items() if p is not None},
            }
            cpu = {k: v - cpu_before[k] for k, v in cpu.items()}
            cpu["nsmigrate run"] = cli.cpu_s
            after = requests_by_op(plane)
            db = jobs_database.Database(pg.url)
            job = clocks(db, cli.job_id)
            db.dispose()
            again = reverify(env, cli.job_id, verifiers, args.deadline) if args.reverify else None
        finally:
            stop_processes(procs)
            plane.stop()
    src = after["src"] - before["src"]
    dst = after["dst"] - before["dst"]
    copy_requests = {"src list": n, "src fetch": job.batches, "dst upsert": dst["upsert"]}
    # With cleanups, the source's and the target's other requests are theirs too: counted with the verification's.
    verify_requests = {
        "src list": src["list"] - n,
        "src fetch": src["fetch"] - job.batches,
        **{f"src {op}": c for op, c in sorted(src.items()) if op not in ("list", "fetch") and cleaners},
        **{f"dst {op}": c for op, c in sorted(dst.items()) if op != "upsert"},
    }
    copy_s, tail_s = job.last_batch - job.created, job.last_verdict - job.last_batch
    all_s = job.last_verdict - job.created
    copy_cpu, verify_cpu = cpu["list"] + cpu["copy"], cpu["verify"]
    copy_req, verify_req = sum(copy_requests.values()), sum(verify_requests.values())
    print(
        f"\n{n} namespaces × {VECTORS_PER_NAMESPACE} vectors (dimension {args.dimension}), local data plane, "
        f"{args.latency_ms:g} ms added a request, serverless limits; list worker × {args.list_concurrency} threads, "
        f"{args.verify_workers} verify worker(s) × {args.verify_pool} {args.verify_concurrency}, {args.copy_workers} "
        f"copy workers × {args.copy_concurrency} threads"
        + (f", a cleanup worker × {args.cleanup_pool} {args.cleanup_concurrency}" if cleaners else "")
        + f"; {os.cpu_count()} cores"
    )
    print(f"passed {job.passed} (verified or cleaned up), failed verification {job.failed}, batches {job.batches}")
    print(f"copy clock (job row → last batch)          {copy_s:8.1f} s")
    print(f"verify tail (last batch → last verdict)    {tail_s:8.1f} s")
    print(f"job row → all verified                     {all_s:8.1f} s")
    if job.last_cleaned is not None:
        print(f"cleanup tail (last verdict → last cleaned) {job.last_cleaned - job.last_verdict:8.1f} s")
    done = job.last_cleaned if job.last_cleaned is not None else job.last_verdict
    print(f"user's clock (command → {'all cleaned up' if cleaners else 'all verified'}) {done - cli.started:8.1f} s")
    print(f"all verified ÷ copy clock                  {all_s / copy_s:8.2f}")
    print(
        f"worker CPU ms per namespace: copy {copy_cpu / n * 1000:.1f} (list {cpu['list'] / n * 1000:.1f}, copy "
        f"{cpu['copy'] / n * 1000:.1f}), verify {verify_cpu / n * 1000:.1f}; verify ÷ copy {verify_cpu / copy_cpu:.2f}"
    )
    print("other CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if k not in ("list", "copy", "verify")))
    print(
        f"requests per namespace: copy {copy_req / n:.2f} ("
        + ", ".join(f"{k} {v / n:.2f}" for k, v in copy_requests.items())
        + f"), verify {verify_req / n:.2f} ("
        + ", ".join(f"{k} {v / n:.2f}" for k, v in verify_requests.items())
        + f"); verify ÷ copy {verify_req / copy_req:.2f}"
    )
    if again is not None:
        print(
            f"`nsmigrate verify JOB --wait` of the verified job: {again.wall_s:.1f} s (exit code {again.exit_code}), "
            f"verify worker CPU ms per namespace {again.worker_cpu_s / n * 1000:.1f}, the command's CPU "
            f"{again.command_cpu_s:.1f} s"
        )
    shutil.rmtree(tmp)
    return 0 if job.passed == n and (again is None or again.exit_code == 0) else 1


@dataclasses.dataclass(frozen=True)
class Reverify:
    wall_s: float
    exit_code: int
    worker_cpu_s: float
    command_cpu_s: float


def reverify(env: dict[str, str], job_id: int, verifiers: list[Any], deadline_s: float) -> Reverify:
    """``nsmigrate verify JOB --wait`` as a user runs it, from the command to its exit (every verdict new)."""
    cpu_before = _cpu_seconds(verifiers)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "nsmigrate", "verify", str(job_id), "--wait"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=deadline_s,
        check=False,
    )
    wall_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    command_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Reverify(wall_s, proc.returncode, _cpu_seconds(verifiers) - cpu_before, command_cpu)


if __name__ == "__main__":
    raise SystemExit(main())
