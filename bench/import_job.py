"""Benchmark: a ``strategy: import`` job (Pinecone's bulk import) verified end to end, beside the same data upserted
by the default ``strategy: fleet`` job, in one run.

The data plane of ``bench.fleet_vs_loop`` (each index its own process, 50 ms added per request, Pinecone's serverless
per-second limits enforced), an S3-compatible server (moto's, its own process) the import files go to and the target
index imports from, Redis, Postgres and the standing default fleet (``bench.fleet_vs_loop.FleetShape``). The source is
a data set of ``bench.peer_vs_fleet`` (``large`` unless told: 20,000 × 1,536 over 50 namespaces; ``many``'s 2,000
namespaces are past one import's 100) or ``--vectors N`` of the large set's shape. Per round, the order alternated,
each job started as a user starts it (``nsmigrate run SPEC --wait``, ``bench.user_clock.run_cli``), verification on
(counts, ids, every record's contents), into its own emptied index:

- import: the workers write the source as Parquet files, the target imports them (``POST /bulk/imports``), nsmigrate
  follows the import and verifies every namespace;
- fleet: list → fetch → upsert batches, then the same verification.

Printed: each job's user's clock (``run`` → its last verdict) and its steps (``STEPS``: files written, import started,
Pinecone's import created and finished, verified; the fleet's batches), the data-plane requests per index, the bytes
the job wrote (import files, upsert bodies), CPU, and what ``nsmigrate plan`` estimated for upsert and for import
(cost, bytes, time) next to what was measured. Exits 1 if an import job did not end verified, every record equal.

**The sandbox's import is short**: it takes about ``pace_s`` (the data plane's default, 1 s) plus the time to read the
files, where every Pinecone import takes at least 10 minutes. The output says so and shows the user's clock with
Pinecone's least time in place of the sandbox's.

    .venv/bin/python -m bench.import_job                      # the large set, 2 rounds
    .venv/bin/python -m bench.import_job --vectors 2000 --rounds 1   # a quick run

``BENCH_DEADLINE_S`` (600) bounds a job. Figures to read, never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.fleet_vs_loop import (
    LATENCY_MS,
    SERVER_LIMITS,
    DataPlane,
    FleetShape,
    _cpu_seconds,
    _wait_for_planner,
    _worker,
    load_source,
    stop_processes,
    warm_source,
)
from bench.peer_vs_fleet import PEER_DATA_SETS
from bench.user_clock import CliRun, run_cli
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.limits import IMPORT_MIN_S
from nsmigrate.orchestrator.models import Batch, Event, Job, NamespaceRun
from nsmigrate.orchestrator.states import RunState
from nsmigrate_sandbox.bulk_imports import ObjectStorage
from nsmigrate_sandbox.seed import SeedData, seed_dataset
from nsmigrate_sandbox.services import PostgresServer, RedisServer, free_port, wait_for_port
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, wait_for_workers

CONTENDERS = ("import", "fleet")
BUCKET = "nsmigrate-bench"
INTEGRATION_ID = "bench-integration"
#: The keys the workers write with and the target's integration reads with; the local server checks no signature.
KEY_ID, SECRET = "bench-key-id", "bench-secret"
STORAGE_KEYS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
#: The data plane's least time for an import unless told otherwise (``ObjectStorage.pace_s``), used here as it is.
SANDBOX_IMPORT_S = ObjectStorage("http://unused").pace_s
DEADLINE_S = float(os.environ.get("BENCH_DEADLINE_S", "600"))


class ObjectStore:
    """moto's S3-compatible server in a process of its own (its CPU counted apart), with the bench's bucket."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        with open(workdir / "object-storage.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        try:
            wait_for_port(port, 30, self.process)
            self.client().create_bucket(Bucket=BUCKET)
        except BaseException:
            self.stop()
            raise

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def delete(self, prefix: str) -> None:
        """Every object under ``prefix``: a round's files, so the server's memory does not grow round by round."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=item["Key"])

    def integration(self) -> dict[str, Any]:
        """What the target index imports with (``POST /_sandbox/object-storage``): no ``pace_s``, the sandbox's own."""
        keys = {"access_key_id": KEY_ID, "secret_access_key": SECRET}
        return {"endpoint_url": self.url, "integrations": {INTEGRATION_ID: keys}}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- what `nsmigrate plan` estimated ------------------------------------------------------------------------------

