"""What every demo scenario does around its own story: start the embedded stack (Redis, Postgres with pgvector, the
local Pinecone data plane) and a worker pool (with ``--keep``, also the workers' metrics, Flower and the job pages of
`nsmigrate metrics`, to look around in once the scenario is done); point a shipped spec at the sandbox; run a job to
its end with live progress; and stop everything, however the demo ends."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from pinecone import Index, Pinecone

from nsmigrate.cli import waits
from nsmigrate.cli.console import console
from nsmigrate.cli.fleet import open_control, open_store
from nsmigrate.cli.render import job_reader, print_plan, watch_job, woken_by
from nsmigrate.cli.run import before_the_job
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.planning.summary import summarize
from nsmigrate.orchestrator.redaction import redact_url
from nsmigrate.orchestrator.settings import Settings, load_settings
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate.orchestrator.spec.jobspec import JobSpec, load_spec
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.services import free_port
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack, start_stack

#: How long a demo watches its job settle at most.
JOB_TIMEOUT_S = 600


@dataclass(frozen=True)
class DemoOptions:
    keep: bool = False  # hold the stack (and Flower) open until Ctrl-C after the scenario
    copy_concurrency: int = 8  # copy worker processes


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    code: int  # 0: the job settled as its spec asks (verified, when it auto-verifies)
    elapsed_s: float  # from launch to settled
    status: JobStatus
    spec: JobSpec


@dataclass(frozen=True)
class Watching:
    """Where a kept demo (``--keep``) can be watched: Flower, the job pages and each worker's metrics."""

    flower_url: str
    #: `nsmigrate metrics`: the job pages (``/jobs/N``) and the job table's gauges (``/metrics``).
    pages_url: str
    #: Each worker's ``/metrics``.
    worker_metrics: list[str]
    password: str  # one login (user admin) for Flower and the pages

    def addresses(self, job_id: int | None = None) -> str:
        """Flower, the job's page (the pages), the metrics; one login for Flower and the pages."""
        page = f"{self.pages_url}/jobs/{job_id}" if job_id is not None else self.pages_url
        metrics = " ".join([f"{self.pages_url}/metrics", *self.worker_metrics])
        return (
            f"Flower {self.flower_url}, job page {page} (both: user admin, password {self.password}); metrics {metrics}"
        )


