"""The application's pgvector layout (its DDL is sandbox/application-table.sql), as
pure data and functions: the table of a namespace, its columns, its four named indexes and the name rules; the
mapping Pinecone record ↔ table row is ``orchestrator.pgvector_rows``. The I/O is in
``workers.stores.pgvector.namespaces`` and ``workers.stores.pgvector.documented``; ``migrations/README.md`` ("pgvector
tables as seed 004 documents them", a heading there) describes it for users.

- One table per namespace, ``{prefix}_{namespace}`` (prefix ``embeddings``); the default namespace is
  ``{prefix}_default``, and a legacy single table ``{prefix}`` (no namespace column) *is* the default namespace
  until ``nsmigrate pgvector legacy`` moved it there.
- Namespace names: lowercase letters, digits and ``_``, at most 50 characters, none of ``backup``, ``temp``,
  ``tmp``, ``system``, ``admin`` (nor starting with ``backup_``: backups are ``{prefix}_backup_…`` tables).
- A backup is ``{prefix}_backup_{stamp}_{namespace}``, its name cut to Postgres's 63 bytes (the namespace's start and a
  hash, ``backup_table``) when longer: the namespace a cut name held is known only from a COMMENT recording it
  (``backup_comment_sql``), never read from the name (``backup_namespace``).
- A record maps to a row of the table's **own columns, as Postgres describes them** (``pgvector_rows``, reflected by
  ``workers.stores.pgvector.namespaces.table_columns``; no column list is assumed): id ↔ ``chunk_id``, values ↔
  ``embedding``, a metadata key named like a column ↔ that column (typed as the column is), every other key ↔ the
  ``metadata`` JSONB. A column that is NULL is left out of the record, and a column a record does not mention is NULL
  (its default where it is NOT NULL); a NULL ``metadata`` is ``pgvector_rows.NULL_METADATA_KEY``. A NOT NULL column
  without a default (``document_id``, ``collection_name``, ``text``, ``strategy``, ``content_type``) is required: a
  record without it is refused by id, never filled in. So a row that goes to Pinecone and back comes back equal,
  column for column (the ``id`` row number excepted: each table numbers its own rows).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import (
    PG_IDENTIFIER_MAX_BYTES,
    PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS,
    PGVECTOR_INDEX_MAX_DIMENSIONS,
)

DEFAULT_NAME = "default"  # the default namespace "" lives in {prefix}_default
#: Longest namespace a table is made for: with the prefix it stays within Postgres's 63-byte identifiers.
NAME_MAX = 50
RESERVED = ("backup", "temp", "tmp", "system", "admin")
BACKUP_WORD = "backup"
#: A backup table's COMMENT naming the namespace it held, whole: ``BACKUP_COMMENT`` + the namespace (``default`` for
#: the default one). ``backup_comment_sql`` writes it, ``backup_namespace`` reads it.
BACKUP_COMMENT = "nsmigrate namespace: "
#: The layout's ``WITH (lists = 100)``: the documented ivfflat size, whatever the rows.
DEFAULT_LISTS = 100
ID_COLUMN = "chunk_id"
EMBEDDING_COLUMN = "embedding"
METADATA_COLUMN = "metadata"
VECTOR_INDEX = "vector_idx"
#: The layout's b-tree indexes: ``{table}_{suffix}`` on one column each.
BTREE_INDEXES = (("collection_idx", "collection_name"), ("document_idx", "document_id"), ("strategy_idx", "strategy"))
BTREE_COLUMNS = tuple(column for _, column in BTREE_INDEXES)

_NAME = re.compile(r"[a-z0-9_]+")  # always fullmatch

ColumnKind = Literal["text", "integer", "float", "boolean", "text[]", "serial", "vector", "jsonb", "timestamp"]
VectorMethod = Literal["ivfflat", "hnsw", "none"]


@dataclass(frozen=True)
class Column:
    """One column as the application's DDL declares it (``sql_type`` and the constraints spelled as there)."""

    name: str
    kind: ColumnKind
    sql_type: str
    not_null: bool = False
    default: str | None = None
    unique: bool = False
    primary_key: bool = False

    @property
    def required(self) -> bool:
        """A record must carry it: NOT NULL with no default to fall back on."""
        return self.not_null and self.default is None

    @property
    def max_length(self) -> int | None:
        """The ``n`` of ``VARCHAR(n)``."""
        found = re.fullmatch(r"VARCHAR\((\d+)\)", self.sql_type)
        return int(found.group(1)) if found else None

    def ddl(self, dimension: int) -> str:
        sql_type = f"VECTOR({int(dimension)})" if self.kind == "vector" else self.sql_type
        constraints = [
            *(["PRIMARY KEY"] if self.primary_key else []),
            *(["UNIQUE"] if self.unique else []),
            *(["NOT NULL"] if self.not_null else []),
            *([f"DEFAULT {self.default}"] if self.default else []),
        ]
        return " ".join([quote(self.name), sql_type, *constraints])