#: The plan's two lines comparing upsert and import (``orchestrator.planning.import_strategy.compare``), whitespace
#: made single spaces; each group a field of ``PlanEstimate``.
_UPSERT = re.compile(
    r"upsert: ≈(?P<upsert_units>\d+) write units ≈ (?P<upsert_usd>\S+) .*?≈(?P<upsert_s>\d+) s at the configured"
)
_IMPORT = re.compile(
    r"import: ≈(?P<import_size>[\d.]+ [KMGT]B) of (?P<import_format>\w+) files ≈ (?P<import_usd>\S+) "
    r"\(at \$(?P<usd_per_gb>[\d.]+) per GB\), ≈(?P<write_s>\d+) s to write them \(.*?\), then "
    r"Pinecone's import: at least (?P<least_min>\d+) min"
)


@dataclass(frozen=True)
class PlanEstimate:
    """What the plan of the import spec showed, as shown: upsert's write units, price and seconds at the budgets;
    import's file size and format, price (and its price per GB), seconds to write the files, Pinecone's least
    minutes."""

    upsert_units: str
    upsert_usd: str
    upsert_s: str
    import_size: str
    import_format: str
    import_usd: str
    usd_per_gb: str
    write_s: str
    least_min: str


def read_comparison(plan_output: str) -> PlanEstimate:
    """The comparison from ``nsmigrate plan``'s printed output; ValueError if it shows none."""
    text = " ".join(plan_output.split())
    upsert, imported = _UPSERT.search(text), _IMPORT.search(text)
    if upsert is None or imported is None:
        raise ValueError(f"`nsmigrate plan` showed no comparison of upsert and import:\n{plan_output[-2000:]}")
    return PlanEstimate(*upsert.groups(), *imported.groups())  # the groups in the fields' order


