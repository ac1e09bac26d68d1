"""Seed 004: a legacy pgvector ``embeddings`` table becomes per-namespace tables, goes to a Pinecone index and comes
back, each step verified.

A legacy ``embeddings`` table of seed 004's schema is filled with seed-shaped chunks (805 rows of dimension 384, every
documented column set). ``nsmigrate pgvector legacy`` moves it to ``embeddings_default`` inside Postgres (row counts and
id sets verified, the legacy table renamed to a backup); ``nsmigrate pgvector copy`` makes a second namespace table
from it; the shipped spec ``migrations/pgvector-to-pinecone.yaml`` copies both into a Pinecone index and
``migrations/pinecone-to-pgvector.yaml`` brings them back into ``roundtrip_*`` tables, on a real worker pool, each
job verified. The demo then compares every record of the round trip with the original, and runs a similarity search
on the new tables through their ivfflat index.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from rich.table import Table

from cli.console import console
from cli.demo.harness import DemoOptions, DemoStack, demo_stack
from migrations import catalogue
from orchestrator import pgschema
from orchestrator.records import Record
from orchestrator.spec import PgvectorStoreSpec
from orchestrator.verification import compare_record
from sandbox.pinecone_server import IndexSpec
from sandbox.seed import seed_chunks
from workers import pgnamespaces
from workers.stores.pgdocumented import DocumentedPgvectorStore

OUT, BACK = "pgvector-to-pinecone", "pinecone-to-pgvector"
DIMENSION = 384
ROWS = 805
SECOND = "archive"  # the namespace `copy` makes from the default one


def run(options: DemoOptions) -> int:
    specs = catalogue()
    console.print(f"[bold]nsmigrate demo pgvector[/]: jobs {OUT!r} and {BACK!r} from {specs[OUT].parent}")
    index = IndexSpec("pgvector-demo", dimension=DIMENSION, metric="cosine")
    with demo_stack([index], options) as demo:
        original = _store("embeddings")
        try:
            engine = original.engine()
            legacy = _load_legacy(engine)
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


def _load_legacy(engine: sa.Engine) -> list[Record]:
    records = [Record(id=i, values=v, metadata=m) for i, v, m in seed_chunks(ROWS, DIMENSION)]
    with engine.begin() as conn:
        conn.execute(sa.text(pgschema.create_table_sql("embeddings", DIMENSION)))
        pgnamespaces.upsert_records(conn, "embeddings", records)
    console.print(
        f"legacy table 'embeddings': {ROWS} seed-shaped chunks (dimension {DIMENSION}, "
        f"{len({r.metadata['collection_name'] for r in records})} collections, every documented column set)"
    )
    return records


def _legacy_and_copy(engine: sa.Engine) -> bool:
    legacy = pgnamespaces.migrate_legacy(engine, "embeddings", vector_index=pgschema.VectorIndex())
    console.print(
        f"`nsmigrate pgvector legacy`: {legacy.source_rows} rows → {legacy.target_table} ({legacy.target_rows} rows, "
        f"verified: {legacy.verified}); the legacy table is kept as {legacy.backup_table}; indexes: "
        f"{legacy.indexes.get('built')}"
    )
    copied = pgnamespaces.copy_namespace(engine, "embeddings", "", SECOND, vector_index=pgschema.VectorIndex())
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
                indexes = f"{found.vector_index or 'no ANN'} + {len(found.btree_columns)} b-tree"
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
    distance = "embedding <=> CAST(:v AS vector)"
    query = (
        f"SELECT chunk_id, collection_name, left(text, 30), round(({distance})::numeric, 4) "
        f"FROM embeddings_default ORDER BY {distance} LIMIT 3"
    )
    params: dict[str, Any] = {"v": pgnamespaces.vector_text(probe.values)}
    with engine.begin() as conn:
        # At 805 rows Postgres rightly prefers a scan; switched off here to show the ivfflat index answering.
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {query}"), params).scalars())
        rows = conn.execute(sa.text(query), params).all()
    table = Table("chunk_id", "collection", "text", "cosine distance", title=f"nearest to {probe.id!r}")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    used = next((line.strip() for line in plan.splitlines() if "Index Scan" in line), "a sequential scan")
    console.print(f"query plan (enable_seqscan off): {used}")
