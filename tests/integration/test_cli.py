"""The CLI as a user meets it: every mistake gives one clear message (naming the field, namespace or setting and what
to do), exit code 2, and writes nothing — no job row in the job table, no message on a Redis queue.

Commands run in-process through ``typer.testing.CliRunner`` on the same ``app`` that ``nsmigrate`` and
``python -m nsmigrate`` run, against real Redis and Postgres and the real Pinecone SDK on the local data plane.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import redis as redis_lib
import sqlalchemy as sa
import yaml
from click.testing import Result
from typer.testing import CliRunner

from nsmigrate.cli.main import COMMANDS as COMMAND_TABLE
from nsmigrate.cli.main import app, load_command
from nsmigrate.orchestrator import recovery
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.task_names import Queue
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.services import RedisServer, free_port

API_KEY = "sandbox-key"  # the local data plane accepts any key
PER_NAMESPACE = 45  # 3 batches of 20 per namespace
NAMESPACES = ("ns0", "ns1")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [
        IndexSpec("small-src", dimension=8),
        IndexSpec("small-dst", dimension=8),
        IndexSpec("wide-dst", dimension=16),
        IndexSpec("dot-dst", dimension=8, metric="dotproduct"),
    ]


@pytest.fixture(scope="module")
def pinecone(module_sandbox: PineconeSandbox) -> PineconeSandbox:
    sandbox = module_sandbox
    for n, ns in enumerate(NAMESPACES):
        sandbox.load("small-src", ns, [(f"{ns}-{i:03d}", [0.1 * (n + 1)] * 8, {"n": n}) for i in range(PER_NAMESPACE)])
    return sandbox


class Cli:
    """Runs `nsmigrate …` in-process with this test's job table, Redis and key in the environment."""

    def __init__(self, database_url: str, redis_url: str, pinecone: PineconeSandbox, workdir: Path) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.pinecone = pinecone
        self.workdir = workdir
        self.env = {
            "NSMIGRATE_DATABASE_URL": database_url,
            "NSMIGRATE_REDIS_URL": redis_url,
            "PINECONE_API_KEY": API_KEY,
        }

    def __call__(self, *args: str, **env: str) -> Result:
        return CliRunner().invoke(app, list(args), env={**self.env, **env})

    def spec_data(self, **overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": "cli-small",
            "source": {"kind": "pinecone", "host": self.pinecone.host("small-src")},
            "target": {"kind": "pinecone", "host": self.pinecone.host("small-dst")},
            "batch_size": 20,
        }
        data.update(overrides)
        return data

    def spec_file(self, text: str | None = None, **overrides: Any) -> str:
        path = self.workdir / f"spec-{len(list(self.workdir.glob('spec-*')))}.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(self.spec_data(**overrides)))
        return str(path)

    def assert_nothing_written(self) -> None:
        db = jobs_database.Database(self.database_url)
        try:
            assert jobs_status.list_jobs(db) == []
            with db.engine.connect() as conn:
                for table in ("namespace_runs", "batches", "events"):
                    assert conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) == 0, table
        finally:
            db.dispose()
        r = redis_lib.Redis.from_url(self.redis_url)
        # Celery's Redis queues are lists named after the queue.
        assert {q.value: r.llen(q.value) for q in Queue} == {q.value: 0 for q in Queue}
        assert r.keys("*") == []


@pytest.fixture
def cli(database_url: str, redis_url: str, pinecone: PineconeSandbox, tmp_path: Path) -> Cli:
    return Cli(database_url, redis_url, pinecone, tmp_path)