def run_plan(spec_path: Path, env: dict[str, str], *flags: str) -> str:
    """``nsmigrate plan SPEC`` as a user runs it (a wide terminal, so no line is wrapped); its output."""
    done = subprocess.run(
        [sys.executable, "-m", "nsmigrate", "plan", str(spec_path), *flags],
        env={**env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`nsmigrate plan` exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def plan_estimate(spec_path: Path, env: dict[str, str]) -> tuple[PlanEstimate, int]:
    """What ``nsmigrate plan`` estimates for the import spec, upsert beside import, and the upsert bodies' bytes
    (``plan --json``)."""
    estimate = json.loads(run_plan(spec_path, env, "--json"))["estimate"]
    return read_comparison(run_plan(spec_path, env)), int(estimate["bytes"])


# --- one job and what it took ---------------------------------------------------------------------------------------

#: The steps of a job, in order, with what each is read from; a contender shows those it has.
STEPS = (
    ("job row written", "jobs.created_at"),
    ("files: writing", "import_writing event"),
    ("files written", "the last import_files_written event"),
    ("import started", "import_started event"),
    ("Pinecone: created", "the import's createdAt (GET /bulk/imports/ID)"),
    ("Pinecone: finished", "the import's finishedAt"),
    ("import seen done", "import_imported event"),
    ("first batch started", "batches.started_at"),
    ("last write", "the target's data plane received the last upsert"),
    ("last batch done", "batches.finished_at"),
    ("first verdict", "the first verified event"),
    ("job verified", "the last verified event: the user's clock"),
    ("command exited", "`nsmigrate run --wait` exited"),
)


@dataclass
class Measured:
    """One job: its steps (seconds from the command's start), requests, bytes, CPU and what kept it from being
    verified (nothing: ``problems`` empty)."""

    contender: str
    steps: dict[str, float | None]
    #: Data-plane requests per index: operation → count (verification's included).
    requests: dict[str, dict[str, int]]
    worker_cpu_s: float
    #: CPU of the data plane, the object storage server, Redis and Postgres.
    services_cpu_s: float
    problems: list[str]
    #: What the job wrote: the import files' bytes (and how many files), or the fleet's upsert bodies' bytes.
    written_bytes: int = 0
    files: int | None = None

    @property
    def verified(self) -> bool:
        return not self.problems

    @property
    def user_s(self) -> float:
        return self.steps.get("job verified") or float("nan")

    def span(self, start: str, end: str) -> float | None:
        """Seconds from step ``start`` to step ``end`` (None: not both were taken)."""
        begun, ended = self.steps.get(start), self.steps.get(end)
        return None if begun is None or ended is None else ended - begun


def _at(when: datetime | str | None, started: float) -> float | None:
    """Seconds from ``started`` (epoch seconds) to ``when`` (a timestamp of the job table, or ISO text)."""
    when = datetime.fromisoformat(when) if isinstance(when, str) else when
    return None if when is None else when.timestamp() - started


def job_steps(
    db: jobs_database.Database, cli: CliRun, target: dict[str, Any], pinecone: dict[str, Any]
) -> dict[str, float | None]:
    """``STEPS`` of job ``cli.job_id`` as seconds from the command's start (None: not a step of this job).
    ``target``: the target index's ``/_sandbox/stats``; ``pinecone``: its import as ``GET /bulk/imports/ID`` says."""
    job_id, started = cli.job_id, cli.started
    with db.transaction() as s:
        created = s.scalar(sa.select(Job.created_at).where(Job.id == job_id))
        events = s.execute(
            sa.select(Event.action, sa.func.min(Event.at), sa.func.max(Event.at))
            .where(Event.job_id == job_id)
            .group_by(Event.action)
        ).all()
        first_start, last_done = s.execute(
            sa.select(sa.func.min(Batch.started_at), sa.func.max(Batch.finished_at))
            .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
            .where(NamespaceRun.job_id == job_id)
        ).one()
    first = {action: low for action, low, _ in events}
    last = {action: high for action, _, high in events}
    upserts = target.get("request_times", {}).get("upsert", {})
    return {
        "job row written": _at(created, started),
        "files: writing": _at(first.get("import_writing"), started),
        "files written": _at(last.get("import_files_written"), started),
        "import started": _at(first.get("import_started"), started),
        "Pinecone: created": _at(pinecone.get("createdAt"), started),
        "Pinecone: finished": _at(pinecone.get("finishedAt"), started),
        "import seen done": _at(first.get("import_imported"), started),
        "first batch started": _at(first_start, started),
        "last write": None if upserts.get("last") is None else upserts["last"] - started,
        "last batch done": _at(last_done, started),
        "first verdict": _at(first.get("verified"), started),
        "job verified": _at(last.get("verified"), started),
        "command exited": cli.exited - started,
    }


def verdicts(db: jobs_database.Database, job_id: int, data: SeedData) -> list[str]:
    """What keeps job ``job_id`` from being verified with every record equal: a run not verified, a namespace of the
    source without a run, a report that compared fewer contents than the source holds; [] when none."""
    with db.transaction() as s:
        runs: dict[str, Any] = dict(
            s.execute(
                sa.select(NamespaceRun.source_namespace, NamespaceRun.verification).where(
                    NamespaceRun.job_id == job_id, NamespaceRun.state == RunState.VERIFIED
                )
            ).all()
        )
    problems = []
    for ns, n in ((ns, n) for ns, n in data.counts.items() if n):
        report, name = runs.get(ns), ns or "__default__"
        if report is None:
            problems.append(f"namespace {name} is not verified")
        elif report["content_mode"] != "all" or report["content_checked"] != n or report["content_mismatch_count"]:
            problems.append(f"namespace {name}: {report['summary']}, the source holds {n}")
    return problems


def written(db: jobs_database.Database, job_id: int) -> tuple[int, int | None]:
    """(bytes, files) job ``job_id`` wrote: its import files (its import_files_written events), or, for a job that
    wrote none, its batches' upsert bodies (files None)."""
    with db.transaction() as s:
        details = s.scalars(
            sa.select(Event.detail).where(Event.job_id == job_id, Event.action == "import_files_written")
        ).all()
        upserted = s.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Batch.bytes), 0))
            .join(NamespaceRun, Batch.run_id == NamespaceRun.id)
            .where(NamespaceRun.job_id == job_id)
        )
    if not details:
        return int(upserted or 0), None
    return sum(int(d.get("bytes", 0)) for d in details), sum(int(d.get("files", 0)) for d in details)


def pinecone_import(host: str) -> dict[str, Any]:
    """The latest import of the index at ``host`` as it describes it ({}: none since the index was reset)."""
    request = urllib.request.Request(f"{host}/bulk/imports", headers={"Api-Key": SANDBOX_API_KEY})
    with urllib.request.urlopen(request) as answer:
        return dict((json.loads(answer.read())["data"] or [{}])[-1])


