"""Benchmark: one namespace table written by 1, 2 or 4 binary COPY streams at once between two databases of one
Postgres, without the fleet around them: what a second stream into the same table buys on this machine, and what the
streams wait on.

The legacy ``embeddings`` table of ``bench.pgvector_vs_rival`` (every column filled, NULLs where the DDL allows) in
database ``bench_source``; per round, for each stream count (their order rotated from round to round), a new
namespace table in ``bench_target`` (its keys only, as the fleet and the rival make it) and the table's ids cut into
that many runs, each copied by a thread of this process on its own pair of connections with the fleet's own batch
copy (``table_copies.copy_rows``: ``COPY (SELECT … WHERE chunk_id = ANY(…))`` out, binary ``COPY`` in), then
committed. Prints per stream count the median wall, the CPU seconds of the target's backends and of the source's,
and what ``pg_stat_activity`` showed the target's busy backends doing (sampled every 5 ms: ``CPU`` or their wait
event)::

    .venv/bin/python -m bench.pgvector_streams                      # 20,000 × 1,536; 1, 2, 4 streams; 5 rounds
    .venv/bin/python -m bench.pgvector_streams --rows 805 --dimension 3072 --streams 1,2

Figures to read, never assertions.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import threading
import time
from collections.abc import Sequence

import psutil
import sqlalchemy as sa

from bench.pgvector_vs_rival import fill_sql
from nsmigrate.orchestrator.pgvector_layout import ID_COLUMN, create_table_sql
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate_sandbox.seed import application_ddl
from nsmigrate_sandbox.services import PostgresServer


def backend_cpu(conn: sa.Connection) -> tuple[int, float]:
    """(pid, CPU seconds so far) of the connection's backend."""
    pid = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
    times = psutil.Process(pid).cpu_times()
    return pid, times.user + times.system


class Waits:
    """What the target database's active backends do, sampled every 5 ms while it runs."""

    def __init__(self, engine: sa.Engine) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(engine,), daemon=True)
        self._thread.start()

    def _sample(self, engine: sa.Engine) -> None:
        sql = sa.text(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
            "WHERE datname = 'bench_target' AND state = 'active' AND pid <> pg_backend_pid()"
        )
        with engine.connect() as conn:
            while not self._stop.wait(0.005):
                self.counts.update(conn.execute(sql).scalars())
                conn.rollback()  # a new snapshot of the activity each time

    def stop(self) -> collections.Counter[str]:
        self._stop.set()
        self._thread.join()
        return self.counts


def copy_in_streams(
    source: sa.Engine, target: sa.Engine, table: str, runs: Sequence[Sequence[str]]
) -> tuple[float, float, float]:
    """Each of ``runs`` (of ids) copied into ``table`` by a thread of its own; returns (wall s, target backends' CPU
    s, source backends' CPU s)."""
    cpu: list[tuple[float, float]] = []
    with source.connect() as conn:
        columns = [c for c in pgnamespaces.table_columns(conn, "embeddings") if not c.serial]

    def stream(run: Sequence[str]) -> None:
        with source.connect() as reading, target.connect() as writing:
            (_, target_before), (_, source_before) = backend_cpu(writing), backend_cpu(reading)
            table_copies.copy_rows(reading, "embeddings", columns, run, writing, table, {})
            writing.commit()
            cpu.append((backend_cpu(writing)[1] - target_before, backend_cpu(reading)[1] - source_before))

    started = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sum(t for t, _ in cpu), sum(s for _, s in cpu)


Figures = dict[int, list[tuple[float, float, float]]]
Samples = dict[int, collections.Counter[str]]


def measure(url: str, rows: int, dimension: int, counts: list[int], rounds: int) -> tuple[Figures, Samples]:
    """(per stream count: each round's wall, target CPU and source CPU; per stream count: the target's samples) of
    the server at ``url``."""
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for database in ("bench_source", "bench_target"):
            conn.execute(sa.text(f"CREATE DATABASE {database}"))
    admin.dispose()
    source, target = (sa.create_engine(f"{url.rsplit('/', 1)[0]}/{d}") for d in ("bench_source", "bench_target"))
    for engine in (source, target):
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    with source.begin() as conn:
        conn.exec_driver_sql(application_ddl("embeddings", dimension))
        conn.execute(sa.text(fill_sql(rows, dimension)))
    with source.begin() as conn:
        conn.execute(sa.text("ANALYZE embeddings"))
        ids = list(conn.execute(sa.text(f"SELECT {ID_COLUMN} FROM embeddings ORDER BY {ID_COLUMN}")).scalars())
    figures: Figures = {n: [] for n in counts}
    waits: Samples = {n: collections.Counter() for n in counts}
    for round_ in range(rounds):
        for n in counts[round_ % len(counts) :] + counts[: round_ % len(counts)]:
            table = f"embeddings_streams_{n}_{round_}"
            with target.begin() as conn:
                conn.execute(sa.text(create_table_sql(table, dimension)))
            size = -(-len(ids) // n)
            sampler = Waits(target)
            runs = [ids[i : i + size] for i in range(0, len(ids), size)]
            figures[n].append(copy_in_streams(source, target, table, runs))
            waits[n] += sampler.stop()
            with target.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE {table}"))
    for engine in (source, target):
        engine.dispose()
    return figures, waits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dimension", type=int, default=1536)
    parser.add_argument("--streams", default="1,2,4", help="comma-separated stream counts")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.streams.split(",")]
    server = PostgresServer().start()
    try:
        figures, waits = measure(server.url, args.rows, args.dimension, counts, args.rounds)
    finally:
        server.stop()
    print(f"{args.rows} × {args.dimension}, {args.rounds} rounds; medians (walls of the rounds)")
    for n in counts:
        wall, target_cpu, source_cpu = (statistics.median(f[i] for f in figures[n]) for i in range(3))
        total = sum(waits[n].values()) or 1
        seen = ", ".join(f"{what} {100 * k / total:.0f}%" for what, k in waits[n].most_common(4))
        walls = ", ".join(f"{f[0]:.2f}" for f in figures[n])
        print(f"  {n} stream(s): {wall:.2f} s ({walls}); CPU s target {target_cpu:.2f}, source {source_cpu:.2f}")
        print(f"    target backends: {seen}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
