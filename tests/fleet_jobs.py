"""Starting a job as ``nsmigrate run`` does, running a command in process against a stack, and reading a job's
batches, for the tests that run it on a worker stack; and a job written straight into a job table, for the tests of
the table itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import pages as jobs_pages
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.models import Batch, NamespaceRun
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.settings import load_settings
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack


def start_job(
    stack: Stack, spec_data: dict[str, Any], after_plan: Callable[[], None] | None = None, **settings_: Any
) -> tuple[jobs_database.Database, Dispatcher, int]:
    """Plan and launch ``spec_data`` on ``stack`` through `nsmigrate run`'s path (``launch.start_or_resume``, a new
    job); ``after_plan`` runs in between (e.g. to inject a fault into the copy); ``settings_``: the launching
    command's settings other than the stack's URLs. The caller disposes of the database."""
    settings = load_settings(database_url=stack.database_url, redis_url=stack.redis_url, **settings_)
    db, dispatcher = jobs_database.Database(settings.database_url), Dispatcher(settings)

    def between(_: Prepared) -> list[tuple[str, dict[str, Any]]]:
        if after_plan is not None:
            after_plan()
        return []

    spec = parse_spec(spec_data)

    def open_store(store: Any) -> Any:  # with the command's retries, as `nsmigrate run` opens its stores
        return open_retrying_store(store, settings)

    started = launch.start_or_resume(
        db, dispatcher, spec, open_store, stack.workdir, new=True, before_write=between, settings=settings
    )
    return db, dispatcher, started.job_id


def planned_job(db: jobs_database.Database, name: str, namespaces: tuple[str, ...] = ("ns",), vectors: int = 3) -> int:
    """A job of ``namespaces`` (``vectors`` each, one batch) between two unreachable Pinecone hosts, written into the
    job table as `run` writes one; nothing is sent. Returns its id."""
    spec = parse_spec(
        {
            "name": name,
            "source": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
            "target": {"kind": "pinecone", "host": "http://127.0.0.1:9"},
        }
    )
    plan = Plan(runs=[NamespacePlan(ns, ns, vectors, 1) for ns in namespaces], estimate=Estimate(0, 0, 0, 0, 0, 0.0))
    return jobs_and_runs.create_job(db, spec, plan, source_label="src", target_label="dst")


def copied_by_one_batch(
    ctx: WorkerContext, spec: JobSpec, sandbox: PineconeSandbox, index: str, namespace: str, records: list[Record]
) -> int:
    """``namespace`` of ``index`` loaded with ``records``, a job of that one run written and its one batch copied by
    ``copy_batch`` itself (no worker); returns the run's id."""
    sandbox.load(index, namespace, [(r.id, list(r.values), dict(r.metadata)) for r in records])
    plan = Plan(runs=[NamespacePlan(namespace, namespace, len(records), 1)], estimate=Estimate(0, 0, 0, 0, 0, 0.0))
    job_id = jobs_and_runs.create_job(ctx.db, spec, plan, source_label=index, target_label="target")
    [run] = jobs_and_runs.runs_of(ctx.db, job_id)
    [batch] = jobs_pages.add_batches(ctx.db, run.id, [[r.id for r in records]], None, listing_done=True).batch_ids
    assert copying.copy_batch(ctx, batch) == len(records)
    return run.id


def batches(db: jobs_database.Database, job_id: int) -> list[Batch]:
    """Every batch of ``job_id``, in the order they were made."""
    with db.transaction() as s:
        return list(
            s.scalars(
                sa.select(Batch)
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.job_id == job_id)
                .order_by(Batch.id)
            )
        )


def use_stack_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment as the stack's commands see it (job table, Redis, Pinecone key), for CLI calls
    made in process."""
    for key, value in stack.env().items():
        if key.startswith(("NSMIGRATE_", "PINECONE_")):
            monkeypatch.setenv(key, value)


def nsmigrate(stack: Stack, *args: str) -> Result:
    """`nsmigrate ARGS` run in process with the stack's job table, Redis and Pinecone key."""
    env = {
        "NSMIGRATE_DATABASE_URL": stack.database_url,
        "NSMIGRATE_REDIS_URL": stack.redis_url,
        "PINECONE_API_KEY": SANDBOX_API_KEY,
    }
    return CliRunner().invoke(app, list(args), env=env)
