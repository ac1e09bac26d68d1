"""Benchmark: the fleet against the strongest single-process rival (``bench.pgvector_rival``) on a pgvector → pgvector
copy between two databases, the legacy ``embeddings`` table → a namespace table ``embeddings_{namespace}``, every batch
through the workers.

The source table is the application's (its DDL, ``sandbox.seed.application_ddl``) in database ``bench_source``,
every column filled and NULLs where the DDL allows them, made inside Postgres; the target is a namespace table of
database ``bench_target`` on the same server. Per round, the order alternated:

- the rival: ``python -m bench.pgvector_rival`` in its own process, timed from its start to its commit;
- the fleet: the default shape (one list worker × 16 threads, two copy workers × 16 threads), standing, started once
  before the first round; the job started as a user starts it, ``nsmigrate run SPEC --wait`` (the user's clock,
  command → last batch; ``bench.user_clock``), no enrichment, no verification, the spec's default batch size
  (``--batch-size`` sets one).

Each copy is checked to hold every row, then its table is dropped. Prints per contender the median user clock, fleet
÷ rival (rival seconds ÷ fleet seconds, per round and its range), the workers' CPU seconds per 1,000 vectors on the
job clock (job row → last batch) and the CPU of the rival, the command and Postgres::

    .venv/bin/python -m bench.pgvector_vs_rival                         # 805 x 3072, 20,000 x 1536 (7 rounds each)
    .venv/bin/python -m bench.pgvector_vs_rival --sets seed --rounds 2

Figures to read, never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from bench.fleet_vs_loop import CpuSampler, _wait_for_planner
from bench.user_clock import job_clock, run_cli, timeline, timeline_lines
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate_sandbox.seed import application_ddl
from nsmigrate_sandbox.services import PostgresServer
from nsmigrate_sandbox.stack import Stack, start_stack, wait_for_workers

SOURCE_ENV, TARGET_ENV = "BENCH_PG_SOURCE_URL", "BENCH_PG_TARGET_URL"
SETS = {"seed": (805, 3072), "large": (20_000, 1536)}
#: Rounds of a set unless ``--rounds`` says: a round is a second or less, and both contenders' first rounds run
#: slower than the rest (a seed round is one batch; the large set's first three took up to 1.4× the later ones), so a
#: median of 3 reads the warm-up: 7 steady it.
DEFAULT_ROUNDS = {"seed": 7, "large": 7}
DEADLINE_S = float(os.environ.get("BENCH_DEADLINE_S", "600"))


def fill_sql(rows: int, dimension: int) -> str:
    """Every column of the legacy table set, NULL in turn where the DDL allows it; a new vector per row."""
    return f"""
    INSERT INTO embeddings (chunk_id, document_id, collection_name, text, embedding, strategy, content_type, path,
        parent_chunk_id, depth_level, hierarchy_level, semantic_density, confidence, chunk_size, token_count,
        key_count, contains_arrays, is_leaf, domain_tags, original_keys, metadata, created_at, updated_at)
    SELECT 'doc-' || lpad((i / 7)::text, 7, '0') || '#chunk-' || (i % 7), 'doc-' || lpad((i / 7)::text, 7, '0'),
        'collection_' || (i % 3), 'chunk text number ' || i,
        (SELECT array_agg(random()::real) FROM generate_series(1, {int(dimension)}) WHERE i > 0)::vector,
        'semantic', 'text/plain', CASE WHEN i % 3 <> 0 THEN '/docs/' || i END,
        CASE WHEN i % 7 <> 0 THEN 'doc-' || lpad((i / 7)::text, 7, '0') || '#chunk-0' END,
        CASE WHEN i % 7 <> 0 THEN i % 3 END, CASE WHEN i % 7 <> 0 THEN i % 2 END,
        CASE WHEN i % 7 <> 0 THEN random() END, CASE WHEN i % 7 <> 0 THEN 1 / (i + 1.0) END,
        CASE WHEN i % 4 <> 0 THEN 500 + i % 100 END, CASE WHEN i % 4 <> 0 THEN 120 + i % 50 END,
        CASE WHEN i % 4 <> 0 THEN i % 9 END, CASE WHEN i % 7 <> 0 THEN i % 2 = 0 END,
        CASE WHEN i % 7 <> 0 THEN i % 5 = 0 END,
        CASE WHEN i % 6 <> 0 THEN ARRAY['tag' || (i % 5), 'all'] END,
        CASE WHEN i % 6 <> 0 THEN ARRAY['title', 'body'] END,
        CASE WHEN i % 5 <> 0 THEN jsonb_build_object('source', 'bench', 'row', i) END,
        timestamp '2024-01-01' + i * interval '1 minute', timestamp '2024-06-01' + i * interval '1 second'
    FROM generate_series(1, {int(rows)}) AS i"""


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def run_rival(env: dict[str, str], table: str) -> tuple[float, float, int]:
    """(user clock s, CPU s, rows) of one ``python -m bench.pgvector_rival`` run into ``table``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.pgvector_rival",
            *map(_libpq, (env[SOURCE_ENV], env[TARGET_ENV])),
            "--target-table",
            table,
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=DEADLINE_S,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out["last_write"] - started, cpu, int(out["rows"])


