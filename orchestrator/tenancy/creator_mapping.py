"""Loading the twin → creator mapping that creator routing needs, and the seeds' ``sources`` table (source key →
twin, ``load_sources``) that routes default-namespace vectors with neither a twin nor a creator id.

Three sources (``CreatorMapping.source``): ``inline`` (in the spec), ``file`` (CSV ``twin_id,creator_id`` or YAML
``{twin_id: creator_id}``) and ``supabase`` (the ``twins`` table, read with the real ``supabase`` client). Every id is
checked against the namespace convention here, so a bad id stops the plan before anything is written.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tenacity
import yaml

from nsmigrate.orchestrator import retry_policy
from nsmigrate.orchestrator.connections import supabase_queries
from nsmigrate.orchestrator.connections.keys import check_service_url
from nsmigrate.orchestrator.errors import PlanError, SpecError
from nsmigrate.orchestrator.records.namespaces import ID_RULE, mapping_problems
from nsmigrate.orchestrator.spec.jobspec import CreatorMapping, OwnerTable, SourceTable
from nsmigrate.orchestrator.spec.yamlfile import compose_yaml

if TYPE_CHECKING:
    from postgrest.exceptions import APIError

SUPABASE_PAGE_ROWS = 1000  # rows asked for per request; the server may send fewer (PostgREST max-rows)
_SHOWN = 10  # how many problems an error lists before "…"
_YAML_STR = "tag:yaml.org,2002:str"


def load_twins(
    mapping: CreatorMapping | None, base_dir: Path | None = None, policy: tenacity.Retrying | None = None
) -> dict[str, str]:
    """twin_id → creator_id from ``mapping`` (an empty dict for None).

    Parameters:
        mapping: the spec's ``routing.creators``.
        base_dir: where a relative ``path`` is looked up first (the spec file's directory); then the current
            working directory.
        policy: how each Supabase request is retried (default: ``retry_policy.one_off()``).

    Raises:
        SpecError: the file is missing or malformed (the message names the file and line), or a Supabase env var is
            unset (named; its value is never shown) or the table cannot be read.
        RetryableError: Supabase could not be reached, after the policy's attempts.
        PlanError: an id cannot be part of a namespace name (all offending ids are listed).
    """
    if mapping is None:
        return {}
    origin: str
    if mapping.source == "inline":
        twins, origin = dict(mapping.twins), "routing.creators.twins"
    elif mapping.source == "file":
        path = resolve_path(mapping.path or "", base_dir)
        twins, origin = load_file(path), str(path)
    else:
        twins, origin = load_supabase(mapping, policy=policy), f"Supabase table {mapping.twins_table!r}"
    validate_twins(twins, origin)
    return twins


def validate_twins(twins: dict[str, str], origin: str) -> None:
    """PlanError listing every twin or creator id in ``twins`` that cannot be part of a namespace name."""
    problems = mapping_problems(twins)
    if problems:
        shown = "\n  ".join(problems[:_SHOWN]) + (
            f"\n  … ({len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        )
        raise PlanError(
            f"the twin → creator mapping from {origin} has {len(problems)} invalid id(s):\n  {shown}",
            hint=f"{ID_RULE}; fix them",
            origin=origin,
        )


def resolve_path(path: str, base_dir: Path | None) -> Path:
    """An absolute path as is; a relative one against ``base_dir``, then the CWD; SpecError naming where it looked."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [*([base_dir / p] if base_dir is not None else []), Path.cwd() / p]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SpecError(
        f"creator mapping file {path!r} not found (looked at {', '.join(str(c) for c in candidates)})",
        hint="routing.creators.path is relative to the spec file's directory; give a CSV twin_id,creator_id or a YAML "
        "{twin_id: creator_id}",
        path=path,
    )