#: The application's table of a namespace, column by column in table order, exactly as its DDL declares it
#: (sandbox/application-table.sql; tests/integration/test_pgvector_layout.py holds the two
#: equal in Postgres' catalogue).
LAYOUT: tuple[Column, ...] = (
    Column("id", "serial", "SERIAL", primary_key=True),
    Column(ID_COLUMN, "text", "VARCHAR(512)", unique=True, not_null=True),
    Column("document_id", "text", "VARCHAR(512)", not_null=True),
    Column("collection_name", "text", "VARCHAR(255)", not_null=True),
    Column("text", "text", "TEXT", not_null=True),
    Column(EMBEDDING_COLUMN, "vector", "VECTOR", not_null=True),
    Column("strategy", "text", "VARCHAR(50)", not_null=True),
    Column("content_type", "text", "VARCHAR(100)", not_null=True),
    Column("path", "text", "VARCHAR(4096)"),
    Column("parent_chunk_id", "text", "VARCHAR(512)"),
    Column("depth_level", "integer", "INTEGER", default="0"),
    Column("hierarchy_level", "integer", "INTEGER", default="0"),
    Column("semantic_density", "float", "FLOAT", default="0.0"),
    Column("confidence", "float", "FLOAT", default="1.0"),
    Column("chunk_size", "integer", "INTEGER"),
    Column("token_count", "integer", "INTEGER"),
    Column("key_count", "integer", "INTEGER"),
    Column("contains_arrays", "boolean", "BOOLEAN", default="FALSE"),
    Column("is_leaf", "boolean", "BOOLEAN", default="FALSE"),
    Column("domain_tags", "text[]", "TEXT[]"),
    Column("original_keys", "text[]", "TEXT[]"),
    Column(METADATA_COLUMN, "jsonb", "JSONB"),
    Column("created_at", "timestamp", "TIMESTAMP", default="CURRENT_TIMESTAMP"),
    Column("updated_at", "timestamp", "TIMESTAMP", default="CURRENT_TIMESTAMP"),
)
_NOT_METADATA_KEYS = ("id", ID_COLUMN, EMBEDDING_COLUMN, METADATA_COLUMN, "created_at", "updated_at")
#: The columns a record's metadata keys map to, in table order.
COLUMNS: tuple[Column, ...] = tuple(c for c in LAYOUT if c.name not in _NOT_METADATA_KEYS)
COLUMN_BY_NAME = {c.name: c for c in COLUMNS}
#: The columns that make a table a namespace table (an id, a vector and the required metadata): what ``pgvector
#: drop`` checks before it drops anything.
NAMESPACE_TABLE_COLUMNS = (ID_COLUMN, EMBEDDING_COLUMN, *(c.name for c in COLUMNS if c.required))


class MappingError(PlanError):
    """A record that cannot become a row of the documented schema (a required key missing, a value of the wrong
    type); the message names the record and the key."""


def quote(name: str) -> str:
    """A double-quoted SQL identifier: every identifier nsmigrate writes into SQL goes through here."""
    return '"' + name.replace('"', '""') + '"'


# --- names --------------------------------------------------------------------------------------------------------


def namespace_problem(namespace: str) -> str | None:
    """Why ``namespace`` cannot be a namespace of the documented layout, or None ("" is the default namespace)."""
    if namespace == "":
        return None
    if len(namespace) > NAME_MAX:
        return f"namespace {namespace[:60]!r} has {len(namespace)} characters; at most {NAME_MAX} are allowed"
    if not _NAME.fullmatch(namespace):
        return f"namespace {namespace[:60]!r} may hold only lowercase letters, digits and '_'"
    if namespace in RESERVED or namespace.startswith(f"{BACKUP_WORD}_"):
        return f"namespace {namespace!r} is reserved (not {', '.join(RESERVED)}, nor backup_…)"
    return None


def check_namespace(namespace: str) -> None:
    """Raise ``PlanError`` saying why ``namespace`` breaks the name rules (nothing is changed)."""
    problem = namespace_problem(namespace)
    if problem:
        raise PlanError(
            problem,
            hint="use lowercase letters, digits and '_' (≤ 50 characters), e.g. docs_2024; map other names with "
            "routing.mode explicit",
            namespace=namespace,
        )