def run_fleet(
    name: str,
    namespace: str,
    env: dict[str, str],
    workdir: Path,
    db: jobs_database.Database,
    sampler: CpuSampler,
    rate: dict[str, float],
    batch_size: int | None,
) -> tuple[float, float, float, float, dict[str, float | None]]:
    """(user clock s, job clock s, worker CPU s on the job clock, the command's CPU s, its timeline) of one job through
    the standing fleet, the legacy table into ``namespace``."""
    spec = {
        "name": name,
        "routing": {"mode": "explicit", "map": {"": namespace}},
        "source": {"kind": "pgvector", "schema": "documented", "database_url_env": SOURCE_ENV},
        "target": {"kind": "pgvector", "schema": "documented", "database_url_env": TARGET_ENV},
        "enrich": {"creator_fields": False, "migrated_from": False},
        "auto_verify": False,
        **({} if batch_size is None else {"batch_size": batch_size}),
        "rate": rate,
    }
    cli = run_cli(spec, env, workdir, DEADLINE_S)
    created, finished = job_clock(db, cli.job_id)
    steps = timeline(db, cli, {})  # no data plane: the target's writes are the batches'
    return finished - cli.started, finished - created, sampler.at(finished) - sampler.at(created), cli.cpu_s, steps


def postgres_cpu(server: PostgresServer) -> float:
    """CPU seconds of the server: the postmaster, its live backends, and the backends that have ended (reaped)."""
    assert server.process is not None
    main = psutil.Process(server.process.pid)
    times = main.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in main.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            t = child.cpu_times()
            total += t.user + t.system
    return total