@dataclass
class DemoStack:
    """The running stack of one demo, with the job table open."""

    stack: Stack
    settings: Settings
    db: jobs_database.Database
    #: None unless the demo is kept (``--keep``): a demo that stops when its scenario ends starts no Flower, no
    #: pages and no metrics servers, which nobody could open before they were gone, and whose start-up cost CPU
    #: the scenario needs.
    watching: Watching | None

    def where_to_watch(self, job_id: int | None = None) -> str:
        """Where to watch the stack (with ``--keep``), or how to keep it up to look around."""
        if self.watching is None:
            return "`nsmigrate demo --keep` holds the stack open after the scenario, with Flower and the job pages"
        self.stack.wait_for_servers()  # started with the workers: up before they are shown
        return self.watching.addresses(job_id)

    def write_spec(self, spec_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        """The shipped spec at ``spec_path`` with its Pinecone stores pointed at the sandbox's control plane (and
        whatever ``edit`` changes in it), written into the demo's work directory."""
        data = load_yaml(spec_path.read_text(), str(spec_path))
        for role in ("source", "target"):
            if data[role].get("kind", "pinecone") == "pinecone":
                data[role]["control_host"] = self.stack.pinecone.control_host
        if edit is not None:
            edit(data)
        spec_file = self.stack.workdir / spec_path.name
        spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
        return spec_file

    def run_job(self, spec_file: Path, on_launch: Callable[[int], None] | None = None) -> JobOutcome:
        """Plan and launch the job of ``spec_file``, watch it until it settles, and return how it ended;
        ``on_launch(job_id)`` runs once the job is launched, before the watching."""
        spec = load_spec(spec_file)
        clock: list[float] = []

        def show_plan_first(prepared: Prepared) -> list[tuple[str, dict[str, Any]]]:
            print_plan(summarize(prepared))
            clock.append(time.monotonic())
            return before_the_job(prepared, self.settings.database_url)

        job_id = launch.start_or_resume(
            self.db,
            Dispatcher(self.settings),
            spec,
            open_store,
            spec_file.parent,
            open_control,
            new=True,
            before_write=show_plan_first,
            settings=self.settings,
        ).job_id
        started = clock[0]
        if on_launch is not None:
            on_launch(job_id)
        console.print(f"job {job_id} started; watch it: {self.where_to_watch(job_id)}")
        with woken_by(self.settings.redis_url, job_id) as wakes:
            until = waits.settled(self.db, job_id)
            code = watch_job(job_reader(self.db, job_id), job_id, until, timeout_s=JOB_TIMEOUT_S, wakes=wakes)
        return JobOutcome(job_id, code, time.monotonic() - started, jobs_status.job_status(self.db, job_id), spec)

    def index(self, name: str) -> Index:
        """A real SDK client of sandbox index ``name``."""
        return cast(Index, Pinecone(api_key=SANDBOX_API_KEY).Index(host=self.stack.pinecone.host(name)))

    def hold(self) -> None:
        """Keep everything running until Ctrl-C, saying how to reach it."""
        console.print(
            f"[bold]running until Ctrl-C[/]: {self.where_to_watch()}; NSMIGRATE_DATABASE_URL="
            f"{redact_url(self.settings.database_url)} NSMIGRATE_REDIS_URL={redact_url(self.settings.redis_url)}"
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@contextmanager
def demo_stack(
    indexes: list[IndexSpec], options: DemoOptions, *, freshness_lag_s: float | None = None
) -> Iterator[DemoStack]:
    """Start the stack with ``indexes`` in the local data plane (its reads lagging writes by ``freshness_lag_s``; None:
    by the service's lag), a
    control worker (list, verify, cleanup) and a copy worker (with ``--keep``: serving their metrics, and Flower and
    the job pages); stop all of it on the way out (``--keep`` holds it open first)."""
    console.print(
        "starting Redis, Postgres (pgvector), the local Pinecone data plane, workers"
        + (" and Flower …" if options.keep else " …")
    )
    stack = start_stack(indexes, freshness_lag_s=freshness_lag_s)
    try:
        # The CLI's own code in this process (plan, launch, status) reads the same settings the workers get.
        os.environ.update({k: v for k, v in stack.env().items() if k.startswith(("NSMIGRATE_", "PINECONE_"))})
        watching = _start_workers(stack, options)
        settings = load_settings()
        demo = DemoStack(stack, settings, jobs_database.Database(settings.database_url), watching)
        try:
            yield demo
            if options.keep:
                demo.hold()
        finally:
            demo.db.dispose()
    finally:
        stack.stop()


def _start_workers(stack: Stack, options: DemoOptions) -> Watching | None:
    """The two worker pools; with ``--keep``, each serving its metrics, and Flower and the job pages: where to
    watch them."""
    pools = (("list,verify,cleanup", 4, "control"), ("copy", options.copy_concurrency, "copy"))
    if not options.keep:
        for queues, concurrency, name in pools:
            stack.start_worker(queues, concurrency, name=name)
        return None
    worker_metrics = []
    for queues, concurrency, name in pools:
        port, counts = free_port(), stack.workdir / f"metrics-{name}"
        counts.mkdir()  # each prefork worker sums its own processes' counts
        metrics_args = ("--metrics-port", str(port))
        stack.start_worker(queues, concurrency, name=name, args=metrics_args, PROMETHEUS_MULTIPROC_DIR=str(counts))
        worker_metrics.append(f"http://127.0.0.1:{port}/metrics")
    # Not waited for here: they start while the scenario loads its data and plans its job (Flower waits for a
    # worker to answer before it listens); `where_to_watch` waits before it shows the addresses.
    flower_url = stack.start_flower(wait=False)
    password = stack.flower_password or ""  # set by start_flower; the pages share Flower's login
    pages_url = f"http://127.0.0.1:{stack.serve('metrics', NSMIGRATE_FLOWER_PASSWORD=password, wait=False)}"
    return Watching(flower_url, pages_url, worker_metrics, password)
