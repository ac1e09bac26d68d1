"""The strongest single-process rival for a pgvector → pgvector copy between two databases: what a capable user writes
instead of a fleet to move the legacy ``embeddings`` table (or any ``embeddings_{namespace}``) into a namespace table
of another database.

One process, one connection to each database, psycopg 3: the target table made with the application's layout
(``pgvector_layout.create_table_sql``, its keys only: indexes come after a bulk load), then every row streamed
``COPY (SELECT …) TO STDOUT (FORMAT BINARY)`` straight into ``COPY … FROM STDIN (FORMAT BINARY)``: no row is
parsed, printed or sent in a round trip of its own, and the server reads each vector as its float32 bytes. Every
column but the source's row number (``id``: the target numbers its own rows, as the fleet's copy does) is carried.
No resume, no verification, no job table.

    python -m bench.pgvector_rival SOURCE_URL TARGET_URL [--source-table embeddings] [--target-table embeddings_default]

Prints one JSON line: rows, and ``last_write`` (epoch seconds of the commit, the end of its user clock).
"""

from __future__ import annotations

import argparse
import json
import time

import psycopg

from nsmigrate.orchestrator.pgvector_layout import create_table_sql, quote


def copy_table(source_url: str, target_url: str, source_table: str, target_table: str) -> int:
    """Copy every row of ``source_table`` into a new ``target_table`` of the other database; returns the rows."""
    with psycopg.connect(source_url) as source, psycopg.connect(target_url) as target:
        described = source.execute(
            "SELECT attname, atttypmod, attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE "
            "'nextval(%%', false) FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND "
            "d.adnum = a.attnum WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (quote(source_table),),
        ).fetchall()
        columns = ", ".join(quote(name) for name, _, serial in described if not serial)
        dimension = next(mod for name, mod, _ in described if name == "embedding")
        target.execute(create_table_sql(target_table, dimension).replace("%", "%%"))
        with source.cursor() as reading, target.cursor() as writing:
            with (
                reading.copy(f"COPY (SELECT {columns} FROM {quote(source_table)}) TO STDOUT (FORMAT BINARY)") as out,
                writing.copy(f"COPY {quote(target_table)} ({columns}) FROM STDIN (FORMAT BINARY)") as into,
            ):
                for block in out:
                    into.write(block)
            rows = writing.rowcount
        target.commit()
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_url", help="libpq URL of the source database")
    parser.add_argument("target_url", help="libpq URL of the target database")
    parser.add_argument("--source-table", default="embeddings")
    parser.add_argument("--target-table", default="embeddings_default")
    args = parser.parse_args(argv)
    rows = copy_table(args.source_url, args.target_url, args.source_table, args.target_table)
    print(json.dumps({"rows": rows, "last_write": time.time()}))  # right after the commit
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
