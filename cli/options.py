"""What every command shares: the option types, settings read once (by the reading commands only the job table's URL),
the job table, and the error exit.

Light on purpose: ``nsmigrate status`` loads this module, so nothing here may import Celery, a store SDK or pyarrow,
nor at module level SQLAlchemy (``read_job_table`` reads over libpq, ``cli.libpq``, or plain psycopg).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TypeVar

import typer

from nsmigrate.cli.console import print_error
from nsmigrate.cli.handoff import DATABASE_URL_ENV, Urls, given_urls
from nsmigrate.orchestrator import progress, snapshot
from nsmigrate.orchestrator.records.namespaces import parse_namespace_arg
from nsmigrate.orchestrator.redaction import redact_url, scrub
from nsmigrate.orchestrator.snapshot import JobStatus, JobSummary

if TYPE_CHECKING:
    from nsmigrate.orchestrator.cutover.rules import Rollout
    from nsmigrate.orchestrator.jobs import database as jobs_database
    from nsmigrate.orchestrator.settings import Settings

T = TypeVar("T")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="Job table (SQLAlchemy URL). Default: $NSMIGRATE_DATABASE_URL.", show_default=False
    ),
]
RedisOpt = Annotated[
    str | None,
    typer.Option("--redis-url", help="Broker/locks/rate buckets. Default: $NSMIGRATE_REDIS_URL.", show_default=False),
]
JobArg = Annotated[str, typer.Argument(help="Job id, or job name (its newest job).")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Only this source namespace (__default__ for the default).")
]


def settings(database_url: str | None, redis_url: str | None) -> Settings:
    from pydantic import ValidationError

    from nsmigrate.orchestrator.settings import load_settings  # pydantic-settings: see job_table_url

    overrides = {k: v for k, v in {"database_url": database_url, "redis_url": redis_url}.items() if v}
    try:
        return load_settings(**overrides)
    except ValidationError as e:  # e.g. NSMIGRATE_RETRY_ATTEMPTS=0: name the variable, never echo values
        problems = "; ".join(
            f"NSMIGRATE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in e.errors()
        )
        raise fail(f"invalid setting(s): {problems} — fix the environment (or .env)") from e


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as one ``error:`` line on stderr; returns the exit to raise (code 2: bad input, 1: failed)."""
    print_error(message)
    return typer.Exit(code)


def check_redis_credentials(redis_url: str) -> None:
    """Stop the command (exit 2, nothing changed) when Redis refuses the credentials of ``redis_url``: retrying them
    cannot help. A Redis that is down is left to the caller (a worker waits for it)."""
    from nsmigrate.workers import broker_credentials  # redis-py and Celery: only for the commands that use Redis

    problem = broker_credentials.check(redis_url)
    if problem is not None:
        raise fail(problem)


def fleet_urls(database_url: str | None, redis_url: str | None) -> Urls:
    """The URLs ``cli.submit`` hands a spec to the fleet with (the fleet plans with its own settings). When both are
    given (option or environment), no other ``NSMIGRATE_`` variable is set (but a pgvector store's URL) and there is
    no ``.env`` file, every other setting is its default, so nothing is left to check and the settings
    (pydantic-settings) are not loaded; otherwise they are, and an invalid one stops the command before the fleet
    sees the spec."""
    given = given_urls(database_url, redis_url)
    if given is None:
        loaded = settings(database_url, redis_url)
        return Urls(loaded.database_url, loaded.redis_url)
    return given


def job_table_url(database_url: str | None) -> str:
    """The job table's URL for the commands that only read it (``status``, ``jobs``): ``--database-url``, else
    ``$NSMIGRATE_DATABASE_URL``, which win over ``.env`` and the default in ``Settings`` as well; only without either
    are the settings loaded. Why: loading them (pydantic-settings) is about a tenth of such a command, which reads
    nothing else of them (``bench/README.md``)."""
    url = database_url or os.environ.get(DATABASE_URL_ENV)
    return url if url is not None else settings(None, None).database_url


def db(settings: Settings) -> jobs_database.Database:
    return _database(settings.database_url)


def _database(url: str) -> jobs_database.Database:
    from nsmigrate.orchestrator.jobs import database as jobs_database
    from nsmigrate.orchestrator.models import SchemaTooNew

    try:
        return jobs_database.Database(url)
    except SchemaTooNew:
        raise  # its own message and exit code (the root command's)
    except Exception as e:  # connection refused, bad URL, auth: say where and what to set
        raise _unreachable(url, e) from e


def _unreachable(url: str, e: Exception) -> typer.Exit:
    detail = scrub((str(e).splitlines() or [""])[0][:200], url)  # an unparsable URL is echoed whole by SQLAlchemy
    return fail(
        f"cannot open the job table at {redact_url(url)}: {type(e).__name__}: "
        f"{detail} — set NSMIGRATE_DATABASE_URL or --database-url to a reachable Postgres"
    )


def read_job_status(url: str, ref: str) -> JobStatus:
    """Job ``ref``'s snapshot (``orchestrator.snapshot``): every run."""
    return read_job_table(url, lambda execute: snapshot.read_snapshot(execute, ref))


def read_job_summary(url: str, ref: str, rows: int | None) -> JobSummary:
    """What `status` shows of job ``ref``: counts by state, totals and at most ``rows`` runs (None: every run)."""
    return read_job_table(url, lambda execute: snapshot.read_summary(execute, ref, rows))


def read_job_json(url: str, ref: str) -> bytes:
    """`status --json` of job ``ref`` (``orchestrator.snapshot.snapshot_json``)."""
    return read_job_table(url, lambda execute: snapshot.read_json(execute, ref))


