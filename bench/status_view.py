"""Benchmark: `nsmigrate status` of large jobs, as a user runs it — start-up, the statement, decoding and rendering.

Builds, in a real Postgres, the two jobs `bench.scale` ends with, without running a fleet (their rows written as the
fleet leaves them):

- **namespaces**: ``--namespaces`` (12,000) three-vector namespaces (UUID names), each with its one batch done and
  verified with a report of the usual shape;
- **batches**: the same number of namespaces with ``--batches`` (1,008,000) batch rows of 100 packed UUIDs between
  them, every batch done and every run verified.

Then it runs ``python -m nsmigrate status JOB`` and ``status JOB --json`` for each job, and ``jobs`` and ``--help``,
in their
own processes, ``--repeats`` times: the median wall clock and CPU seconds (user + system) of the process. With
``--compare REV`` the same commands of commit REV's code (extracted with ``git archive``, run by this checkout's
interpreter and packages) are timed in alternation with this checkout's (ABBA), so a drift of the machine favours
neither; it prints B ÷ A.

    .venv/bin/python -m bench.status_view                                       # both jobs, this checkout
    .venv/bin/python -m bench.status_view --compare main --repeats 7
    .venv/bin/python -m bench.status_view --batches 0 --data-dir /tmp/sv-pg     # keep the cluster for the next run
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench.ab import commit_of
from bench.scale import REPORT, mark_done, names_of, write_done_batches
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.orchestrator.packed_ids import pack_ids
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.planner import make_plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate_sandbox.services import PostgresServer

REPO = Path(__file__).resolve().parent.parent


def build_job(db: jobs_database.Database, name: str, namespaces: int, per_run: int) -> int:
    """A finished job of ``namespaces`` namespaces of ``per_run`` done batches of 100 ids each (3 ids when
    ``per_run`` is 1: the three-vector namespaces of `bench.scale`), every run verified; returns its id."""
    vectors = 3 if per_run == 1 else per_run * 100
    spec = parse_spec(
        {
            "name": name,
            "source": {"kind": "pinecone", "host": "http://src.invalid:1"},
            "target": {"kind": "pinecone", "host": "http://dst.invalid:1"},
            "batch_size": 100,
        }
    )
    names = {n: vectors for n in names_of(namespaces)}
    plan = make_plan(spec, Inventory("src", 8, names, "cosine"), Inventory("dst", 8, {}, "cosine"), {})
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")
    with db.transaction() as s:
        run_ids = list(
            s.scalars(sa.select(NamespaceRun.id).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id))
        )
    rng = random.Random(3)
    per_batch = min(vectors, 100)
    blobs = [pack_ids([str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(per_batch)]) for _ in range(1000)]
    write_done_batches(db, run_ids, per_run, blobs, per_batch)
    mark_done(
        db, job_id, per_run, str(REPORT["summary"]) if per_run == 1 else f"{vectors} = {vectors} vectors; ids equal"
    )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return job_id


def job_of(db: jobs_database.Database, name: str) -> int | None:
    with db.engine.connect() as conn:
        found = conn.scalar(sa.text("SELECT max(id) FROM jobs WHERE name = :n"), {"n": name})
    return None if found is None else int(found)


def tree_of(rev: str, root: Path) -> Path:
    """Commit ``rev``'s files, extracted under ``root`` (no worktree: the repository is left as it is)."""
    sha = commit_of(REPO, rev)
    path = root / sha[:12]
    path.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    return runnable(path)


def runnable(tree: Path) -> Path:
    """``tree`` (extracted files of a commit) made to run its own code as ``python -m nsmigrate`` from it: the
    package's parts live in top-level folders that the installed package maps (``setup.py``), and from ``tree`` only
    ``nsmigrate/`` itself would be its own, ``nsmigrate.cli`` and the rest this checkout's. Each part is linked into
    ``tree/nsmigrate/`` where the interpreter finds it first."""
    for part in ("cli", "orchestrator", "workers", "migrations"):
        link = tree / "nsmigrate" / part
        if (tree / part).is_dir() and not link.exists():
            link.symlink_to(Path("..") / part)
    return tree


