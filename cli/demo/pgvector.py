"""Seed 004: a legacy pgvector ``embeddings`` table becomes per-namespace tables, goes to a Pinecone index and comes
back, each step verified.

The legacy ``embeddings`` table is made as the application makes it: its own DDL
(sandbox/application-table.sql), 300 seed-shaped chunks of dimension 3072 like the other
scenarios' data, every column filled and NULL where the DDL allows it. pgvector refuses the DDL's ivfflat index above
2,000 dimensions, so that table has no ANN index. ``nsmigrate pgvector legacy`` moves it to ``embeddings_default``
inside Postgres (row counts, id sets and
contents verified, the legacy table renamed to a backup) and builds its documented
indexes, the vector one as HNSW over ``halfvec(3072)``; ``nsmigrate pgvector copy`` makes a second namespace table
from it; the shipped spec ``migrations/pgvector-to-pinecone.yaml`` copies both into a Pinecone index and
``migrations/pinecone-to-pgvector.yaml`` brings them back into ``roundtrip_*`` tables, on a real worker pool, each
job verified. The demo then compares every record of the round trip with the original, and runs a similarity search
on the new table that its HNSW index answers.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, demo_stack
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator import pgvector_layout
from nsmigrate.orchestrator.limits import PGVECTOR_INDEX_MAX_DIMENSIONS
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec
from nsmigrate.orchestrator.verification.comparisons import compare_record
from nsmigrate.workers.stores.pgvector import namespaces as pgnamespaces
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import application_rows, create_application_table

OUT, BACK = "pgvector-to-pinecone", "pinecone-to-pgvector"
DIMENSION = 3072  # the seed data's: above pgvector's 2,000 for vector indexes
#: Rows of the legacy table: two batches per namespace at the shipped specs' batch_size of 200. Every row is copied
#: four times and verified three times on the way (two namespaces out and back) and indexed by HNSW at 3072
#: dimensions in four tables: a few hundred show the whole round trip, and more rows only cost more.
ROWS = 300
SECOND = "archive"  # the namespace `copy` makes from the default one


def run(options: DemoOptions) -> int:
    specs = catalogue()
    console.print(f"[bold]nsmigrate demo pgvector[/]: jobs {OUT!r} and {BACK!r} from {specs[OUT].parent}")
    index = IndexSpec("pgvector-demo", dimension=DIMENSION, metric="cosine")
    with demo_stack([index], options) as demo:
        original = _store("embeddings")
        try:
            engine = original.engine()
            # The records the legacy table holds, as nsmigrate reads them: what the round trip must give back.
            legacy = original.fetch("", _load_legacy(engine))
            steps = [_legacy_and_copy(engine)]
            for name in (OUT, BACK):
                outcome = demo.run_job(demo.write_spec(specs[name]))
                steps.append(outcome.code == 0)
                console.print(
                    f"job {name!r}: {'verified' if outcome.code == 0 else 'FAILED'} in {outcome.elapsed_s:.1f} s"
                )
            _print_tables(engine, demo)
            steps.append(_same_after_round_trip(legacy))
            _similarity_search(engine, legacy[0])
        finally:
            original.close()
        return 0 if all(steps) else 1


def _store(prefix: str) -> DocumentedPgvectorStore:
    spec = PgvectorStoreSpec.model_validate({"schema": "documented", "table": prefix})
    return DocumentedPgvectorStore(spec)


def _load_legacy(engine: sa.Engine) -> list[str]:
    """The application's table ``embeddings`` with its DDL and rows; the ids of the rows."""
    rows = application_rows(ROWS, DIMENSION)
    with engine.begin() as conn:
        create_application_table(conn, "embeddings", DIMENSION, rows)
        indexes = pgnamespaces.indexes_of(conn, "embeddings")
    nulls = sum(v is None for row in rows for v in row.values())
    console.print(
        f"legacy table 'embeddings' made with the application's DDL: {ROWS} seed-shaped chunks (dimension "
        f"{DIMENSION}, {len({r['collection_name'] for r in rows})} collections, every column filled, {nulls} NULLs "
        f"where the DDL allows them); its indexes: {', '.join(indexes)} (pgvector refuses the DDL's ivfflat index "
        f"above {PGVECTOR_INDEX_MAX_DIMENSIONS} dimensions)"
    )
    return [row["chunk_id"] for row in rows]


