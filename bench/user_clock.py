"""The user's clock: a job started as a user starts it, ``nsmigrate run SPEC --wait`` in its own process.

Measured from the moment before the command is started (its interpreter, imports, planning, writing the job table and
enqueueing included) to the job's last batch as the job table records it. The job's own clock runs from its row in
the job table (``jobs.created_at``) to the same last batch, so the difference is what the user waits before the job
exists: start-up and planning.
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

from orchestrator import jobs
from orchestrator.models import Batch, Job, NamespaceRun


@dataclass(frozen=True)
class CliRun:
    job_id: int
    #: Wall clock (epoch seconds) just before the command was started, and when it exited.
    started: float
    exited: float
    #: CPU seconds of the command's own process (user + system).
    cpu_s: float
    #: The fleet's planner planned the job (``workers.plan_server``), not the command.
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
            [sys.executable, "-m", "cli", "run", str(path), "--wait", "--new", *(["--plan-here"] if plan_here else [])],
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


def job_clock(db: jobs.Database, job_id: int) -> tuple[float, float]:
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