def error_of(result: Result) -> str:
    """The error a command printed: exit code 2, no traceback, one `error:` message on stderr."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped exception
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def one_line(message: str) -> str:
    assert message.strip().count("\n") == 0, message
    return message


# ------------------------------------------------------------------------------------------------------ bad specs

BAD_SPECS = {
    "unknown field": (lambda c: c.spec_file(batch_sise=50), ["batch_sise", "unknown field"]),
    "host without scheme": (
        lambda c: c.spec_file(target={"kind": "pinecone", "host": "idx-abc.svc.pinecone.io"}),
        ["target.host", "needs its scheme", "https://"],
    ),
    "api key value in api_key_env": (
        lambda c: c.spec_file(
            source={"kind": "pinecone", "host": c.pinecone.host("small-src"), "api_key_env": "pcsk_FAKE"}
        ),
        ["source.api_key_env", "NAME of an environment variable", "put the secret in the environment"],
    ),
    "batch_size over 1000": (lambda c: c.spec_file(batch_size=5000), ["batch_size", "1000"]),
    "yaml syntax error": (lambda c: c.spec_file("name: x\nsource: {kind: pinecone\n"), ["not valid YAML", "spec-"]),
    "missing file": (lambda c: str(c.workdir / "nope.yaml"), ["nope.yaml", "does not exist", "give the path"]),
}


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_a_bad_spec_is_one_clear_error_and_writes_nothing(cli: Cli, case: str, command: str) -> None:
    make, expected = BAD_SPECS[case]

    message = error_of(cli(command, make(cli)))

    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert "pcsk_FAKE" not in message  # a key pasted into the spec is not echoed back
    cli.assert_nothing_written()


def test_an_unknown_namespace_is_named_with_the_available_ones(cli: Cli) -> None:
    spec = cli.spec_file(namespaces={"include": ["ns0", "ns9"]})

    message = one_line(error_of(cli("run", spec)))

    assert "namespaces.include" in message and "ns9" in message
    assert "it has 2: ns0, ns1" in message and "fix the name" in message
    cli.assert_nothing_written()


@pytest.mark.parametrize("role", ["source", "target"])
def test_an_unreachable_host_fails_fast_naming_the_store(cli: Cli, role: str) -> None:
    port = free_port()  # nothing listens there
    spec = cli.spec_file(**{role: {"kind": "pinecone", "host": f"http://127.0.0.1:{port}"}})

    started = time.monotonic()
    result = cli("run", spec)
    elapsed = time.monotonic() - started

    message = error_of(result).splitlines()[-1]  # the retries before it are logged as warnings
    assert f"the {role} store 127.0.0.1:{port} did not answer" in message
    assert f"check the {role} host/URL and that the service is up" in message
    assert elapsed < 15, f"took {elapsed:.1f} s"
    cli.assert_nothing_written()


def test_a_dimension_mismatch_is_refused(cli: Cli) -> None:
    spec = cli.spec_file(target={"kind": "pinecone", "host": cli.pinecone.host("wide-dst")})

    message = one_line(error_of(cli("run", spec)))

    assert "dimension mismatch" in message and "dimension 8" in message and "has 16" in message
    assert "choose a target index created with the source dimension" in message
    cli.assert_nothing_written()


def test_a_metric_mismatch_is_refused(cli: Cli) -> None:
    spec = cli.spec_file(target={"kind": "pinecone", "host": cli.pinecone.host("dot-dst")})

    message = one_line(error_of(cli("run", spec)))

    source, target = (cli.pinecone.host(name).removeprefix("http://") for name in ("small-src", "dot-dst"))
    assert f"metric mismatch: source {source} uses cosine, target {target} uses dotproduct" in message
    assert "same metric" in message
    cli.assert_nothing_written()


# ------------------------------------------------------------------------------------------------- happy paths


def test_plan_shows_namespaces_counts_batches_cost_and_duration_and_writes_nothing(cli: Cli) -> None:
    result = cli("plan", cli.spec_file())

    assert result.exit_code == 0, result.output
    out = result.stdout
    for ns in NAMESPACES:
        assert ns in out
    assert f"{PER_NAMESPACE} │       3" in out  # vectors and batches of each namespace
    assert "2 namespaces, 90 vectors, 6 batches" in out
    assert "read units" in out and "write units" in out and "s at the configured budgets" in out
    cli.assert_nothing_written()


def run_job(cli: Cli, **overrides: Any) -> int:
    result = cli("run", cli.spec_file(**overrides))
    assert result.exit_code == 0, result.output
    return int(result.stdout.strip().splitlines()[-1])


def test_status_json_of_a_job_without_workers_shows_it_pending(cli: Cli) -> None:
    job_id = run_job(cli)

    result = cli("status", str(job_id), "--json")

    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["job_id"] == job_id and status["name"] == "cli-small" and status["state"] == "running"
    assert [(r["source_namespace"], r["state"]) for r in status["runs"]] == [
        (ns, RunState.PENDING) for ns in NAMESPACES
    ]
    assert status["totals"]["source"] == 2 * PER_NAMESPACE and status["totals"]["copied"] == 0
    # One lister per namespace waits on the `list` queue for a worker.
    assert redis_lib.Redis.from_url(cli.redis_url).llen(Queue.LIST.value) == len(NAMESPACES)


def test_retry_of_a_namespace_the_job_does_not_have_is_refused_naming_its_namespaces(cli: Cli) -> None:
    job_id = run_job(cli)

    message = one_line(error_of(cli("retry", str(job_id), "--namespace", "typo")))

    assert f"job {job_id} has no namespace 'typo'" in message and "ns0" in message and "ns1" in message
    assert "nothing was re-queued" in message
    db = jobs_database.Database(cli.database_url, create=False)
    try:  # no `retry` event saying it re-queued nothing, as if the namespace were the job's
        assert [e["action"] for e in jobs_status.events_of(db, job_id)] == ["job_created"]
    finally:
        db.dispose()


def test_resume_says_which_checking_namespaces_it_left_to_their_planner_and_which_it_refused(cli: Cli) -> None:
    db = jobs_database.Database(cli.database_url)  # the job table made, as a command makes it
    plan = Plan([NamespacePlan(ns, ns, 3, 1) for ns in NAMESPACES], Estimate(0, 0, 0, 0, 0, 0.0))
    spec = parse_spec(cli.spec_data())
    job_id = jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst", checking={"ns0"})
    try:
        with recovery.planning(db, spec.name):  # the process planning the job still checks ns0
            left = cli("resume", str(job_id))
        refused = cli("resume", str(job_id))  # it is gone
    finally:
        db.dispose()

    assert left.exit_code == 0 and refused.exit_code == 0, (left.output, refused.output)
    assert "1 namespaces are still being checked by the process planning the job" in " ".join(left.output.split())
    said = " ".join(refused.output.split())
    assert "1 namespaces refused" in said and "--new" in said and f"nsmigrate events {job_id}" in said


def test_status_of_an_unknown_job_says_how_to_find_jobs(cli: Cli) -> None:
    message = one_line(error_of(cli("status", "4242")))

    assert "no job '4242'" in message and "`nsmigrate jobs` lists the jobs" in message


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_jobs_refuses_a_limit_below_one_naming_the_option(cli: Cli, limit: str) -> None:
    result = cli("jobs", "--limit", limit)  # -1 reached Postgres's LIMIT: a traceback

    assert result.exit_code == 2 and "Invalid value for '--limit'" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cleanup_without_yes_and_no_tty_refuses(cli: Cli) -> None:
    job_id = run_job(cli, cleanup={"mode": "manual"})

    message = one_line(error_of(cli("cleanup", str(job_id))))

    assert "pass --yes" in message and "--dry-run" in message
    assert cli.pinecone.stats("small-src")["requests"].get("delete", 0) == 0


def test_cleanup_dry_run_of_an_unverified_job_deletes_nothing(cli: Cli) -> None:
    job_id = run_job(cli, cleanup={"mode": "manual"})
    before = cli.pinecone.stats("small-src")["requests"]

    result = cli("cleanup", str(job_id), "--dry-run")

    assert result.exit_code == 1, result.output  # refused: a failed check, not bad input
    first, *others = NAMESPACES  # one reason for all: said once, the others named after it
    assert f"{first}: refused" in result.stdout and result.stdout.count("not verified") == 1, result.stdout
    assert f"{len(others)} more refused for the same reason: {', '.join(others)}" in result.stdout, result.stdout
    after = cli.pinecone.stats("small-src")["requests"]
    assert after.get("delete", 0) == before.get("delete", 0) == 0
    assert after.get("delete_namespace", 0) == 0
    db = jobs_database.Database(cli.database_url)
    try:
        assert [r.state for r in jobs_and_runs.runs_of(db, job_id)] == [RunState.PENDING] * len(NAMESPACES)
        refusals = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "cleanup_refused"]
        assert len(refusals) == len(NAMESPACES) and all(e["detail"]["dry_run"] for e in refusals)
    finally:
        db.dispose()


# ------------------------------------------------------------------------------------------- processes, settings


def test_worker_with_an_unknown_queue_is_refused(cli: Cli) -> None:
    message = one_line(error_of(cli("worker", "--queues", "copy,bogus")))

    assert "bogus" in message and all(q.value in message for q in Queue)


def test_worker_with_an_unknown_pool_is_refused(cli: Cli) -> None:
    message = one_line(error_of(cli("worker", "--queues", "copy", "--pool", "gevent")))

    assert "'gevent'" in message and "prefork or threads" in message


def test_worker_with_an_unknown_log_level_is_refused(cli: Cli) -> None:
    message = one_line(error_of(cli("worker", "--queues", "copy", "--loglevel", "LOUD")))

    assert "--loglevel 'LOUD'" in message and "WARNING" in message


def test_flower_without_its_password_is_refused(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSMIGRATE_FLOWER_PASSWORD", raising=False)

    message = one_line(error_of(cli("flower", "--port", str(free_port()))))

    assert "set NSMIGRATE_FLOWER_PASSWORD" in message and "basic auth" in message


BAD_DATABASE_URLS = [
    "postgresql+psycopg://u:s3cret@127.0.0.1:1/x",  # nothing listens
    "postgresql+psycopg://u:s3cret@127.0.0.1:notaport/x",  # unparsable: SQLAlchemy echoes the URL
]


@pytest.mark.parametrize("url", BAD_DATABASE_URLS)
@pytest.mark.parametrize("args", [["status", "1"], ["jobs"], ["worker", "--queues", "copy"], ["run", "SPEC"]])
def test_an_unreachable_job_table_is_one_line_naming_the_setting_without_the_password(
    cli: Cli, url: str, args: list[str]
) -> None:
    args = [cli.spec_file() if a == "SPEC" else a for a in args]

    message = one_line(error_of(cli(*args, NSMIGRATE_DATABASE_URL=url)))

    assert "NSMIGRATE_DATABASE_URL" in message and "cannot open the job table" in message
    assert "s3cret" not in message
    assert "u:***@127.0.0.1" in message


@pytest.mark.parametrize("args", [["events", "1"], ["run", "SPEC"]])
def test_an_invalid_setting_names_the_variable(cli: Cli, args: list[str]) -> None:
    args = [cli.spec_file() if a == "SPEC" else a for a in args]

    message = one_line(error_of(cli(*args, NSMIGRATE_RETRY_ATTEMPTS="0")))

    assert "NSMIGRATE_RETRY_ATTEMPTS" in message


def test_run_with_an_unreachable_redis_writes_no_job(cli: Cli) -> None:
    spec = cli.spec_file()

    message = one_line(error_of(cli("run", spec, NSMIGRATE_REDIS_URL=f"redis://:s3cret@127.0.0.1:{free_port()}/0")))

    assert "cannot reach Redis" in message and "NSMIGRATE_REDIS_URL" in message
    assert "s3cret" not in message and ":***@127.0.0.1" in message
    cli.assert_nothing_written()  # checked before the job table was written, not after


@pytest.mark.parametrize(
    ("userinfo", "said"),
    [(":wrong-pw-5Rt@", "refused the password"), ("", "requires a password and the URL gives none")],
    ids=["wrong password", "no password"],
)
def test_run_refused_by_redis_says_which_setting_and_writes_no_job(
    cli: Cli, password_redis_server: RedisServer, userinfo: str, said: str
) -> None:
    url = f"redis://{userinfo}127.0.0.1:{password_redis_server.port}/0"

    message = one_line(error_of(cli("run", cli.spec_file(), NSMIGRATE_REDIS_URL=url)))

    assert message.startswith("error: NSMIGRATE_REDIS_URL: ") and said in message
    assert "wrong-pw-5Rt" not in message
    cli.assert_nothing_written()


@pytest.mark.parametrize(
    "command",
    [
        ["sync", "JOB", "--dry-run"],
        ["cleanup", "JOB", "--dry-run"],
        ["rollback", "JOB", "--dry-run"],
        ["cutover", "check", "JOB"],
    ],
    ids=["sync", "cleanup", "rollback", "cutover check"],
)
def test_a_command_running_a_step_itself_refused_by_redis_says_so_and_changes_nothing(
    cli: Cli, password_redis_server: RedisServer, command: list[str]
) -> None:
    """Their store requests take the rate budget in Redis: a refused password was retried on every request and then
    reported as Redis out of reach (or as a refusal of the step's own)."""
    job_id = run_job(cli, cleanup={"mode": "manual"})
    db = jobs_database.Database(cli.database_url)
    try:
        before = (jobs_status.events_of(db, job_id), [r.state for r in jobs_and_runs.runs_of(db, job_id)])
        url = f"redis://:wrong-pw-5Rt@127.0.0.1:{password_redis_server.port}/0"

        message = one_line(error_of(cli(*[str(job_id) if a == "JOB" else a for a in command], NSMIGRATE_REDIS_URL=url)))

        assert message.startswith("error: NSMIGRATE_REDIS_URL: ") and "refused the password" in message
        assert "wrong-pw-5Rt" not in message
        assert (jobs_status.events_of(db, job_id), [r.state for r in jobs_and_runs.runs_of(db, job_id)]) == before
    finally:
        db.dispose()


@pytest.fixture
def acl_user(cli: Cli) -> Iterator[Callable[..., str]]:
    """Makes an ACL user on the test's Redis with the given rules; returns the URL that logs in as it."""
    admin = redis_lib.Redis.from_url(cli.redis_url)
    made: list[str] = []

    def make(*rules: str) -> str:
        name = f"app-{len(made)}"
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">acl-pw-4Hd", *rules)
        made.append(name)
        where = urlsplit(cli.redis_url)
        return f"redis://{name}:acl-pw-4Hd@{where.hostname}:{where.port}{where.path}"

    yield make
    for name in made:
        admin.execute_command("ACL", "DELUSER", name)