#: A job's cut-over in one statement: its ``cutover set`` steps, oldest first, as [percent, when]; and its newest
#: ``cutover_reads`` (a window of what the reads saw) and ``cutover_breach`` events, as [detail, when].
CUTOVER_SQL = (
    "SELECT json_build_object("
    "'steps', (SELECT json_agg(json_build_array((detail->>'percent')::int, at) ORDER BY id) FROM events "
    "WHERE job_id = %(job_id)s AND action = 'cutover_set'), "
    "'reads', (SELECT json_build_array(detail, at) FROM events WHERE job_id = %(job_id)s "
    "AND action = 'cutover_reads' ORDER BY id DESC LIMIT 1), "
    "'breach', (SELECT json_build_array(detail, at) FROM events WHERE job_id = %(job_id)s "
    "AND action = 'cutover_breach' ORDER BY id DESC LIMIT 1))"
)


class CutoverView(NamedTuple):
    """What `status` shows of a job's cut-over: where reads go, the newest window of what they saw (``cutover
    watch``: its own reads and the applications'), and the newest breach; each (detail, ISO time) or None."""

    rollout: Rollout
    reads: tuple[dict[str, Any], str] | None
    breach: tuple[dict[str, Any], str] | None


def read_cutover(url: str, ref: str | int) -> CutoverView:
    """Job ``ref``'s cut-over (``orchestrator.cutover.rules``) as `status` shows it."""

    def read(execute: snapshot.Execute) -> CutoverView:
        from nsmigrate.orchestrator.cutover.rules import (
            rollout_from,  # the spec's pydantic models: only for a job's rollout
        )

        found = execute(CUTOVER_SQL, {"job_id": snapshot.job_id_of(execute, ref)}) or {}
        steps = found.get("steps") or []
        rollout = rollout_from([(int(percent), datetime.fromisoformat(at)) for percent, at in steps])
        reads, breach = (tuple(found[k]) if found.get(k) else None for k in ("reads", "breach"))
        return CutoverView(rollout, reads, breach)

    return read_job_table(url, read)


def read_jobs(url: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` jobs, newest first (``orchestrator.snapshot.read_jobs``)."""
    return read_job_table(url, lambda execute: snapshot.read_jobs(execute, limit))


def read_job_table(url: str, read: Callable[[snapshot.Execute], T]) -> T:
    """``read`` (one of the job table's readers, ``orchestrator.snapshot``) over one plain connection
    (``_plain_connection``): no SQLAlchemy to import and no schema to check. A job table that is not Postgres through
    psycopg, or whose schema is missing or older than the statement, is read through the job table's engine instead,
    which makes the schema current first (``jobs_status.read_status``): the same reader either way."""
    conninfo = _libpq_url(url)
    if conninfo is not None:
        try:
            with _plain_connection(url, conninfo) as execute:
                return read(execute)
        except Exception as e:  # libpq's ``Failed`` and psycopg's errors both carry the SQLSTATE
            if getattr(e, "sqlstate", None) not in _SCHEMA_BEHIND:
                raise
    from nsmigrate.orchestrator.jobs import status as jobs_status

    return jobs_status.read_status(_database(url), read)


#: SQLSTATEs of a statement newer than the job table's schema: an undefined table, an undefined column.
_SCHEMA_BEHIND = ("42P01", "42703")


@contextmanager
def _plain_connection(url: str, conninfo: str) -> Iterator[snapshot.Execute]:
    """One connection to the job table as an ``Execute``: libpq's (``cli.libpq``), else psycopg's where no libpq
    loads. A connection refused, unreachable or lost (and not made again) is ``_unreachable``'s error."""
    from nsmigrate.cli import libpq

    try:
        held = libpq.connect(conninfo)
        if held is not None:
            with held:
                yield held.execute
            return
    except libpq.ConnectionFailed as e:
        raise _unreachable(url, e) from e
    import psycopg  # no libpq that loads by itself here

    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            yield _executor(conn)
    except psycopg.OperationalError as e:
        raise _unreachable(url, e) from e


@contextmanager
def status_reader(database_url: str, job_id: int) -> Iterator[Callable[[int], progress.JobProgress]]:
    """Reads job ``job_id``'s progress with at most ROWS runs listed (``orchestrator.progress``) again at each call
    ``read(ROWS)``, over one plain connection kept open (``_plain_connection``; a waiting command reads every half
    second; no SQLAlchemy to import). Falls back as ``read_job_table`` does."""
    conninfo = _libpq_url(database_url)
    if conninfo is None:
        yield lambda rows: read_job_table(database_url, lambda e: progress.read_progress(e, job_id, rows))
        return
    with _plain_connection(database_url, conninfo) as execute:
        yield lambda rows: progress.read_progress(execute, job_id, rows)


def _executor(conn: Any) -> snapshot.Execute:
    """The job table's statements over one psycopg connection: each answers one value (``orchestrator.snapshot``)."""

    def execute(sql: str, params: dict[str, Any]) -> Any:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    return execute


def _libpq_url(url: str) -> str | None:
    """The libpq form of a SQLAlchemy URL of Postgres through psycopg, else None."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme in ("postgresql+psycopg", "postgresql", "postgres") else None


def find_job_id(database: jobs_database.Database, ref: str) -> int:
    from nsmigrate.orchestrator.jobs import jobs_and_runs

    return jobs_and_runs.find_job(database, ref).id


def job_context(
    job: str, namespace: str | None, database_url: str | None, redis_url: str | None
) -> tuple[Settings, jobs_database.Database, int, str | None]:
    """What every job command starts from: settings, the job table, the job's id and the namespace asked for."""
    resolved = settings(database_url, redis_url)
    database = db(resolved)
    ns = parse_namespace_arg(namespace) if namespace is not None else None
    return resolved, database, find_job_id(database, job), ns
