"""Fixtures that start real services once per test session and give each test clean state.

- ``redis_server`` / ``redis_url``: a real Redis on a free port; flushed before each test that asks for ``redis_url``.
- ``password_redis_server``: another real Redis, that answers only clients giving its password.
- ``postgres_server``: PostgreSQL 18 + pgvector; ``database_url`` is a brand-new database per test (pgvector enabled);
  ``job_table_url`` the same with the job-table schema, copied from a template made once per process;
  ``module_job_table_url`` one such database for a whole test module.

On CI (``CI=true``) a ``timing`` test whose speed bound was missed (``tests.timing.assert_timing``) is reported as
xfailed with the measured value instead of failing; its other assertions fail as usual.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
import redis as redis_lib
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from nsmigrate_sandbox.services import PostgresServer, RedisServer
from tests import spare_databases
from tests.timing import TimingMiss

# The tiers (a marker per folder, and what each may use) and the fixtures of the local Pinecone data plane, worker
# stacks and the PostgREST stand-in, for tests/integration and tests/fleet alike.
pytest_plugins = ["tests.tiers", "tests.service_fixtures"]

_db_counter = itertools.count()

# No wall-clock limit per example (Hypothesis' default is 200 ms): on a loaded 2-core machine a pure example can take
# longer, and a property test is about the property, not the speed (`test_delta`'s round trip failed so, twice).
hypothesis_settings.register_profile("nsmigrate", deadline=None)
hypothesis_settings.load_profile("nsmigrate")

# pytest-xdist's workers set COLUMNS=80, and rich fixes the width of a console made while COLUMNS is set (cli.console's
# are made at import): without it, the width is read at each print, so a test can widen the output with
# ``CliRunner().invoke(..., env={"COLUMNS": "200"})`` under xdist too.
os.environ.pop("COLUMNS", None)


#: xdist workers per core for ``-n auto``. The fleet tier waits about half its time (workers booting, a visibility
#: timeout before a redelivery, a polled job table): on 2 cores, 2 xdist workers kept ~1.1 cores busy and took
#: 10:43 for the suite, 4 workers ~1.6 cores and 7:49 (same machine, same commit).
XDIST_WORKERS_PER_CORE = 2


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: ``XDIST_WORKERS_PER_CORE`` per usable core; ``$PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when
    set (None hands over to xdist's own hook, which reads it)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return XDIST_WORKERS_PER_CORE * len(os.sched_getaffinity(0))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if (
        report.failed
        and call.excinfo is not None
        and call.excinfo.errisinstance(TimingMiss)
        and item.get_closest_marker("timing") is not None
        and os.environ.get("CI", "").lower() == "true"
    ):
        # How pytest records an xfail: the run is shown as "xfailed" with this reason, not as a skip.
        report.outcome = "skipped"
        report.wasxfail = f"timing on this machine (CI): {call.excinfo.value}"  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_lib.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def password_redis_server() -> Iterator[RedisServer]:
    """A second Redis that answers only clients that give its password (``.password``; ``.url`` holds it)."""
    server = RedisServer(password="redis-pw-Q9+/@x").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    # Every database created from template1 then has pgvector already.
    engine = sa.create_engine(server.url.rsplit("/", 1)[0] + "/template1", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    engine.dispose()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def postgres_admin(postgres_server: PostgresServer) -> Iterator[sa.Engine]:
    """One connection that creates and drops this process's test databases (an engine per test forked a backend)."""
    engine = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT", pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def job_table_template(postgres_server: PostgresServer, postgres_admin: sa.Engine) -> str:
    """A database holding the job-table schema, made once per process: ``job_table_url`` copies it, which costs
    no more than an empty database and saves each test creating the schema. Nothing connects to it afterwards
    (Postgres copies only a template nobody is connected to)."""
    from nsmigrate.orchestrator.jobs.database import Database

    name = f"t{os.getpid()}_job_table"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    Database(_url_of(postgres_server, name)).dispose()
    return name


@pytest.fixture
def database_url(postgres_server: PostgresServer, postgres_admin: sa.Engine) -> Iterator[str]:
    """A fresh, empty database (with pgvector) for this test only."""
    yield from _fresh_database(postgres_server, postgres_admin, "template1", spare=True)


@pytest.fixture
def job_table_url(postgres_server: PostgresServer, postgres_admin: sa.Engine, job_table_template: str) -> Iterator[str]:
    """A fresh database holding the job-table schema, as `nsmigrate worker` makes sure of before its pool starts
    (a ``WorkerContext`` does not create it)."""
    yield from _fresh_database(postgres_server, postgres_admin, job_table_template, spare=True)


@pytest.fixture(scope="module")
def module_job_table_url(
    postgres_server: PostgresServer, postgres_admin: sa.Engine, job_table_template: str
) -> Iterator[str]:
    """A job-table database for one test module (a stack its tests share: ``module_stack``)."""
    yield from _fresh_database(postgres_server, postgres_admin, job_table_template)


#: This process's emptied databases by template (``tests/spare_databases.py``), and each template's shape.
_spares: dict[str, list[str]] = {}
_template_shapes: dict[str, frozenset[str]] = {}


def _fresh_database(server: PostgresServer, admin: sa.Engine, template: str, *, spare: bool = False) -> Iterator[str]:
    """A database of this test (or module) only, as ``template`` is; ``spare``: given back emptied for the next test
    of the same template instead of dropped, and taken from those when there is one (``tests/spare_databases.py``:
    a rename where a copy of the template cost ~135 ms of the server's CPU)."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    with admin.connect() as conn:
        if spare and _spares.get(template):
            conn.execute(sa.text(f"ALTER DATABASE {_spares[template].pop()} RENAME TO {name}"))
        else:
            # FILE_COPY: a copy of the template's files and a checkpoint (cheap with fsync off), where the default
            # writes every block of it through the WAL: more than twice as long, and twice the server's CPU.
            conn.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"))
    url = _url_of(server, name)
    if spare and template not in _template_shapes:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            _template_shapes[template] = spare_databases.shape(conn)
        engine.dispose()
    yield url
    if spare and _kept_as_spare(admin, url, name, template):
        return
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _kept_as_spare(admin: sa.Engine, url: str, name: str, template: str) -> bool:
    """End every other session on database ``name``, empty it to its template's shape and keep it under a spare's
    name; False when it could not be (the caller drops it)."""
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(terminate), {"name": name})
    if not spare_databases.empty(url, _template_shapes[template]):
        return False
    spare_name = f"s{os.getpid()}_{next(_db_counter)}"
    try:
        with admin.connect() as conn:  # refused while a session is on it: a client that came back since
            conn.execute(sa.text(f"ALTER DATABASE {name} RENAME TO {spare_name}"))
    except sa.exc.DBAPIError:
        return False
    _spares.setdefault(template, []).append(spare_name)
    return True


def _url_of(server: PostgresServer, database: str) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{database}"