def job_id_named(db: jobs_database.Database, name: str) -> int | None:
    with db.transaction() as s:
        return s.scalar(sa.select(sa.func.max(Job.id)).where(Job.name == name))


# --- the run --------------------------------------------------------------------------------------------------------


@dataclass
class Stand:
    """What every job of a run uses: the data plane (source, one target per contender), the object storage, the
    standing fleet and the job table."""

    data: SeedData
    plane: DataPlane
    store: ObjectStore
    workers: list[subprocess.Popen[bytes]]
    services: list[subprocess.Popen[bytes]]
    db: jobs_database.Database
    env: dict[str, str]
    workdir: Path
    shape: FleetShape

    def spec(self, contender: str, name: str) -> dict[str, Any]:
        """The job of ``contender``: the whole source into its own index, verification on (the spec's defaults)."""
        spec: dict[str, Any] = {
            "name": name,
            "source": {"kind": "pinecone", "host": self.plane.hosts["src"]},
            "target": {"kind": "pinecone", "host": self.plane.hosts[contender]},
        }  # no `rate`: the spec's defaults
        if contender == "import":
            uri = f"s3://{BUCKET}/imports"
            spec["strategy"] = "import"
            spec["import"] = {"uri": uri, "integration_id": INTEGRATION_ID, "endpoint_url": self.store.url}
        else:  # the fleet's shape of bench.peer_vs_fleet
            spec.update(
                max_batches_in_flight=64, batch_size=self.shape.batch_size, parallel_upserts=self.shape.parallel_upserts
            )
        return spec

    def requests(self) -> dict[str, dict[str, int]]:
        return {index: dict(self.plane.admin(index, "/_sandbox/stats")["requests"]) for index in self.plane.hosts}

    def run(self, contender: str, name: str) -> Measured:
        """One job of ``contender`` into its emptied index, started as a user starts it, and what it took."""
        self.plane.admin(contender, "/_sandbox/reset", {})
        requests_before = self.requests()
        worker_cpu, services_cpu = _cpu_seconds(self.workers), _cpu_seconds(self.services)
        cli: CliRun | None = None
        problems = []
        try:
            cli = run_cli(self.spec(contender, name), self.env, self.workdir, DEADLINE_S)
        except RuntimeError as e:  # the command failed (a job not verified): what was measured is still shown
            problems.append(str(e).splitlines()[0])
        measured = Measured(
            contender,
            steps={},
            requests=_requests_since(requests_before, self.requests()),
            worker_cpu_s=_cpu_seconds(self.workers) - worker_cpu,
            services_cpu_s=_cpu_seconds(self.services) - services_cpu,
            problems=problems,
        )
        job_id = cli.job_id if cli is not None else job_id_named(self.db, name)
        if job_id is None:
            return measured
        measured.problems += verdicts(self.db, job_id, self.data)
        measured.written_bytes, measured.files = written(self.db, job_id)
        if cli is not None:
            pinecone = pinecone_import(self.plane.hosts[contender]) if contender == "import" else {}
            measured.steps = job_steps(self.db, cli, self.plane.admin(contender, "/_sandbox/stats"), pinecone)
        self.store.delete("imports/")
        return measured


