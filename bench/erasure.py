"""Benchmark: an erasure of a creator with 10 twins, as an operator runs it — `nsmigrate erase --creator c.1 --yes`
in its own process, on real cleanup workers, Redis, Postgres and the local Pinecone data plane (one index, 50 ms
added to every request, Pinecone's serverless per-second limits enforced with 429 + ``Retry-After``).

The index holds, as a finished migration leaves it, ``creator_c.1_twin_t{0..9}`` and another creator's ten twin
namespaces (``--vectors`` each), and a shared ``public`` namespace in which a tenth of the vectors are c.1's; the
job table holds that migration's runs, so the erasure finds the creator's namespaces and searches ``public``. Each
round loads the data again and erases it; printed per round and as the median: the user's clock (the command's
start to its exit), the erasure's own ``duration_s`` from its receipt (the job's row to the receipt, the target of
issue 44: < 10 s, the alert ``NsmigrateErasureSlow`` fires at 30 s) and its slowest place.

    .venv/bin/python -m bench.erasure                 # 3 rounds, 200 vectors per twin, 1,536 dimensions
    .venv/bin/python -m bench.erasure --rounds 5 --vectors 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.fleet_vs_loop import LATENCY_MS, SERVER_LIMITS
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.stack import Stack, start_stack, wait_for_workers

INDEX = "bench-erase"
CREATOR, OTHER = "c.1", "c.10"
TWINS = 10
#: The cleanup workers: one process of threads, as `nsmigrate worker --queues cleanup` runs them.
CLEANUP_THREADS = 8


def records(prefix: str, n: int, dimension: int, seed: int, **metadata: str) -> list[tuple[str, list[float], dict]]:
    rng = np.random.default_rng(seed)
    vectors = rng.random((n, dimension), dtype=np.float32)
    return [(f"{prefix}-{i:05d}", vectors[i].tolist(), {"text": f"{prefix} {i}", **metadata}) for i in range(n)]


def twin_namespace(creator: str, twin: int) -> str:
    return f"creator_{creator}_twin_{'t' if creator == CREATOR else 'u'}{twin}"


def load(stack: Stack, vectors: int, dimension: int) -> int:
    """The index as a finished migration leaves it; returns how many of its vectors are c.1's."""
    for creator in (CREATOR, OTHER):
        for twin in range(TWINS):
            ns = twin_namespace(creator, twin)
            stack.pinecone.load(INDEX, ns, records(ns, vectors, dimension, seed=twin, creator_id=creator))
    shared = records("public", vectors * 2, dimension, seed=99, creator_id=OTHER)
    theirs = len(shared) // 10
    for i in range(theirs):
        shared[i][2]["creator_id"] = CREATOR
    stack.pinecone.load(INDEX, "public", shared)
    return TWINS * vectors + theirs


def migrated_job(stack: Stack, vectors: int) -> None:
    """The job table of that migration: one finished run per twin (UUID source namespace → its creator namespace),
    and the shared namespace's."""
    db = Database(stack.database_url)
    index = {"kind": "pinecone", "host": stack.pinecone.host(INDEX)}
    spec = parse_spec({"name": "migrated", "source": index, "target": index, "cleanup": {"mode": "manual"}})
    runs = [
        NamespacePlan(
            f"uuid-{creator}-{twin}",
            twin_namespace(creator, twin),
            vectors,
            1,
            creator,
            twin_namespace(creator, twin).rsplit("_", 1)[-1],
        )
        for creator in (CREATOR, OTHER)
        for twin in range(TWINS)
    ]
    plan = Plan(runs=runs, estimate=Estimate(0, 0, 0, 0, 0, 0.0))
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label=INDEX, target_label=INDEX)
    for run in jobs_and_runs.runs_of(db, job_id):
        jobs_pages.start_listing(db, run.id)
        [batch] = jobs_pages.add_batches(db, run.id, [[f"{run.source_namespace}-0"]], None, listing_done=True).batch_ids
        jobs_batches.start_batch(db, batch, "bench")
        jobs_batches.finish_batch(
            db, batch, vectors=1, missing=0, nbytes=0, targets=[run.target_namespace or ""], max_in_flight=1
        )
    db.dispose()


def erase_round(stack: Stack, workdir: Path, n: int) -> dict:
    receipt_path = workdir / f"receipt-{n}.json"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nsmigrate", "erase", "--creator", CREATOR, "--yes", "--receipt", str(receipt_path)],
        env=stack.env(COLUMNS="200"),
        capture_output=True,
        text=True,
    )
    user_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"`nsmigrate erase` exited {done.returncode}: {done.stdout[-3000:]}{done.stderr[-2000:]}")
    receipt = json.loads(receipt_path.read_text())
    return {
        "user_s": user_s,
        "erasure_s": receipt["duration_s"],
        "slowest_place_s": max(p["duration_s"] or 0 for p in receipt["places"]),
        "places": len(receipt["places"]),
        "vectors": receipt["vectors_erased"],
        "verified": receipt["verified"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vectors", type=int, default=200, help="vectors per twin namespace")
    parser.add_argument("--dimension", type=int, default=1536)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="nsmigrate-bench-erase-"))
    stack = start_stack([IndexSpec(INDEX, args.dimension)], workdir)
    try:
        stack.pinecone.set_faults(INDEX, Faults(latency_ms=LATENCY_MS, **SERVER_LIMITS))
        migrated_job(stack, args.vectors)
        stack.start_worker("cleanup", CLEANUP_THREADS, pool="threads", name="cleanup")
        wait_for_workers(stack.redis_url, 1)
        rounds = []
        for n in range(args.rounds):
            theirs = load(stack, args.vectors, args.dimension)
            result = erase_round(stack, workdir, n)
            assert result["verified"] and result["vectors"] == theirs, result
            rounds.append(result)
            print(
                f"round {n + 1}: user {result['user_s']:.2f} s, erasure {result['erasure_s']:.2f} s, slowest place "
                f"{result['slowest_place_s']:.2f} s, {result['places']} places, {result['vectors']} vectors",
                flush=True,
            )
    finally:
        stack.stop()
    median = {k: statistics.median(r[k] for r in rounds) for k in ("user_s", "erasure_s", "slowest_place_s")}
    print(
        f"\nerasure of a creator with {TWINS} twins ({args.vectors} vectors each, {args.dimension} dimensions, and "
        f"their share of `public`), {LATENCY_MS} ms per request, serverless limits, {CLEANUP_THREADS} cleanup threads; "
        f"median of {args.rounds}: user's clock {median['user_s']:.2f} s, erasure (receipt) "
        f"{median['erasure_s']:.2f} s (target < 10 s; alert at 30 s), slowest place {median['slowest_place_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
