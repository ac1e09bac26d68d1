"""A test's database given back is emptied and kept for the next test of the same template, instead of dropped.

``CREATE DATABASE … STRATEGY FILE_COPY`` copies ~7.8 MB of catalogue files and checkpoints: ~135 ms of the server's
CPU, for each of the ~460 tests a run gives a database of its own. A database a test is done with is emptied here
instead: every other session on it ended, what the test created dropped, the template's tables truncated (their
sequences restarted), and kept only when its **shape** (``shape``: schemas, relations, columns, defaults,
constraints, triggers, types, functions, extensions, sequences' state, the database's settings and options) is then
exactly its template's; anything else is dropped as before. It is renamed twice (``ALTER DATABASE … RENAME``, a
catalogue update): to a spare's name while it waits, then to the next test's own, so no two tests ever see one URL
(a cache kept by URL in the test process cannot carry over).
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa

#: Schemas of the system, never a test's.
_SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"

#: Objects a test may create, that emptying drops: (kind, the name to DROP, identity) not made by an extension.
_CREATED = f"""
SELECT 'schema', quote_ident(n.nspname), n.nspname FROM pg_namespace n
 WHERE n.nspname NOT IN {_SYSTEM} AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
       WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       c.oid::regclass::text, c.oid::regclass::text || ':' || c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN {_SYSTEM} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype = 'e')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, t.oid::regtype::text,
       t.oid::regtype::text || ':' || t.typtype::text
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname NOT IN {_SYSTEM} AND t.typtype IN ('e', 'd', 'c', 'r', 'm') AND (t.typtype <> 'c' OR
       (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                   AND d.deptype = 'e')
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       p.oid::regprocedure::text, p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN {_SYSTEM}
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                   AND d.deptype = 'e')
"""

#: Everything else a test could change of a database, as text, one row each.
_DETAILS = f"""
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || ' ' || a.attidentity::text || a.attgenerated::text || coalesce(a.attcollation::regcollation::text, '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE n.nspname NOT IN {_SYSTEM} AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index ' || i.indexrelid::regclass || ' ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN {_SYSTEM}
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN {_SYSTEM})
UNION ALL
SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'policy ' || polrelid::regclass || ' ' || polname FROM pg_policy
UNION ALL
SELECT 'rule ' || ev_class::regclass || ' ' || rulename FROM pg_rewrite
 WHERE rulename <> '_RETURN' AND ev_class >= 16384
UNION ALL
SELECT 'rls ' || c.oid::regclass || ' ' || c.relrowsecurity::text || c.relforcerowsecurity::text
       || c.relpersistence::text
       || coalesce(array_to_string(c.reloptions, ','), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN {_SYSTEM}
UNION ALL
SELECT 'extension ' || e.extname || ' ' || e.extversion || ' ' || e.extnamespace::regnamespace FROM pg_extension e
UNION ALL
SELECT 'event trigger ' || evtname FROM pg_event_trigger
UNION ALL
SELECT 'publication ' || pubname FROM pg_publication
UNION ALL
SELECT 'large objects ' || count(*)::text FROM pg_largeobject_metadata
UNION ALL
SELECT 'sequence ' || schemaname || '.' || sequencename || ' ' || coalesce(last_value::text, 'unused')
  FROM pg_sequences
UNION ALL
SELECT 'settings ' || coalesce(setrole::regrole::text, '') || ' ' || array_to_string(setconfig, ',')
  FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
UNION ALL
SELECT 'database ' || datallowconn::text || ' ' || datconnlimit::text || ' ' || datistemplate::text
       || ' ' || datdba::regrole::text
       || ' ' || coalesce(array_to_string(datacl, ','), '')
  FROM pg_database WHERE datname = current_database()
UNION ALL
SELECT 'grants ' || c.oid::regclass || ' ' || coalesce(array_to_string(c.relacl, ','), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN {_SYSTEM}
UNION ALL
SELECT 'schema grants ' || nspname || ' ' || nspowner::regrole || ' ' || coalesce(array_to_string(nspacl, ','), '')
  FROM pg_namespace WHERE nspname NOT IN {_SYSTEM}
"""


def shape(conn: sa.Connection) -> frozenset[str]:
    """What a database is made of, beyond the system's catalogue: equal for two databases a test cannot tell apart
    by their definitions (rows are not in it: an emptied database has none in its tables)."""
    created = {f"{kind} {identity}" for kind, _, identity in conn.execute(sa.text(_CREATED))}
    return frozenset(created | {row for (row,) in conn.execute(sa.text(_DETAILS))})


def empty(url: str, template_shape: frozenset[str]) -> bool:
    """Bring the database at ``url`` back to its template's ``template_shape``, with no rows: drop what is not the
    template's, truncate the template's tables and restart their sequences. True when it then has that shape; False
    (the caller drops it) when it does not or cannot be emptied. No other session may be on it."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with contextlib.closing(engine.connect()) as conn, conn.begin():
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            extra = [
                (kind, name)
                for kind, name, identity in conn.execute(sa.text(_CREATED))
                if f"{kind} {identity}" not in template_shape
            ]
            for kind, name in sorted(extra, key=lambda e: e[0] != "schema"):  # a schema first: its objects go too
                conn.execute(sa.text(f"DROP {kind.upper()} IF EXISTS {name} CASCADE"))
            tables = [
                name
                for kind, name, identity in conn.execute(sa.text(_CREATED))
                if kind == "table" and identity.endswith((":r", ":p"))
            ]
            if tables:
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            return shape(conn) == template_shape
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()