def timed(tree: Path, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -m nsmigrate ARGV`` run from ``tree`` (its ``cli`` comes first on the path)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nsmigrate", *argv], cwd=tree, env=env, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"`nsmigrate {' '.join(argv)}` in {tree} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def measure(
    pg: PostgresServer, trees: dict[str, Path], args: argparse.Namespace
) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """The jobs built (or found, in a kept cluster), then every command of every tree timed, alternated."""
    db = jobs_database.Database(pg.url)
    wanted = {f"sv-namespaces-{args.namespaces}": 1}
    if args.batches:
        wanted[f"sv-batches-{args.batches}"] = -(-args.batches // args.namespaces)
    job_ids = {}
    for name, per_run in wanted.items():
        found = job_of(db, name)
        if found is None:
            started = time.monotonic()
            found = build_job(db, name, args.namespaces, per_run)
            print(f"built {name} (job {found}) in {time.monotonic() - started:.0f} s", flush=True)
        job_ids[name] = found
    db.dispose()
    env = dict(os.environ, NSMIGRATE_DATABASE_URL=pg.url, COLUMNS="120")
    env.pop("PYTHONPATH", None)
    commands = [
        (name, mode, ["status", str(job_id), *extra])
        for name, job_id in job_ids.items()
        for mode, extra in (("status", []), ("--json", ["--json"]))
    ]
    commands += [("(no job)", "jobs", ["jobs"]), ("(no job)", "--help", ["--help"])]
    for tree in trees.values():  # once each, untimed: the page cache holds the files and the tables
        for *_, cmd in commands:
            timed(tree, cmd, env)
    figures: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    order = list(trees.items())
    for k in range(args.repeats):
        for label, tree in order if k % 2 == 0 else order[::-1]:
            for name, mode, cmd in commands:
                figures.setdefault((label, name, mode), []).append(timed(tree, cmd, env))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=12_000, help="namespaces of each job")
    parser.add_argument("--batches", type=int, default=1_008_000, help="batches of the second job (0: none)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command per tree (median reported)")
    parser.add_argument("--compare", metavar="REV", help="also time commit REV's code, alternated (A = REV)")
    parser.add_argument("--data-dir", type=Path, help="Postgres cluster to keep and reuse (default: a new one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nsmigrate-sv-") as tmp:
        trees = {"this checkout": REPO}
        if args.compare:
            trees = {args.compare: tree_of(args.compare, Path(tmp)), **trees}
        if args.data_dir:
            args.data_dir.mkdir(parents=True, exist_ok=True)
        pg = PostgresServer(data_dir=args.data_dir) if args.data_dir else PostgresServer()
        pg.start()
        try:
            figures = measure(pg, trees, args)
        finally:
            pg.stop() if args.data_dir else pg.destroy()
    report(figures, list(trees), args.repeats)
    return 0


def report(figures: dict[tuple[str, str, str], list[tuple[float, float]]], trees: list[str], repeats: int) -> None:
    print(f"\n`nsmigrate status`, median of {repeats} runs each ({os.cpu_count()} cores); wall s (CPU s)")
    medians: dict[tuple[str, str, str], tuple[float, float]] = {
        key: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for key, runs in figures.items()
    }
    jobs_modes = sorted({(name, mode) for _, name, mode in figures}, key=lambda nm: (nm[0], nm[1] != "status"))
    header = f"{'job':<26}{'command':<15}" + "".join(f"{t[:22]:>24}" for t in trees)
    print(header + (f"{'B ÷ A wall (CPU)':>20}" if len(trees) == 2 else ""))
    for name, mode in jobs_modes:
        cells = [medians[(t, name, mode)] for t in trees]
        line = f"{name:<26}{mode:<15}" + "".join(f"{f'{w:.3f} ({c:.3f})':>24}" for w, c in cells)
        if len(cells) == 2:
            (wa, ca), (wb, cb) = cells
            line += f"{f'{wb / wa:.2f} ({cb / ca:.2f})':>20}"
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