def check_target_names(namespaces: Iterable[str]) -> None:
    """The plan's refusal of target namespaces a documented pgvector store cannot hold, all of them in one error."""
    problems = [p for ns in namespaces if (p := namespace_problem(ns))]
    if problems:
        raise PlanError(
            "target namespace(s) that the application's per-namespace tables cannot hold:\n  " + "\n  ".join(problems),
            hint="map them to names of lowercase letters, digits and '_' (≤ 50 characters) with routing.mode "
            "explicit; nothing was written",
        )


def check_distinct_tables(prefix: str, namespaces: Iterable[str]) -> None:
    """Refuse (``PlanError``) target namespaces that would share one table, naming both: ``""`` and ``default`` are
    both ``{prefix}_default``, and Postgres cuts every name to its first 63 characters, so two long names that differ
    only after that are one table. Two namespaces in one table would overwrite each other's rows."""
    first: dict[str, str] = {}
    clashes = []
    for namespace in namespaces:
        table = table_of(prefix, namespace)[:PG_IDENTIFIER_MAX_BYTES]
        other = first.setdefault(table, namespace)
        if other != namespace:
            clashes.append(f"{_shown(other)} and {_shown(namespace)} would both be the table {table}")
    if clashes:
        raise PlanError(
            "target namespaces that map to one pgvector table:\n  " + "\n  ".join(clashes),
            hint="route one of each pair to another name (routing.mode explicit) or leave it out "
            "(namespaces.exclude); nothing was written",
        )


def _shown(namespace: str) -> str:
    return "'' (the default namespace)" if namespace == "" else repr(namespace)


def table_of(prefix: str, namespace: str) -> str:
    """The table of ``namespace`` (``""`` and ``default`` → ``{prefix}_default``); raises ``PlanError`` for a name
    the rules refuse."""
    check_namespace(namespace)
    return f"{prefix}_{namespace or DEFAULT_NAME}"


def namespace_of(prefix: str, table: str) -> str | None:
    """The namespace a table holds (``""`` for ``{prefix}_default``), or None when it is not a namespace table
    (backups, other tables, names the rules refuse)."""
    if not table.startswith(f"{prefix}_"):
        return None
    name = table[len(prefix) + 1 :]
    if name == DEFAULT_NAME:
        return ""
    return None if namespace_problem(name) else name


def backup_table(prefix: str, namespace: str | None, stamp: str) -> str:
    """``{prefix}_backup_{stamp}`` (the legacy table) or ``{prefix}_backup_{stamp}_{namespace}`` for a namespace's
    table; a name too long for Postgres keeps the start of the namespace and a hash of all of it."""
    base = f"{prefix}_{BACKUP_WORD}_{stamp}"
    if namespace is None:
        return base
    name = f"{base}_{namespace or DEFAULT_NAME}"
    if len(name) <= PG_IDENTIFIER_MAX_BYTES:
        return name
    digest = hashlib.sha1(namespace.encode()).hexdigest()[:8]
    room = PG_IDENTIFIER_MAX_BYTES - len(base) - 2 - len(digest)
    return f"{base}_{namespace[: max(room, 1)]}_{digest}"


def backup_comment_sql(backup: str, namespace: str) -> str:
    """``COMMENT ON TABLE`` recording, whole, the namespace a backup table held (``BACKUP_COMMENT``; Postgres keeps a
    comment across renames): its name may keep only the start of it, and ``backup_namespace`` never reads a namespace
    from a cut name. Also what an operator runs to name the namespace of a backup made without one."""
    check_namespace(namespace)  # lowercase letters, digits and '_': nothing to escape inside the quotes
    return f"COMMENT ON TABLE {quote(backup)} IS '{BACKUP_COMMENT}{namespace or DEFAULT_NAME}'"


def _backup_parts(prefix: str, table: str) -> tuple[str, str | None] | None:
    """(its stamp, what follows the stamp) of a ``{prefix}_backup_{stamp}[_…]`` name, or None for another name."""
    found = re.fullmatch(rf"{re.escape(prefix)}_{BACKUP_WORD}_(\d+)(?:_(.+))?", table)
    return None if found is None else (found.group(1), found.group(2))


def is_backup_name(prefix: str, table: str) -> bool:
    """Whether ``table`` is named as a backup of ``prefix``'s tables: ``{prefix}_backup_{stamp}[_…]``."""
    return _backup_parts(prefix, table) is not None


