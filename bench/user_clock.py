"""The user's clock: a job started as a user starts it, ``nsmigrate run SPEC --wait`` in its own process.

Measured from the moment before the command is started (its interpreter, imports, planning, writing the job table and
enqueueing included) to the job's last batch as the job table records it. The job's own clock runs from its row in
the job table (``jobs.created_at``) to the same last batch, so the difference is what the user waits before the job
exists: start-up and planning.

``JobTableStatements`` counts the statements the job table ran for a job, as Postgres counts them
(``pg_stat_statements``, with the server started with it preloaded: ``PostgresServer(preload=STATEMENT_COUNTING)``).

``timeline`` puts the steps of one such job on the user's clock, each read from where it happened: the command's
start and exit (this process), planning's marks (kept in the job's ``job_created`` event by whoever planned it), the
job's row and its batches' rows (the job table), and the target's first and last upsert as the target's data plane
received them (``/_sandbox/stats``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.models import Batch, Event, Job, NamespaceRun

#: What the bench's Postgres preloads to count statements.
STATEMENT_COUNTING = ("pg_stat_statements",)


@dataclass(frozen=True)
class StatementCount:
    """Statements the job table ran between ``JobTableStatements.reset`` and ``read``, BEGIN and COMMIT included
    (each is a round trip; the pool's pings, empty queries, are not counted by Postgres), and the most frequent ones
    (calls, the statement's first words)."""

    statements: int
    top: list[tuple[int, str]]

    def per_batch(self, batches: int) -> str:
        return f"{self.statements} statements for {batches} batches, {self.statements / max(batches, 1):.1f} a batch"


class JobTableStatements:
    """Counts of the job table's statements from ``pg_stat_statements``; every client of the database is counted
    (the planner, the workers, the command's polls), so read it right after the job, before the bench's own
    queries."""

    def __init__(self, database_url: str) -> None:
        self.engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with self.engine.connect() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))

    def reset(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_statements_reset()"))

    def read(self) -> StatementCount:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT calls, query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_%' ORDER BY calls DESC"
                )
            ).all()
        top = [(int(calls), " ".join(query.split())[:70]) for calls, query in rows]
        return StatementCount(sum(calls for calls, _ in top), top[:12])

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass(frozen=True)
class CliRun:
    job_id: int
    #: Wall clock (epoch seconds) just before the command was started, and when it exited.
    started: float
    exited: float
    #: CPU seconds of the command's own process (user + system).
    cpu_s: float
    #: The fleet's planner planned the job (``workers.fleet.plan_server``), not the command.
    planned_by_fleet: bool