def _requests_since(before: dict[str, dict[str, int]], now: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Requests per index and operation between two readings (none left out but those that did not move)."""
    return {
        index: {op: n - before[index].get(op, 0) for op, n in ops.items() if n > before[index].get(op, 0)}
        for index, ops in now.items()
    }


# --- the report -----------------------------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _steps_table(rounds: dict[str, list[Measured]]) -> list[str]:
    """Every step any job had, a column a job (its contender and round), seconds from `nsmigrate run`."""
    jobs = [(f"{contender} {n + 1}", m) for contender, measured in rounds.items() for n, m in enumerate(measured)]
    lines = [f"    {'step':<21}" + "".join(f"{label:>10}" for label, _ in jobs) + "   read from"]
    for step, source in STEPS:
        cells = [m.steps.get(step) for _, m in jobs]
        if all(c is None for c in cells):
            continue
        lines.append(
            f"    {step:<21}" + "".join("         –" if c is None else f"{c:>10.2f}" for c in cells) + f"   {source}"
        )
    return lines


def _requests_line(measured: Measured) -> str:
    def ops(index: str) -> str:
        done = measured.requests.get(index, {})
        return ", ".join(f"{op} {n}" for op, n in sorted(done.items())) or "none"

    return f"    {measured.contender:<8}source: {ops('src')}; target: {ops(measured.contender)}"


def report(data: SeedData, label: str, plan: tuple[PlanEstimate, int], rounds: dict[str, list[Measured]]) -> list[str]:
    user = {contender: [m.user_s for m in measured] for contender, measured in rounds.items()}
    pairs = sorted(a / b for a, b in zip(user["import"], user["fleet"], strict=True))
    lines = [
        f"{label} ({data.total}×{data.dimension}, {sum(1 for n in data.counts.values() if n)} namespaces), "
        f"{len(pairs)} round(s), import and fleet alternated, each verified (counts, ids, every record's contents)",
        "  user's clock, `nsmigrate run` → job verified (median; each round):",
    ]
    for contender, seconds in user.items():
        each = ", ".join(f"{s:.2f}" for s in seconds)
        lines.append(f"    {contender:<8}{statistics.median(seconds):>8.2f} s   ({each})")
    lines += [
        f"    import ÷ fleet: {statistics.median(pairs):.2f}× ({pairs[0]:.2f}–{pairs[-1]:.2f}; > 1: the import took "
        "longer)",
        "  steps, seconds from `nsmigrate run`:",
        *_steps_table(rounds),
        "  data-plane requests of the first round (verification's included):",
        *(_requests_line(measured[0]) for measured in rounds.values()),
    ]
    for contender, measured in rounds.items():
        lines.append(
            f"  CPU s, median: {contender} workers {_median([m.worker_cpu_s for m in measured]):.1f}, data plane + "
            f"object storage + Redis + Postgres {_median([m.services_cpu_s for m in measured]):.1f}"
        )
    return lines + plan_against_measured(plan, rounds, len([n for n in data.counts.values() if n]))


def plan_against_measured(
    estimate: tuple[PlanEstimate, int], rounds: dict[str, list[Measured]], namespaces: int
) -> list[str]:
    """What `nsmigrate plan` of the import spec estimated for upsert and for import, next to what was measured."""
    plan, upsert_bytes = estimate
    imported, fleet = rounds["import"], rounds["fleet"]
    verified_import, verified_fleet = _median([m.user_s for m in imported]), _median([m.user_s for m in fleet])
    sandbox_s = _median([m.span("Pinecone: created", "Pinecone: finished") for m in imported])
    writing_s = _median([m.span("files: writing", "files written") for m in imported])
    files, size = imported[0].files, imported[0].written_bytes
    rows = [
        ("upsert", "cost", f"≈{plan.upsert_units} write units ≈ {plan.upsert_usd}", "– (the data plane meters none)"),
        ("", "bytes", f"≈{_mb(upsert_bytes)} of upsert bodies", f"{_mb(fleet[0].written_bytes)} (its batches)"),
        (
            "",
            "time",
            f"≈{plan.upsert_s} s at the budgets",
            f"`run` → last batch {_seconds(_median([m.steps.get('last batch done') for m in fleet]))}, "
            f"→ verified {_seconds(verified_fleet)}",
        ),
        (
            "import",
            "cost",
            f"≈{plan.import_size} of {plan.import_format} ≈ {plan.import_usd}",
            f"{_mb(size)} in {files} files ≈ ${size / 1e9 * float(plan.usd_per_gb):.2f} (at ${plan.usd_per_gb} per GB)",
        ),
        (
            "",
            "writing",
            f"≈{plan.write_s} s to write",
            f"{_seconds(writing_s)} ({namespaces} namespaces, NSMIGRATE_IMPORT_WRITE_THREADS at once in one task)",
        ),
        ("", "import", f"at least {plan.least_min} min", f"{_seconds(sandbox_s)} in the sandbox (below)"),
        ("", "time", f"≥ {plan.write_s} s + {plan.least_min} min", f"`run` → verified {_seconds(verified_import)}"),
    ]
    lines = [
        "  `nsmigrate plan` of the import spec against what was measured (median):",
        f"    {'':<8}{'':<9}{'plan':<36}measured",
        *(f"    {a:<8}{b:<9}{c:<36}{d}" for a, b, c, d in rows),
    ]
    if sandbox_s is not None and verified_import is not None and verified_fleet:
        real = verified_import - sandbox_s + IMPORT_MIN_S
        lines += [
            f"  THE SANDBOX SHORTENS THE IMPORT: it took {sandbox_s:.2f} s (the data plane's pace_s, "
            f"{SANDBOX_IMPORT_S:g} s, and reading the files); each Pinecone import takes at least "
            f"{IMPORT_MIN_S / 60:.0f} min.",
            f"    with Pinecone's least time in its place the import job's user's clock is ≥ {real:.0f} s, "
            f"≥ {real / verified_fleet:.0f}× the fleet's {verified_fleet:.2f} s on this data",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sets = ["seed", "large"]  # `many`: its 2,000 namespaces are past one import's
    parser.add_argument("--set", default="large", choices=sets, help="the source data set (large)")
    parser.add_argument("--vectors", type=int, help="the large set's shape with this many vectors instead")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each one import job and one fleet job (2)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or (args.vectors is not None and args.vectors < 1):
        parser.error("--rounds and --vectors must be ≥ 1")
    if args.vectors is None:
        data, label = seed_dataset(**PEER_DATA_SETS[args.set]), args.set
    else:
        data, label = seed_dataset(**{**PEER_DATA_SETS["large"], "n_vectors": args.vectors}), "the large set's shape"
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="import-bench-"))  # kept only if a run goes wrong: its logs
    rounds: dict[str, list[Measured]] = {contender: [] for contender in CONTENDERS}
    shape = FleetShape()
    with contextlib.ExitStack() as stack:
        redis, pg = stack.enter_context(RedisServer()), stack.enter_context(PostgresServer())
        keys = {"NSMIGRATE_DATABASE_URL": pg.url, "NSMIGRATE_REDIS_URL": redis.url, "PINECONE_API_KEY": SANDBOX_API_KEY}
        env = {**os.environ, **keys, **STORAGE_KEYS}
        plane = DataPlane(data.dimension, tmp, (data.total * data.dimension * 13) >> 20, ("src", *CONTENDERS))
        stack.callback(plane.stop)
        store = ObjectStore(tmp)
        stack.callback(store.stop)
        workers = [_worker(env, "list,verify", shape.list_pool, shape.list_concurrency, "list0", tmp)]
        workers += [
            _worker(env, "copy", shape.copy_pool, shape.copy_concurrency, f"copy{n}", tmp)
            for n in range(shape.copy_workers)
        ]
        stack.callback(stop_processes, workers)
        services = [*plane.procs, store.process, *(p for p in (redis.process, pg.process) if p is not None)]
        db = jobs_database.Database(pg.url)
        stack.callback(db.dispose)
        stand = Stand(data, plane, store, workers, services, db, env, tmp, shape)
        plane.admin("import", "/_sandbox/object-storage", store.integration())
        load_source(plane, data)
        warm_source(plane, data)
        plane.set_faults(latency_ms=LATENCY_MS, **SERVER_LIMITS)
        (tmp / "plan.yaml").write_text(json.dumps(stand.spec("import", "import-bench-plan")))
        plan = plan_estimate(tmp / "plan.yaml", env)
        wait_for_workers(redis.url, len(workers))  # the fleet stands before the user types `run`
        _wait_for_planner(redis.url)
        for n in range(args.rounds):
            for contender in CONTENDERS if n % 2 == 0 else reversed(CONTENDERS):
                measured = stand.run(contender, f"import-bench-{contender}-{n}")
                rounds[contender].append(measured)
                verdict = "verified" if measured.verified else "NOT VERIFIED: " + "; ".join(measured.problems[:3])
                print(f"  round {n + 1}: {contender} {measured.user_s:.2f} s, {verdict}", file=sys.stderr, flush=True)
    loads = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(load_before, os.getloadavg(), strict=True))
    print(
        f"\nlocal Pinecone data plane, {LATENCY_MS} ms added per request, serverless limits enforced; object storage: "
        f"moto's S3 server; fleet: {shape.describe()}; {os.cpu_count()} cores, load averages 1/5/15 min "
        f"before/after: {loads}"
    )
    print("\n".join(report(data, label, plan, rounds)))
    failed = [m for m in rounds["import"] if not m.verified]
    for m in failed:
        print(f"AN IMPORT JOB DID NOT END VERIFIED: {'; '.join(m.problems)}")
    if not failed:
        shutil.rmtree(tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