def load_file(path: Path) -> dict[str, str]:
    """Read a CSV (by ``.csv``) or YAML (by ``.yaml``/``.yml``) mapping file; SpecError naming file and line."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read creator mapping file {path}: {e}", path=str(path)) from e
    if suffix == ".csv":
        return parse_csv(text, str(path))
    if suffix in (".yaml", ".yml"):
        return parse_yaml(text, str(path))
    raise SpecError(
        f"creator mapping file {path} is neither .csv nor .yaml/.yml",
        hint="name it *.csv (header twin_id,creator_id) or *.yaml ({twin_id: creator_id})",
        path=str(path),
    )


def _add(twins: dict[str, str], seen_at: dict[str, int], twin: str, creator: str, where: str, line: int) -> None:
    if twin in twins and twins[twin] != creator:
        raise SpecError(
            f"{where}:{line}: twin {twin!r} has creator {creator!r} but line {seen_at[twin]} says {twins[twin]!r}",
            hint="a twin belongs to exactly one creator; remove one of the lines",
            path=where,
            line=line,
        )
    twins[twin] = creator
    seen_at.setdefault(twin, line)


def parse_csv(text: str, where: str = "<csv>") -> dict[str, str]:
    """Parse ``twin_id,creator_id`` CSV (header required; ``#`` lines and blank lines ignored)."""
    # Keep physical line numbers for messages while skipping comments.
    rows = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        return {}
    header_line, header_text = rows[0]
    header = [h.strip() for h in next(csv.reader([header_text]))]
    if "twin_id" not in header or "creator_id" not in header:
        raise SpecError(
            f"{where}:{header_line}: the header is {header_text!r}; it must name the columns twin_id and creator_id",
            hint="start the file with the line: twin_id,creator_id",
            path=where,
            line=header_line,
        )
    twin_col, creator_col = header.index("twin_id"), header.index("creator_id")
    twins: dict[str, str] = {}
    seen_at: dict[str, int] = {}
    for n, line in rows[1:]:
        cells = [c.strip() for c in next(csv.reader(io.StringIO(line)))]
        if len(cells) != len(header):
            raise SpecError(
                f"{where}:{n}: expected {len(header)} columns ({', '.join(header)}), got {len(cells)}: {line!r}",
                path=where,
                line=n,
            )
        twin, creator = cells[twin_col], cells[creator_col]
        if not twin or not creator:
            raise SpecError(f"{where}:{n}: empty twin_id or creator_id: {line!r}", path=where, line=n)
        _add(twins, seen_at, twin, creator, where, n)
    return twins


def parse_yaml(text: str, where: str = "<yaml>") -> dict[str, str]:
    """Parse a YAML mapping ``{twin_id: creator_id}``. Ids must be strings: YAML would read ``007`` as the number 7
    and ``1.10`` as 1.1, silently changing the id, so unquoted numbers are refused."""
    node = compose_yaml(text, where)
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise SpecError(
            f"{where}:{node.start_mark.line + 1}: the top level must be a mapping twin_id: creator_id",
            path=where,
        )
    twins: dict[str, str] = {}
    seen_at: dict[str, int] = {}
    for key, value in node.value:
        line = key.start_mark.line + 1
        for part in (key, value):
            if not isinstance(part, yaml.ScalarNode) or part.tag != _YAML_STR:
                shown = part.value if isinstance(part, yaml.ScalarNode) else "(a list or mapping)"
                raise SpecError(
                    f"{where}:{part.start_mark.line + 1}: {shown!r} is not a string",
                    hint="quote ids that YAML would read as numbers, booleans or null, e.g. '007': 'c.1'",
                    path=where,
                    line=part.start_mark.line + 1,
                )
        _add(twins, seen_at, str(key.value), str(value.value), where, line)
    return twins


def _env(name: str, field: str) -> str:
    value = os.environ.get(name)
    if not value:
        # Name the variable, never echo a value.
        raise SpecError(
            f"environment variable {name} ({field}) is not set",
            hint=f"export {name}=… before running, or point {field} at the variable that holds it",
            env_var=name,
        )
    return value


def load_supabase(
    mapping: CreatorMapping, page_rows: int = SUPABASE_PAGE_ROWS, policy: tenacity.Retrying | None = None
) -> dict[str, str]:
    """twin_id → creator_id from the ``twins_table`` (columns ``id``, ``creator_id``) through the real ``supabase``
    client, paged (``supabase_rows``). Rows without a creator are left out (the planner treats those twins as
    unknown)."""
    rows = supabase_rows(
        mapping.url_env,
        mapping.key_env,
        mapping.twins_table,
        ("id", "creator_id"),
        "routing.creators",
        page_rows,
        policy,
    )
    return {str(r["id"]): str(r["creator_id"]) for r in rows if r.get("id") is not None and r.get("creator_id")}


def supabase_rows(
    url_env: str,
    key_env: str,
    table: str,
    columns: tuple[str, ...],
    field: str,
    page_rows: int = SUPABASE_PAGE_ROWS,
    policy: tenacity.Retrying | None = None,
) -> list[dict[str, Any]]:
    """Every row of ``table`` (``columns``) through the real ``supabase`` client, paging with ``range`` ordered by
    the first column until an empty page: the server caps rows per response (PostgREST max-rows), so a short page
    does not mean the end. Each page is one request retried by ``policy`` (default: ``retry_policy.one_off()``).
    ``field`` names the spec section in messages."""
    url = _env(url_env, f"{field}.url_env")
    key = _env(key_env, f"{field}.key_env")
    check_service_url(url, url_env)
    from supabase import create_client  # heavy import, only needed here

    try:
        client = create_client(url, key)
    except Exception as e:  # the client validates the URL and key shape
        raise SpecError(
            f"cannot create a Supabase client from {url_env} / {key_env}: {type(e).__name__}: {e}",
            hint=f"check that {url_env} holds the project URL and {key_env} a service key",
        ) from e
    runner = policy or retry_policy.one_off()
    out: list[dict[str, Any]] = []
    try:
        while True:
            first = len(out)
            rows = retry_policy.call_with_retry(
                _page, client, url_env, key_env, table, columns, first, first + page_rows - 1, policy=runner
            )
            if not rows:
                return out
            out.extend(rows)
    finally:
        client.postgrest.aclose()  # the sync client's close, despite the name


def _page(
    client: Any, url_env: str, key_env: str, table: str, columns: tuple[str, ...], first: int, last: int
) -> list[dict[str, Any]]:
    def refused(e: APIError) -> SpecError:
        return SpecError(
            f"Supabase refused to read table {table!r}: {e.message} (code {e.code})",
            hint=f"check the table name and that the key in {key_env} may read it (columns {', '.join(columns)})",
            table=table,
        )

    # Ordered so that pages do not overlap or skip rows: without ORDER BY, Postgres may return any order.
    return supabase_queries.rows(
        client.table(table).select(",".join(columns)).order(columns[0]).range(first, last), url_env, refused
    )


def load_sources(
    table: SourceTable | None, base_dir: Path | None = None, policy: tenacity.Retrying | None = None
) -> dict[str, str]:
    """The seeds' ``sources`` table as source key → twin_id (empty for None): a CSV file, a Postgres table or a
    Supabase table (paged). Rows without a twin are left out; their vectors are
    unresolved (``routing.unresolved``: the review namespace, the override creator's namespace, or dropped).

    Raises:
        SpecError: a missing file or column, an unset env var (named, never shown), a table that cannot be read.
        RetryableError: Supabase could not be reached.
    """
    if table is None:
        return {}
    columns = (table.key_column, table.twin_column)
    if table.source == "file":
        path = resolve_path(table.path or "", base_dir)
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
            raise SpecError(
                f"sources file {path} must have the columns {', '.join(columns)}",
                hint="routing.sources.key_column / twin_column name them",
                path=str(path),
            )
        rows: list[dict[str, Any]] = list(reader)
    elif table.source == "postgres":
        from nsmigrate.orchestrator.connections.database_urls import (
            engine_of,  # SQLAlchemy: only for a sources table in Postgres
        )

        url = _env(table.database_url_env, "routing.sources.database_url_env")
        rows = _postgres_rows(engine_of(url, table.database_url_env), url, table.table, columns)
    else:
        rows = supabase_rows(
            table.url_env, table.key_env, table.table, columns, "routing.sources", SUPABASE_PAGE_ROWS, policy
        )
    return {str(r[columns[0]]): str(r[columns[1]]) for r in rows if r.get(columns[0]) and r.get(columns[1])}


def _postgres_rows(engine: Any, url: str, name: str, columns: tuple[str, str]) -> list[dict[str, Any]]:
    """The rows of table ``name`` of the database at ``url`` (``engine``'s), whose errors are scrubbed against it."""
    import sqlalchemy as sa

    from nsmigrate.orchestrator.connections.database_urls import error_text

    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(f'SELECT "{columns[0]}", "{columns[1]}" FROM "{name}"'))
            return [dict(zip(columns, row, strict=True)) for row in result]
    except sa.exc.SQLAlchemyError as e:
        raise SpecError(
            f"cannot read the sources table {name!r}: {type(e).__name__}: {error_text(e, url)}",
            hint="check routing.sources.table / columns and the database URL's permissions",
            table=name,
        ) from e
    finally:
        engine.dispose()


def load_owners(table: OwnerTable | None, policy: tenacity.Retrying | None = None) -> dict[str, tuple[str, str | None]]:
    """Seed 000's owners table as vector id → (creator_id, twin_id or None) (empty for None), read whole through
    the real ``supabase`` client, paged. Rows without a creator are left out: their vectors stay unresolved.

    Raises:
        SpecError: an unset env var (named, never shown), a table or column that cannot be read.
        RetryableError: Supabase could not be reached.
    """
    if table is None:
        return {}
    columns = (table.id_column, table.creator_column) + ((table.twin_column,) if table.twin_column else ())
    rows = supabase_rows(table.url_env, table.key_env, table.table, columns, "routing.owners", policy=policy)
    twin = table.twin_column
    return {
        str(r[table.id_column]): (str(r[table.creator_column]), str(r[twin]) if twin and r.get(twin) else None)
        for r in rows
        if r.get(table.id_column) and r.get(table.creator_column)
    }