def _no_room(prefix: str, stamp: str) -> bool:
    """Whether ``backup_table``'s cut (a character of the namespace, ``_``, 8 hex digits) does not fit after the stamp:
    such a name was cut by Postgres itself (renamed so before such names were refused)."""
    return len(f"{prefix}_{BACKUP_WORD}_{stamp}_x_00000000".encode()) > PG_IDENTIFIER_MAX_BYTES


def _cut(prefix: str, stamp: str, tail: str | None, table: str) -> bool:
    """Whether a backup's name may keep only the start of its namespace: 63 bytes long, and ``backup_table``'s cut
    (the start, ``_`` and 8 hex digits of a hash) or one Postgres made (``_no_room``)."""
    if len(table.encode()) < PG_IDENTIFIER_MAX_BYTES:
        return False
    return _no_room(prefix, stamp) or (tail is not None and re.fullmatch(r".+_[0-9a-f]{8}", tail) is not None)


def backup_of(prefix: str, table: str, namespace: str) -> bool:
    """Whether ``table`` is a name a backup of ``namespace``'s table can have: the one ``backup_table`` gives it at
    the stamp in ``table``, as Postgres keeps it (its first 63 bytes). A consistency check, never a reading: two
    namespaces with one start and one 8-digit hash give one name."""
    parts = _backup_parts(prefix, table)
    if parts is None:
        return False
    return backup_table(prefix, namespace, parts[0]).encode()[:PG_IDENTIFIER_MAX_BYTES] == table.encode()


def backup_start(prefix: str, table: str) -> str:
    """What a backup's name keeps of the start of its namespace (all of it when the name was not cut; ``""`` for the
    legacy table's, or for a name cut before any of it)."""
    parts = _backup_parts(prefix, table)
    if parts is None:
        return ""
    stamp, tail = parts
    if not _cut(prefix, stamp, tail, table):
        return tail or ""
    if _no_room(prefix, stamp):
        return (tail or "")[:1]  # backup_table kept one character, then Postgres cut the rest
    return (tail or "")[:-9]


def backup_namespace(prefix: str, table: str, comment: str | None = None) -> str | None:
    """The namespace a backup table held (``""`` for the default one and for the legacy table's), or None when it
    cannot be known. ``comment``: the table's COMMENT, which names it whole when it is ``BACKUP_COMMENT`` followed by
    a namespace whose backup can have this name (``backup_of``; a record that does not fit the name is not taken).
    Without such a record, a name cut to Postgres's 63 bytes (``backup_table`` keeps the namespace's start and a hash
    of it) gives None: its start parses as other names (``creator_alice_smith_t_d6561b01``), never read as one."""
    parts = _backup_parts(prefix, table)
    if parts is None:
        return None
    stamp, tail = parts
    recorded = comment.removeprefix(BACKUP_COMMENT) if comment and comment.startswith(BACKUP_COMMENT) else None
    if recorded is not None and namespace_problem(recorded) is None and backup_of(prefix, table, recorded):
        return "" if recorded == DEFAULT_NAME else recorded
    if _cut(prefix, stamp, tail, table):
        return None
    return "" if tail in (None, DEFAULT_NAME) else tail


def backup_index_name(backup: str, suffix: str) -> str:
    """The name an index ``{table}_{suffix}`` takes when its table becomes ``backup``: ``{backup}_{suffix}``, or, too
    long for Postgres, the start of it and a hash (so the suffixes of one table never cut to the same name)."""
    name = f"{backup}_{suffix}"
    if len(name) <= PG_IDENTIFIER_MAX_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{backup[: PG_IDENTIFIER_MAX_BYTES - len(suffix) - 10]}_{digest}_{suffix}"[:PG_IDENTIFIER_MAX_BYTES]


# --- DDL ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorIndex:
    """How a table's ANN index is built: ``method`` (ivfflat, hnsw or none) and, for ivfflat, its ``lists``."""

    method: VectorMethod = "ivfflat"
    lists: int = DEFAULT_LISTS

    def describe(self, dimension: int) -> str:
        """What ``vector_index_sql`` builds for ``dimension``, in words (for plans, stats and messages)."""
        if self.method == "none":
            return "none"
        if dimension > PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS:
            return f"none (pgvector indexes at most {PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS} dimensions)"
        if dimension > PGVECTOR_INDEX_MAX_DIMENSIONS:
            return f"hnsw over halfvec({dimension})"
        return f"ivfflat (lists = {self.lists})" if self.method == "ivfflat" else "hnsw"