NOT_PERMITTED = {
    "no PING": (("~*", "&*", "+@all", "-ping"), "does not let ACL user 'app-0' run PING"),
    "no LPUSH": (("~*", "&*", "+@all", "-lpush"), "does not let ACL user 'app-0' run LPUSH"),
    "no queue keys": (("~nsmigrate:*", "&*", "+@all"), "does not let ACL user 'app-0' run LPUSH on key 'copy'"),
    "no event channels": (("~*", "+@all"), "does not let ACL user 'app-0' run PUBLISH on channel 'celeryev'"),
}


@pytest.mark.parametrize(("rules", "said"), NOT_PERMITTED.values(), ids=NOT_PERMITTED.keys())
def test_run_as_an_acl_user_lacking_a_permission_names_it_and_writes_no_job(
    cli: Cli, acl_user: Callable[..., str], rules: tuple[str, ...], said: str
) -> None:
    """Redis's NOPERM is a setting to fix: before, a user without PING read as Redis out of reach, and one without
    LPUSH wrote the job and then failed with a traceback, its tasks never enqueued."""
    url = acl_user(*rules)

    message = one_line(error_of(cli("run", cli.spec_file(), NSMIGRATE_REDIS_URL=url)))

    assert message.startswith("error: NSMIGRATE_REDIS_URL: Redis at redis://app-0:***@127.0.0.1:") and said in message
    assert "ACL SETUSER app-0" in message and "acl-pw-4Hd" not in message
    cli.assert_nothing_written()