def run_cli(
    spec: dict[str, Any], env: dict[str, str], workdir: Path, deadline_s: float, *, plan_here: bool = False
) -> CliRun:
    """Run ``nsmigrate run SPEC --wait --new [--plan-here]`` with ``spec`` written to a file; returns its job id and
    times."""
    path = workdir / f"{spec['name']}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    log = workdir / f"{spec['name']}.cli.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    with open(log, "wb") as out:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "nsmigrate",
                "run",
                str(path),
                "--wait",
                "--new",
                *(["--plan-here"] if plan_here else []),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=deadline_s,
            check=False,
        )
    exited = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"`nsmigrate run` exited {proc.returncode}:\n{output[-3000:]}")
    job_id = next((int(line) for line in reversed(output.splitlines()) if line.strip().isdigit()), None)
    if job_id is None:
        raise RuntimeError(f"`nsmigrate run` printed no job id:\n{output[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return CliRun(job_id, started, exited, cpu, planned_by_fleet="(planned by the fleet)" in output)


def batches_of(db: jobs_database.Database, job_name: str) -> int:
    """The batches of the newest job named ``job_name``."""
    with db.transaction() as s:
        job_id = s.scalar(sa.select(sa.func.max(Job.id)).where(Job.name == job_name))
        return int(
            s.scalar(
                sa.select(sa.func.count())
                .select_from(Batch)
                .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
                .where(NamespaceRun.job_id == job_id)
            )
            or 0
        )


def job_clock(db: jobs_database.Database, job_id: int) -> tuple[float, float]:
    """(when the job's row was written, when its last batch finished), as epoch seconds."""
    with db.transaction() as s:
        created = s.scalar(sa.select(Job.created_at).where(Job.id == job_id))
        finished = s.scalar(
            sa.select(sa.func.max(Batch.finished_at))
            .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
            .where(NamespaceRun.job_id == job_id)
        )
    assert created is not None and finished is not None, f"job {job_id} has no finished batch"
    return float(created.timestamp()), float(finished.timestamp())


#: The steps of a job's timeline, in the order they happen, with what each is read from.
TIMELINE_STEPS = (
    ("command started", "`nsmigrate run` started (this process)"),
    ("spec submitted", "the command handed the spec to the fleet's planner (job_created event)"),
    ("spec parsed", "the planner validated the spec (job_created event)"),
    ("first store request", "planning sent its first store request (job_created event)"),
    ("plan done", "the plan and its checks done (job_created event)"),
    ("job row written", "jobs.created_at"),
    ("namespace checks done", "the namespaces with checks of their own checked (namespace_checks_done event)"),
    ("first batch recorded", "the first batch row, written as it is sent to be copied (batches.created_at)"),
    ("first batch started", "a worker claimed the first batch (batches.started_at)"),
    ("first write", "the target's data plane received the first upsert"),
    ("last write", "the target's data plane received the last upsert"),
    ("last batch done", "the last batch finished (batches.finished_at)"),
    ("command exited", "`nsmigrate run --wait` exited (this process)"),
)


def timeline(db: jobs_database.Database, cli: CliRun, target_stats: dict[str, Any]) -> dict[str, float | None]:
    """Each of ``TIMELINE_STEPS`` as seconds from the command's start (None: not recorded, e.g. a job planned by
    a version that kept no marks). ``target_stats``: the target index's ``/_sandbox/stats`` after the job, its
    request times counted from a reset before it."""
    with db.transaction() as s:
        created = s.scalar(sa.select(Job.created_at).where(Job.id == cli.job_id))
        detail = s.scalar(
            sa.select(Event.detail).where(Event.job_id == cli.job_id, Event.action == "job_created").limit(1)
        )
        checked = s.scalar(
            sa.select(Event.at).where(Event.job_id == cli.job_id, Event.action == "namespace_checks_done").limit(1)
        )
        first_row, first_start, last_done = s.execute(
            sa.select(sa.func.min(Batch.created_at), sa.func.min(Batch.started_at), sa.func.max(Batch.finished_at))
            .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
            .where(NamespaceRun.job_id == cli.job_id)
        ).one()
    planning = (detail or {}).get("planning", {})
    upserts = target_stats.get("request_times", {}).get("upsert", {})
    at: dict[str, float | None] = {
        "command started": cli.started,
        "spec submitted": planning.get("spec_submitted"),
        "spec parsed": planning.get("spec_parsed"),
        "first store request": planning.get("first_store_request"),
        "plan done": planning.get("plan_done"),
        "job row written": created.timestamp() if created else None,
        "namespace checks done": checked.timestamp() if checked else None,
        "first batch recorded": first_row.timestamp() if first_row else None,
        "first batch started": first_start.timestamp() if first_start else None,
        "first write": upserts.get("first"),
        "last write": upserts.get("last"),
        "last batch done": last_done.timestamp() if last_done else None,
        "command exited": cli.exited,
    }
    return {step: None if when is None else when - cli.started for step, when in at.items()}


def timeline_lines(
    title: str, timelines: list[dict[str, float | None]], labels: list[str], skip: tuple[str, ...] = ()
) -> list[str]:
    """The timelines side by side, a step a line (but those of ``skip``): seconds from the command's start, and what
    each is read from."""
    lines = [f"  {title}", f"    {'step':<22}" + "".join(f"{label:>9}" for label in labels) + "   read from"]
    for step, source in TIMELINE_STEPS:
        if step in skip:
            continue
        cells = "".join("        –" if t.get(step) is None else f"{t[step]:>9.3f}" for t in timelines)
        lines.append(f"    {step:<22}{cells}   {source}")
    return lines
