"""Benchmark: moving one seed-004 pgvector namespace table (``embeddings_{namespace}``), measured four ways in one run.

- **floor**: one plain ``INSERT … SELECT`` of every row into an empty table of the same schema, run by ``psql``
  (no batches, no ``ON CONFLICT``, no job table: what Postgres itself needs for the rows);
- **fleet, in Postgres**: an nsmigrate job between two tables of the same database, its batches ``INSERT … SELECT``
  by keyset-listed ids inside Postgres (``workers.stores.pgvector.table_copies.copy_batch_in_postgres``), launch →
  copied;
- **until verified**: the same job, launch → verified (the target's ivfflat and b-tree indexes, ANALYZE, and the
  full verification: every id and every record's values and metadata compared);
- **fleet, through workers**: the same job into a table of another database on the same server, so every batch is
  fetched into a worker and upserted from it, launch → copied.

The source table is made inside Postgres (random unit-free vectors, every required column set). Real ``nsmigrate
worker`` processes, Redis and Postgres on this machine::

    .venv/bin/python -m bench.pgvector_move                       # 100,000 rows x 384 dimensions
    .venv/bin/python -m bench.pgvector_move --rows 20000 --rounds 1

Never a timed test: these are figures to read, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator import launch, pgvector_layout
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.settings import load_settings
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate_sandbox.services import _postgres_bin
from nsmigrate_sandbox.stack import Stack, start_stack, wait_for_workers

URL_ENV, OTHER_URL_ENV = "NSMIGRATE_PGVECTOR_URL", "NSMIGRATE_PGVECTOR_OTHER_URL"
DEADLINE_S = float(os.environ.get("BENCH_DEADLINE_S", "900"))


def _fill_sql(rows: int, dimension: int) -> str:
    # The subquery refers to i, so Postgres draws a new vector for every row.
    return f"""
    INSERT INTO embeddings_alpha (chunk_id, document_id, collection_name, text, strategy, content_type, depth_level,
                                  semantic_density, is_leaf, domain_tags, embedding, metadata)
    SELECT 'doc-' || lpad((i / 7)::text, 7, '0') || '#chunk-' || (i % 7), 'doc-' || lpad((i / 7)::text, 7, '0'),
           'collection_' || (i % 3), 'chunk text number ' || i, 'semantic', 'text/plain', i % 3, random(), i % 7 <> 0,
           ARRAY['tag' || (i % 5)],
           (SELECT array_agg(random()::real) FROM generate_series(1, {int(dimension)}) WHERE i > 0)::vector,
           jsonb_build_object('source', 'bench')
    FROM generate_series(1, {int(rows)}) AS i"""


def _psql(url: str, sql: str) -> float:
    """Run ``sql`` with psql; its wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run(
        [
            str(_postgres_bin() / "psql"),
            url.replace("postgresql+psycopg://", "postgresql://"),
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def floor(engine: sa.Engine, url: str, dimension: int) -> float:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS embeddings_floor"))
        conn.execute(sa.text(pgvector_layout.create_table_sql("embeddings_floor", dimension)))
        columns = ", ".join(pgvector_layout.quote(c) for c in table_copies.carried_columns(conn, "embeddings_alpha"))
    seconds = _psql(url, f"INSERT INTO embeddings_floor ({columns}) SELECT {columns} FROM embeddings_alpha")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE embeddings_floor"))
    return seconds


def job(stack: Stack, name: str, target_env: str, target_ns: str, until: str = "verified") -> dict[str, float]:
    """Launch a job alpha → ``target_ns`` (in the database of ``target_env``); seconds to copied and (``until``)
    to verified."""
    documented: dict[str, Any] = {"kind": "pgvector", "schema": "documented", "database_url_env": URL_ENV}
    spec = parse_spec(
        {
            "name": name,
            "source": documented,
            "target": {**documented, "database_url_env": target_env},
            "namespaces": {"include": ["alpha"]},
            "routing": {"mode": "explicit", "map": {"alpha": target_ns}},
            "enrich": {"creator_fields": False, "migrated_from": False},
            "batch_size": 1000,
            "max_batches_in_flight": 16,
        }
    )
    settings = load_settings(database_url=stack.database_url, redis_url=stack.redis_url)
    db = jobs_database.Database(settings.database_url)
    started = time.perf_counter()
    job_id = launch.launch(db, Dispatcher(settings), launch.prepare(spec, open_retrying_store, stack.workdir))
    times: dict[str, float] = {}
    while until not in times:
        [run] = jobs_status.job_status(db, job_id).runs
        now = time.perf_counter() - started
        if run.state in (RunState.COPIED, RunState.VERIFYING, RunState.VERIFIED):
            times.setdefault("copied", now)
        if run.state == RunState.VERIFIED:
            times["verified"] = now
        elif run.state in (RunState.VERIFY_FAILED, RunState.LIST_FAILED) or now > DEADLINE_S:
            raise SystemExit(f"job {name} ended {run.state} after {now:.0f} s: {run.last_error}")
        time.sleep(0.05)
    db.dispose()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=2, help="floor and in-Postgres job, each this many times")
    parser.add_argument("--copy-workers", type=int, default=4, help="copy worker processes' concurrency")
    args = parser.parse_args(argv)

    stack = start_stack([])
    try:
        other_url = stack.database_url.rsplit("/", 1)[0] + "/bench_other"
        os.environ.update({URL_ENV: stack.database_url, OTHER_URL_ENV: other_url})
        admin = sa.create_engine(stack.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
            conn.execute(sa.text("CREATE DATABASE bench_other"))
        other = sa.create_engine(other_url, isolation_level="AUTOCOMMIT")
        with other.connect() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        engine = sa.create_engine(stack.database_url)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text(pgvector_layout.create_table_sql("embeddings_alpha", args.dimension)))
            conn.execute(sa.text(_fill_sql(args.rows, args.dimension)))
            conn.execute(sa.text("ANALYZE embeddings_alpha"))
        print(
            f"source: {args.rows} rows x {args.dimension} in embeddings_alpha "
            f"({time.perf_counter() - started:.1f} s to make)",
            file=sys.stderr,
        )
        stack.start_worker("list,verify", 4, name="control", NSMIGRATE_PGVECTOR_OTHER_URL=other_url)
        stack.start_worker("copy", args.copy_workers, name="copy", NSMIGRATE_PGVECTOR_OTHER_URL=other_url)
        wait_for_workers(stack.redis_url, 2)

        results: dict[str, list[float]] = {"floor_s": [], "in_postgres_copied_s": [], "in_postgres_verified_s": []}
        for n in range(args.rounds):
            results["floor_s"].append(floor(engine, stack.database_url, args.dimension))
            times = job(stack, f"bench-in-postgres-{n}", URL_ENV, f"beta{n}")
            results["in_postgres_copied_s"].append(times["copied"])
            results["in_postgres_verified_s"].append(times["verified"])
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE embeddings_beta{n}"))
        through = job(stack, "bench-through-workers", OTHER_URL_ENV, "alpha", until="copied")
        results["through_workers_copied_s"] = [through["copied"]]
        floor_s = min(results["floor_s"])
        summary = {
            "rows": args.rows,
            "dimension": args.dimension,
            "cores": os.cpu_count(),
            **{k: [round(v, 2) for v in vs] for k, vs in results.items()},
            "in_postgres_over_floor": [round(v / floor_s, 2) for v in results["in_postgres_copied_s"]],
            "through_workers_over_floor": round(through["copied"] / floor_s, 1),
            "verified_over_floor": [round(v / floor_s, 2) for v in results["in_postgres_verified_s"]],
        }
        print(json.dumps(summary, indent=2))
        engine.dispose()
        other.dispose()
        admin.dispose()
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