def test_run_reads_a_redis_password_given_as_a_query_parameter(cli: Cli, password_redis_server: RedisServer) -> None:
    server = password_redis_server
    assert server.password is not None
    url = f"redis://127.0.0.1:{server.port}/0?password={quote(server.password, safe='')}"
    queue = redis_lib.Redis.from_url(server.url)
    queue.flushall()

    result = cli("run", cli.spec_file(), NSMIGRATE_REDIS_URL=url)  # planned here: no planner answers

    assert result.exit_code == 0, (result.output, result.exception)
    job_id = int(result.stdout.strip().splitlines()[-1])
    assert queue.llen(Queue.LIST.value) == len(NAMESPACES)  # the listers went through kombu, with the password
    assert server.password not in result.output and quote(server.password, safe="") not in result.output
    db = jobs_database.Database(cli.database_url)
    try:
        assert [r.state for r in jobs_and_runs.runs_of(db, job_id)] == [RunState.PENDING] * len(NAMESPACES)
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "redis://:first-pw@127.0.0.1:6379/0?password=second-pw",
        "redis://127.0.0.1:6379/0?password=first-pw&password=second-pw",
    ],
)
def test_a_redis_password_given_twice_is_refused_naming_the_setting(cli: Cli, url: str) -> None:
    message = one_line(error_of(cli("run", cli.spec_file(), NSMIGRATE_REDIS_URL=url)))

    assert "NSMIGRATE_REDIS_URL" in message and "gives its password twice" in message
    assert "first-pw" not in message and "second-pw" not in message
    cli.assert_nothing_written()