def _legacy_and_copy(engine: sa.Engine) -> bool:
    legacy = table_copies.migrate_legacy(engine, "embeddings", vector_index=pgvector_layout.VectorIndex())
    console.print(
        f"`nsmigrate pgvector legacy --yes`: {legacy.source_rows} rows → {legacy.target_table} ({legacy.target_rows} "
        f"rows, verified: {legacy.verified}); the legacy table is kept as {legacy.backup_table}; indexes built: "
        f"{', '.join(legacy.indexes.get('built', []))}; similarity search served by "
        f"{legacy.indexes.get('vector_index')}"
    )
    copied = table_copies.copy_namespace(engine, "embeddings", "", SECOND, vector_index=pgvector_layout.VectorIndex())
    console.print(
        f"`nsmigrate pgvector copy default {SECOND}`: {copied.copied} rows inside Postgres → {copied.target_table} "
        f"(verified: {copied.verified})"
    )
    return legacy.verified and copied.verified


def _print_tables(engine: sa.Engine, demo: DemoStack) -> None:
    table = Table(title="where everything landed")
    for column in ("table", "rows", "indexes", "Pinecone ns", "vectors"):
        table.add_column(column)
    counts = {ns: s.vector_count for ns, s in demo.index("pgvector-demo").describe_index_stats().namespaces.items()}
    with engine.connect() as conn:
        for prefix in ("embeddings", "roundtrip"):
            for ns in pgnamespaces.discover(conn, prefix):
                found = pgnamespaces.stats(conn, prefix, ns)
                pinecone_ns = ns or "__default__"
                shown = (pinecone_ns, str(counts.get(pinecone_ns, 0))) if prefix == "embeddings" else ("", "")
                indexes = f"{found.vector_index or 'no ANN index'} + {len(found.btree_columns)} b-tree"
                table.add_row(found.table, str(found.rows), indexes, *shown)
        backups = [t for t in conn.execute(sa.text("SELECT tablename FROM pg_tables")).scalars() if "_backup_" in t]
    console.print(table)
    console.print(f"backup tables (never dropped): {', '.join(backups)}")


def _same_after_round_trip(original: list[Record]) -> bool:
    back = _store("roundtrip")
    try:
        returned = {r.id: r for r in back.fetch("", [r.id for r in original])}
    finally:
        back.close()
    problems = [
        reason
        for r in original
        if (reason := compare_record(r, returned.get(r.id), r.metadata, tolerance=1e-6)) is not None
    ]
    console.print(
        f"round trip embeddings_default → Pinecone → roundtrip_default: {len(returned)} of {len(original)} records "
        f"back, {len(problems)} differing (ids, values within float32, metadata)"
        + (f": {problems[:3]}" if problems else "")
    )
    return not problems and len(returned) == len(original)


def _similarity_search(engine: sa.Engine, probe: Record) -> None:
    distance = pgvector_layout.distance_sql(DIMENSION)
    query = (
        f"SELECT chunk_id, collection_name, left(text, 30), round(({distance})::numeric, 4) "
        f"FROM embeddings_default ORDER BY {distance} LIMIT 3"
    )
    params: dict[str, Any] = {"v": pgnamespaces.vector_text(probe.values)}
    with engine.begin() as conn:
        # At a few hundred rows Postgres rightly prefers a scan; switched off here to show the HNSW index answering.
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {query}"), params).scalars())
        rows = conn.execute(sa.text(query), params).all()
    table = Table("chunk_id", "collection", "text", "cosine distance", title=f"nearest to {probe.id!r}")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    used = next((line.strip() for line in plan.splitlines() if "Index Scan" in line), "a sequential scan")
    console.print(f"query plan (enable_seqscan off): {used}")
