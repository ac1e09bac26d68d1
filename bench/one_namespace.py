"""Benchmark: one large namespace (200,000 vectors by default), listed as one chain against id-prefix chains.

Pinecone lists at most 100 ids a request and each page needs the token of the one before, so at 50 ms a request one
namespace lists ~2,000 ids/s however many workers run. nsmigrate lists a namespace of 5,000+ ids as several prefix
chains at once (``orchestrator.listing.prefix_chains``). This copies the same namespace twice with the same fleet (a
list worker and two copy workers, as ``bench.fleet_vs_loop``) against the local data plane (one process per index, 50 ms
added to every request, Pinecone's serverless limits enforced): once with ``max_list_chains: 1`` (one chain, as
before) and once with the default. It prints, for each, the ids/s listed (from the job's row to its last batch's
row), the vectors/s copied (to its last batch done), the list requests made and the share answered 429.

    .venv/bin/python -m bench.one_namespace
    .venv/bin/python -m bench.one_namespace --vectors 50000 --id-shape uuid
    .venv/bin/python -m bench.one_namespace --list-only     # the listing alone, no copy workers
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from pinecone import Pinecone

from bench.fleet_vs_loop import LATENCY_MS, SERVER_LIMITS, DataPlane, _cpu_seconds, _worker, stop_processes
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import Batch, Job, NamespaceRun
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.services import PostgresServer, RedisServer
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

DIM = 8
NAMESPACE = "tenant"


def make_ids(n: int, shape: str, rng: random.Random) -> list[str]:
    if shape == "uuid":
        return [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
    return [f"doc-{k // 4}#chunk-{k % 4}" for k in range(n)]  # the seeds' shape


def load(host: str, ids: list[str], rng: random.Random) -> None:
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=host)
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        index.upsert(
            vectors=[(i, [rng.random() for _ in range(DIM)], {"n": start}) for i in chunk], namespace=NAMESPACE
        )


def one_job(
    plane: DataPlane,
    db: jobs_database.Database,
    settings: Settings,
    target: str,
    chains: int,
    workdir: Path,
    list_only: bool,
) -> dict[str, float]:
    spec = parse_spec(
        {
            "name": f"one-namespace-{target}",
            "source": {"kind": "pinecone", "host": plane.hosts["src"]},
            "target": {"kind": "pinecone", "host": plane.hosts[target]},
            "batch_size": 200,
            "parallel_upserts": 4,
            "max_list_chains": chains,
            # Listing is what is measured: the bound of batches in flight must not hold it back to the copy's pace.
            "max_batches_in_flight": 10_000,
            "auto_verify": False,
            "rate": {"read_rps": 90, "stats_rps": 90, "list_rps": 180, "write_rps": 90},
        }
    )
    prepared = launch.prepare(spec, open_retrying_store, workdir)
    before = plane.counts()
    job_id = launch.launch(db, Dispatcher(settings), prepared)
    deadline = time.monotonic() + float(os.environ.get("BENCH_DEADLINE_S", "900"))
    total = prepared.plan.total_vectors
    while True:
        run = jobs_and_runs.runs_of(db, job_id)[0]
        if run.copied >= total or (list_only and run.listing_done):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not finish: {run.state}, listed {run.listed}, copied {run.copied}")
        time.sleep(0.5)
    with db.transaction() as s:
        created = s.scalar(sa.select(Job.created_at).where(Job.id == job_id))
        of_job = sa.select(NamespaceRun.id).where(NamespaceRun.job_id == job_id)
        listed_at, finished_at = s.execute(
            sa.select(sa.func.max(Batch.created_at), sa.func.max(Batch.finished_at)).where(Batch.run_id.in_(of_job))
        ).one()
    requests, r429 = (a - b for a, b in zip(plane.counts(), before, strict=True))
    assert created is not None and listed_at is not None
    list_s = (listed_at - created).total_seconds()
    copy_s = (finished_at - created).total_seconds() if finished_at is not None and not list_only else float("nan")
    return {"ids": run.listed, "list_s": list_s, "copy_s": copy_s, "requests": requests, "r429": r429}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=200_000, help="vectors in the one namespace")
    parser.add_argument("--id-shape", choices=["doc", "uuid"], default="doc", help="doc-N#chunk-M or UUIDs")
    parser.add_argument(
        "--list-only",
        action="store_true",
        help="no copy workers: the listing alone (its batches stay queued), so the copy takes no CPU from it",
    )
    args = parser.parse_args(argv)
    rng = random.Random(1)
    ids = make_ids(args.vectors, args.id_shape, rng)
    with RedisServer() as redis, PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="nsmigrate-one-") as tmp:
        workdir = Path(tmp)
        plane = DataPlane(DIM, workdir, indexes=("src", "single", "chains"))
        procs = []
        try:
            load(plane.hosts["src"], ids, rng)
            plane.set_faults(latency_ms=LATENCY_MS, **SERVER_LIMITS)
            env = dict(
                os.environ,
                NSMIGRATE_DATABASE_URL=pg.url,
                NSMIGRATE_REDIS_URL=redis.url,
                PINECONE_API_KEY=SANDBOX_API_KEY,
            )
            os.environ["PINECONE_API_KEY"] = SANDBOX_API_KEY
            procs = [_worker(env, "list,verify", "threads", 16, "list0", workdir)]
            if not args.list_only:
                procs += [_worker(env, "copy", "threads", 8, f"copy{n}", workdir) for n in range(2)]
            settings = Settings(database_url=pg.url, redis_url=redis.url)
            db = jobs_database.Database(pg.url)
            wait_for_workers(redis.url, len(procs))
            results: dict[str, dict[str, float]] = {}
            for target, most in (("single", 1), ("chains", 16)):
                cpu = _cpu_seconds(procs)
                results[target] = one_job(plane, db, settings, target, most, workdir, args.list_only)
                results[target]["cpu_s"] = _cpu_seconds(procs) - cpu
            db.dispose()
        finally:
            stop_processes(procs)
            plane.stop()
    print(
        f"\none namespace of {args.vectors} vectors ({args.id_shape} ids, dimension {DIM}), {LATENCY_MS} ms per "
        f"request, serverless limits enforced; list worker 1 × threads 16, "
        f"{'no copy workers (listing only)' if args.list_only else 'copy workers 2 × threads 8'}; "
        f"{os.cpu_count()} cores"
    )
    print(f"{'listing':<26}{'list s':>8}{'ids/s':>9}{'copy s':>8}{'vec/s':>9}{'requests':>10}{'429':>7}{'CPU s':>7}")
    for name, r in results.items():
        label = "one chain" if name == "single" else "16 prefix chains at once"
        print(
            f"{label:<26}{r['list_s']:>8.1f}{r['ids'] / r['list_s']:>9.0f}{r['copy_s']:>8.1f}"
            f"{r['ids'] / r['copy_s']:>9.0f}{r['requests']:>10}{r['r429'] / max(r['requests'], 1):>7.1%}"
            f"{r['cpu_s']:>7.1f}"
        )
    one, split = results["single"], results["chains"]
    copy = "" if args.list_only else f", copy {one['copy_s'] / split['copy_s']:.1f}×"
    print(f"prefix chains / one chain: listing {one['list_s'] / split['list_s']:.1f}×{copy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
