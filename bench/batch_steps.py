"""A copy batch's job-table work, in process: the statement that starts it, the erasure ledger's read and its finish
(``orchestrator.jobs.batches``), as one thread of a copy worker runs them, for ``--batches`` batches of one run on an
embedded Postgres. Prints the client CPU and the wall milliseconds a batch: the job table's share of a worker's CPU,
apart from HTTP, Celery and the data plane that the fleet benches measure with it.

With two commits it runs each from its own worktree (``bench.ab``'s, made under ``/tmp/nsmigrate-ab/`` and reused,
given this file first) against one Postgres, alternated ABBA ``--pairs`` times, and prints each side's median and
B ÷ A::

    .venv/bin/python -m bench.batch_steps                       # this tree
    .venv/bin/python -m bench.batch_steps main HEAD --pairs 3

Figures to read, never assertions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.ab import commit_of, order, worktree


def measure(url: str, batches: int) -> dict[str, float]:
    """Client CPU and wall ms a batch over ``batches`` batches of 200 ids, started, asked of the ledger and finished
    one after the other; the statements are compiled first, as a worker compiles them before its first task."""
    from nsmigrate.orchestrator.jobs import batches as jobs_batches
    from nsmigrate.orchestrator.jobs import database, erasure_ledger, jobs_and_runs, pages
    from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
    from nsmigrate.orchestrator.spec.jobspec import parse_spec

    db = database.Database(url)
    store = {"kind": "pinecone", "host": "http://127.0.0.1:9"}
    spec = parse_spec({"name": "batch-steps", "source": store, "target": store})
    plan = Plan(runs=[NamespacePlan("ns", "ns", batches * 200, 1)], estimate=Estimate(0, 0, 0, 0, 0, 0.0))
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    [run] = jobs_and_runs.runs_of(db, job_id)
    pages.start_listing(db, run.id)
    id_batches = [[f"{b}-{i}" for i in range(200)] for b in range(batches)]
    ids = pages.add_batches(db, run.id, id_batches, None, listing_done=True).batch_ids
    jobs_batches.compile_task_statements(db)
    jobs_and_runs.job_spec(db, job_id)  # a worker reads a job's spec once
    by_key = getattr(erasure_ledger, "subjects_of_key", None)  # the ledger read with the start, or its own statement
    cpu, wall = time.process_time(), time.perf_counter()
    for batch_id in ids:
        work = jobs_batches.start_batch(db, batch_id, "bench")
        assert work is not None
        if by_key is not None:
            by_key(db, getattr(work, "ledger_key", None))
        else:
            erasure_ledger.erasure_subjects(db)
        jobs_batches.finish_batch(db, batch_id, vectors=200, missing=0, nbytes=1, targets=["ns"], max_in_flight=8)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert jobs_and_runs.get_run(db, run.id).state == "copied"
    db.dispose()
    return {"cpu_ms": cpu / batches * 1000, "wall_ms": wall / batches * 1000}


def compare(a: str, b: str, pairs: int, batches: int, roots: Path) -> str:
    from nsmigrate_sandbox.services import PostgresServer

    repo = Path(__file__).resolve().parents[1]
    paths = {"A": worktree(repo, a, roots), "B": worktree(repo, b, roots)}
    for path in paths.values():  # both measure with this tree's bench
        shutil.copy(Path(__file__), path / "bench" / Path(__file__).name)
    pg = PostgresServer().start()
    got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for pair in range(pairs):
        for side in order(pair):
            command = [str(paths[side] / ".venv/bin/python"), "-m", "bench.batch_steps", "--url", pg.url]
            done = subprocess.run(
                [*command, "--batches", str(batches)],
                cwd=paths[side],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the bench of {paths[side]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            got[side].append(json.loads(done.stdout))
    lines = [f"A = {a} ({commit_of(repo, a)[:12]}), B = {b} ({commit_of(repo, b)[:12]}); {pairs} pairs, ms a batch"]
    for key in ("cpu_ms", "wall_ms"):
        a_ms, b_ms = (statistics.median(r[key] for r in got[side]) for side in "AB")
        each = [rb[key] / ra[key] for ra, rb in zip(got["A"], got["B"], strict=True)]
        lines.append(
            f"  {key}: A {a_ms:.3f}  B {b_ms:.3f}  B÷A {b_ms / a_ms:.3f} (runs {min(each):.3f}–{max(each):.3f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", nargs="?", help="commit A (the baseline); with B, compare the two")
    parser.add_argument("b", nargs="?", help="commit B (the change)")
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs, alternated ABBA (default 3)")
    parser.add_argument("--batches", type=int, default=300, help="batches a run (default 300)")
    parser.add_argument("--url", help="measure this tree against this job table and print JSON")
    parser.add_argument("--worktrees", type=Path, default=Path("/tmp/nsmigrate-ab"), help="where the worktrees go")
    args = parser.parse_args(argv)
    if args.url:
        print(json.dumps(measure(args.url, args.batches)))
    elif args.a and args.b:
        print(compare(args.a, args.b, args.pairs, args.batches, args.worktrees))
    else:
        from nsmigrate_sandbox.services import PostgresServer

        print(json.dumps(measure(PostgresServer().start().url, args.batches)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
