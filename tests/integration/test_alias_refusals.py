"""Cleanup and rollback never delete a namespace that a namespace alias serves (Pinecone API 2026-07): they refuse,
changing nothing, naming the alias and what to do; once the alias is repointed or deleted they go ahead. On real
services: the job table in Postgres, Redis, two indexes of the local data plane, the steps' own code in process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import StateError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import sync_rollback as jobs_sync_rollback
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps.rollback import rollback_job
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import Job, RecordingDispatcher, copied_job, make_records, make_spec

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_ALIAS_REFUSALS_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


@pytest.fixture
def verified(ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> Job:
    """A job whose namespace ``alpha`` (5 vectors) is copied from index src to index dst and verified."""
    monkeypatch.setenv(KEY_ENV, "pcsk-alias-refusals-test")
    stores: tuple[dict[str, Any], ...] = tuple(
        {"kind": "pinecone", "host": sandbox.host(name), "api_key_env": KEY_ENV} for name in ("src", "dst")
    )
    job = copied_job(ctx, make_spec(stores), {"alpha": make_records(5)}, started=True)
    assert job.verify()["passed"]
    return job


def aliases_of(store: Any) -> Any:
    inner = getattr(store, "inner", store)
    assert isinstance(inner, PineconeStore)
    return inner.namespace_aliases()


@pytest.mark.parametrize("dry_run", [False, True])
def test_cleanup_refuses_a_source_namespace_an_alias_serves(verified: Job, dry_run: bool) -> None:
    aliases_of(verified.source).create("live", "alpha")

    result = verified.cleanup(dry_run=dry_run)

    assert result["action"] == "refused", result
    assert "alias(es) 'live' serve" in result["reason"] and "namespace 'alpha'" in result["reason"]
    assert "Repoint each alias" in result["reason"] and "/namespace-aliases/{alias}" in result["reason"]
    assert verified.source.namespaces() == {"alpha": 5}  # nothing deleted
    assert verified.state() == "verified"
    [event] = verified.events("cleanup_refused")
    assert "'live'" in event["detail"]["reason"]


def test_cleanup_goes_once_the_alias_serves_another_namespace(verified: Job, sandbox: PineconeSandbox) -> None:
    sandbox.load("src", "beta", [("b", [1.0] * DIM, None)])
    aliases = aliases_of(verified.source)
    aliases.create("live", "alpha")
    assert verified.cleanup()["action"] == "refused"

    aliases.repoint("live", "beta")

    assert verified.cleanup()["action"] == "deleted"
    assert "alpha" not in verified.source.namespaces() and verified.target.count("alpha") == 5


def test_an_alias_made_after_the_first_ask_still_stops_the_cleanup(
    verified: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_cleanup = jobs_verdicts.start_cleanup

    def alias_made_first(db: jobs_database.Database, run_id: int) -> Any:
        # An operator points the application's alias at the source between the first ask and the cleanup's start.
        aliases_of(verified.source).create("live", "alpha")
        return start_cleanup(db, run_id)

    monkeypatch.setattr(jobs_verdicts, "start_cleanup", alias_made_first)

    result = verified.cleanup()

    assert result["action"] == "refused" and "'live'" in result["reason"], result
    assert verified.source.namespaces() == {"alpha": 5}
    assert verified.state() == "verified"


@pytest.mark.parametrize("dry_run", [False, True])
def test_rollback_refuses_while_an_alias_serves_a_copy(ctx: WorkerContext, verified: Job, dry_run: bool) -> None:
    aliases_of(verified.target).create("live", "alpha")

    with pytest.raises(StateError) as refused:
        rollback_job(ctx, verified.job_id, dry_run=dry_run, actor="tester")

    message = str(refused.value)
    assert "the rollback would delete what namespace aliases of" in message and "'live'" in message
    assert f"`nsmigrate rollback {verified.job_id}` again" in message
    assert verified.target.namespaces() == {"alpha": 5}  # nothing deleted
    assert verified.state() == "verified"  # the forward job was not claimed

    assert aliases_of(verified.target).delete("live")
    assert rollback_job(ctx, verified.job_id, actor="tester")["action"] == "rolled_back"
    assert verified.target.namespaces() == {} and verified.source.namespaces() == {"alpha": 5}


def test_the_rollback_command_exits_1_when_an_alias_serves_a_copy(
    verified: Job, job_table_url: str, redis_url: str
) -> None:
    aliases_of(verified.target).create("live", "alpha")
    urls = ["--database-url", job_table_url, "--redis-url", redis_url]

    refused = CliRunner().invoke(app, ["rollback", str(verified.job_id), "--yes", *urls])

    # A refusal, not bad input (README's exit codes): the job and the command line were fine.
    assert refused.exit_code == 1, (refused.exit_code, refused.output)
    assert refused.stderr.startswith("error: ") and "'live'" in refused.stderr and "Traceback" not in refused.output
    assert verified.target.namespaces() == {"alpha": 5}
    assert verified.state() == "verified"


def test_an_alias_made_while_the_rollback_checks_still_stops_its_deletes(
    ctx: WorkerContext, verified: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollback_checked = jobs_sync_rollback.rollback_checked

    def alias_made_meanwhile(*args: Any, **kwargs: Any) -> Any:
        aliases_of(verified.target).create("live", "alpha")
        return rollback_checked(*args, **kwargs)

    monkeypatch.setattr(jobs_sync_rollback, "rollback_checked", alias_made_meanwhile)

    result = rollback_job(ctx, verified.job_id, actor="tester")

    assert result["action"] == "refused" and "'live'" in result["reason"], result
    assert verified.target.namespaces() == {"alpha": 5}
    assert verified.state() == "verified"