def bench_set(
    stack: Stack,
    name: str,
    rows: int,
    dimension: int,
    rounds: int,
    env: dict[str, str],
    rate: dict[str, float],
    batch_size: int | None,
) -> dict[str, Any]:
    source = sa.create_engine(env[SOURCE_ENV], isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    target = sa.create_engine(env[TARGET_ENV], isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with source.connect() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS embeddings"))
        conn.exec_driver_sql(application_ddl("embeddings", dimension))
        conn.execute(sa.text(fill_sql(rows, dimension)))
        conn.execute(sa.text("ANALYZE embeddings"))

    def landed(table: str) -> int:
        with target.connect() as conn:
            n = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)
            conn.execute(sa.text(f"DROP TABLE {table}"))
        return n

    [server] = [s for s in stack.servers if isinstance(s, PostgresServer)]
    db = jobs_database.Database(stack.database_url)
    sampler = CpuSampler(stack.processes)
    keys = (
        "rival_s",
        "rival_cpu_s",
        "rival_pg_cpu_s",
        "fleet_s",
        "job_s",
        "worker_cpu_s",
        "cli_cpu_s",
        "fleet_pg_cpu_s",
    )
    result: dict[str, list[float]] = {k: [] for k in keys}
    timelines: list[dict[str, float | None]] = []
    try:
        for n in range(rounds):
            order = ("rival", "fleet") if n % 2 == 0 else ("fleet", "rival")
            for who in order:
                pg_before = postgres_cpu(server)
                # A table of its own each time: a standing fleet's workers remember the tables they made.
                table = f"embeddings_{who}_{name}_{n}"
                if who == "rival":
                    seconds, cpu, copied = run_rival(env, table)
                    result["rival_s"].append(seconds)
                    result["rival_cpu_s"].append(cpu)
                    result["rival_pg_cpu_s"].append(postgres_cpu(server) - pg_before)
                else:
                    user_s, job_s, worker_cpu, cli_cpu, steps = run_fleet(
                        f"bench-pg-{name}-{n}",
                        table.removeprefix("embeddings_"),
                        env,
                        stack.workdir,
                        db,
                        sampler,
                        rate,
                        batch_size,
                    )
                    copied = rows  # what landed is counted below
                    timelines.append(steps)
                    result["fleet_s"].append(user_s)
                    result["job_s"].append(job_s)
                    result["worker_cpu_s"].append(worker_cpu)
                    result["cli_cpu_s"].append(cli_cpu)
                    result["fleet_pg_cpu_s"].append(postgres_cpu(server) - pg_before)
                found = landed(table)
                if found != rows or copied != rows:
                    raise SystemExit(f"{who} round {n}: {found} rows landed of {rows}")
    finally:
        sampler.stop()
        db.dispose()
        source.dispose()
        target.dispose()
    ratios = [r / f for r, f in zip(result["rival_s"], result["fleet_s"], strict=True)]
    return {
        "set": f"{name}: {rows} x {dimension}",
        **{k: [round(v, 3) for v in vs] for k, vs in result.items()},
        "rival_s_median": round(statistics.median(result["rival_s"]), 3),
        "fleet_s_median": round(statistics.median(result["fleet_s"]), 3),
        "fleet_over_rival": round(statistics.median(ratios), 2),
        "fleet_over_rival_range": [round(min(ratios), 2), round(max(ratios), 2)],
        "worker_cpu_s_per_1k": round(statistics.median(result["worker_cpu_s"]) * 1000 / rows, 3),
        "rival_cpu_s_per_1k": round(statistics.median(result["rival_cpu_s"]) * 1000 / rows, 3),
        "cli_cpu_s_median": round(statistics.median(result["cli_cpu_s"]), 3),
        "postgres_cpu_s_fleet_rival": [
            round(statistics.median(result["fleet_pg_cpu_s"]), 2),
            round(statistics.median(result["rival_pg_cpu_s"]), 2),
        ],
        "load_after": [round(x, 1) for x in os.getloadavg()],
        "timelines": timelines,
    }


def summary(result: dict[str, Any]) -> list[str]:
    """The set's figures for a person: the clocks, the ratio and its range, and the fleet jobs' timelines."""
    low, high = result["fleet_over_rival_range"]
    lines = [
        f"pgvector → pgvector, {result['set']}: rival {result['rival_s_median']:.2f} s (start → commit), fleet "
        f"{result['fleet_s_median']:.2f} s (`nsmigrate run` → last batch); fleet ÷ rival (rival s ÷ fleet s, > 1 = "
        f"fleet faster) {result['fleet_over_rival']:.2f}× ({low:.2f}–{high:.2f}); load after {result['load_after']}",
        f"  CPU s: workers {result['worker_cpu_s_per_1k']:.3f} per 1k rows, rival {result['rival_cpu_s_per_1k']:.3f}; "
        f"the command {result['cli_cpu_s_median']:.2f}; Postgres fleet / rival {result['postgres_cpu_s_fleet_rival']}",
    ]
    labels = [f"round {n + 1}" for n in range(len(result["timelines"]))]
    skip = ("first write", "last write", "namespace checks done")  # no data plane here: a batch's end is its write
    return lines + timeline_lines("fleet job, seconds from `nsmigrate run`", result["timelines"], labels, skip)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="seed,large", help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument(
        "--rounds", type=int, help="rounds per set (default 7: the first rounds are slower, and 7 steady the median)"
    )
    parser.add_argument(
        "--write-mb-per-s",
        type=float,
        help="the job's rate.write_mb_per_s (default: the spec's, a share of Pinecone's)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="the job's batch_size (default: the spec's, as a user's job gets it)"
    )
    parser.add_argument(
        "--postgres-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the server both contenders use, over the sandbox's (repeat it), e.g. shared_buffers=1GB",
    )
    parser.add_argument("--json", action="store_true", help="each set's figures as one JSON line (bench.pgvector_ab)")
    args = parser.parse_args(argv)

    stack = start_stack([], postgres_settings=tuple(args.postgres_setting))
    try:
        base = stack.database_url.rsplit("/", 1)[0]
        admin = sa.create_engine(stack.database_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            for database in ("bench_source", "bench_target"):
                conn.execute(sa.text(f"CREATE DATABASE {database}"))
        admin.dispose()
        for database in ("bench_source", "bench_target"):
            engine = sa.create_engine(f"{base}/{database}", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
            with engine.connect() as conn:
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
            engine.dispose()
        urls = {SOURCE_ENV: f"{base}/bench_source", TARGET_ENV: f"{base}/bench_target"}
        os.environ.update(urls)  # the workers' environment (``stack.env``) and this process's
        env = stack.env()
        stack.start_worker("list,verify", 16, pool="threads", name="list")
        for n in range(2):
            stack.start_worker("copy", 16, pool="threads", name=f"copy{n}")
        wait_for_workers(stack.redis_url, 3)
        _wait_for_planner(stack.redis_url)
        rate = {} if args.write_mb_per_s is None else {"write_mb_per_s": args.write_mb_per_s}
        print(f"load before: {[round(x, 1) for x in os.getloadavg()]}", file=sys.stderr)
        for name in args.sets.split(","):
            rows, dimension = SETS[name]
            rounds = args.rounds or DEFAULT_ROUNDS[name]
            result = bench_set(stack, name, rows, dimension, rounds, env, rate, args.batch_size)
            print(json.dumps(result) if args.json else "\n".join(summary(result)), flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