def index_name(table: str, suffix: str) -> str:
    """``{table}_{suffix}`` cut to 63 characters, as Postgres itself cuts the DDL's names."""
    return f"{table}_{suffix}"[:PG_IDENTIFIER_MAX_BYTES]


def layout_names_problem(prefix: str, namespace: str) -> str | None:
    """Why the layout's names cannot all exist for ``namespace``'s table, or None: Postgres cuts names to 63
    characters, so for a long table two of them become one (``…_chunk_id_key`` and ``…_collection_idx`` both end
    ``…_c`` for a namespace of 50 characters), and the application's own DDL fails on that table too."""
    table = f"{prefix}_{namespace or DEFAULT_NAME}"
    names = [index_name(table, s) for s in ("chunk_id_key", VECTOR_INDEX, *(s for s, _ in BTREE_INDEXES))]
    if len(set(names)) == len(names):
        return None
    longest = PG_IDENTIFIER_MAX_BYTES - len(prefix) - len("__co")  # "_ch…" and "_co…" must still differ
    return (
        f"namespace {namespace!r}: the names of its table's constraint and indexes ({table}_chunk_id_key, "
        f"{table}_collection_idx, …) are cut to {PG_IDENTIFIER_MAX_BYTES} characters by Postgres and collide (the "
        f"application's DDL fails on this table as well); with prefix {prefix!r} a namespace has at most {longest} "
        "characters"
    )


def create_table_sql(table: str, dimension: int) -> str:
    """The application's ``CREATE TABLE`` for ``table``, column for column, with its named unique constraint (the
    DDL also marks ``chunk_id`` UNIQUE inline; Postgres keeps one constraint of that name). No index but the keys:
    ``create_index_sql`` adds the documented ones."""
    lines = [
        *(c.ddl(dimension) for c in LAYOUT),
        f"CONSTRAINT {quote(index_name(table, 'chunk_id_key'))} UNIQUE (chunk_id)",
    ]
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {quote(table)} (\n    {body}\n)"


def vector_index_sql(table: str, index: VectorIndex, dimension: int) -> str | None:
    """``{table}_vector_idx``, the cosine ANN index: ivfflat with ``index.lists`` (the layout's 100 by default) or
    hnsw; above 2,000 dimensions HNSW over ``embedding::halfvec(d)`` (pgvector's limit for ``vector`` is 2,000, for
    ``halfvec`` 4,000), so a search must order by ``embedding::halfvec(d) <=> …`` to use it. None: no index to build
    (``none``, or more than 4,000 dimensions)."""
    if index.method == "none" or dimension > PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS:
        return None
    head = f"CREATE INDEX {quote(index_name(table, VECTOR_INDEX))} ON {quote(table)}\n    "
    if dimension > PGVECTOR_INDEX_MAX_DIMENSIONS:
        return head + f"USING hnsw (({EMBEDDING_COLUMN}::halfvec({int(dimension)})) halfvec_cosine_ops)"
    if index.method == "hnsw":
        return head + f"USING hnsw ({EMBEDDING_COLUMN} vector_cosine_ops)"
    return head + f"USING ivfflat ({EMBEDDING_COLUMN} vector_cosine_ops) WITH (lists = {int(index.lists)})"


def btree_index_sql(table: str, suffix: str, column: str) -> str:
    """One of the layout's b-tree indexes, ``{table}_{suffix}`` on ``column``."""
    return f"CREATE INDEX {quote(index_name(table, suffix))} ON {quote(table)} ({quote(column)})"


def create_index_sql(table: str, index: VectorIndex, dimension: int) -> list[str]:
    """The layout's four indexes in the DDL's order: the vector index (when there is one to build), then the
    b-tree indexes on collection, document and strategy."""
    vector = vector_index_sql(table, index, dimension)
    return [*([vector] if vector else []), *(btree_index_sql(table, s, c) for s, c in BTREE_INDEXES)]


def distance_sql(dimension: int) -> str:
    """The cosine distance to ``:v`` as the vector index serves it (over halfvec above 2,000 dimensions)."""
    if PGVECTOR_INDEX_MAX_DIMENSIONS < dimension <= PGVECTOR_HALFVEC_INDEX_MAX_DIMENSIONS:
        return f"{EMBEDDING_COLUMN}::halfvec({int(dimension)}) <=> CAST(:v AS halfvec({int(dimension)}))"
    return f"{EMBEDDING_COLUMN} <=> CAST(:v AS vector)"