# ------------------------------------------------------------------------------------------------------ --help

COMMANDS = sorted(COMMAND_TABLE)


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])

    assert result.exit_code == 0, result.output
    assert "Migrate vector data" in result.stdout
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str) -> None:
    command = load_command(name)

    result = CliRunner().invoke(app, [name, "--help"])

    assert result.exit_code == 0, result.output
    summary = (command.help or "").split(".")[0].split("\n")[0].strip()
    assert summary and summary[:30] in " ".join(result.stdout.split()), (name, result.stdout)


def commands_with_options() -> list[tuple[str, Any]]:
    """Every command that runs (a group's subcommands, not the group), named as typed: ``cutover set``."""
    found: list[tuple[str, Any]] = []
    for name in COMMANDS:
        command = load_command(name)
        subcommands = getattr(command, "commands", None)
        found += [(f"{name} {sub}", c) for sub, c in subcommands.items()] if subcommands else [(name, command)]
    return found


def test_every_option_of_every_command_says_what_it_does() -> None:
    """An option listed with no text leaves the operator to guess (`retry --wait`, `resume --wait` were)."""
    silent = [
        f"nsmigrate {name} {param.opts[0]}"
        for name, command in commands_with_options()
        for param in command.params
        if param.param_type_name == "option" and not (getattr(param, "help", None) or "").strip()
    ]
    assert silent == []
