"""The long-running processes: a ``worker`` (Celery) and ``flower`` (its monitor)."""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer
from celery import Celery
from celery.concurrency import get_implementation
from celery.platforms import EX_FAILURE
from celery.signals import worker_shutting_down
from celery.utils.log import mlevel
from celery.utils.nodenames import default_nodename, host_format
from rich.markup import escape

from nsmigrate.cli.console import EXIT_INTERRUPTED, err_console
from nsmigrate.cli.options import DatabaseOpt, RedisOpt, check_redis_credentials, db, fail, settings
from nsmigrate.orchestrator.messaging.task_names import Queue
from nsmigrate.orchestrator.settings import TASK_SLOTS_ENV
from nsmigrate.workers import eviction_policy, metrics
from nsmigrate.workers.fleet import json_logs
from nsmigrate.workers.fleet.app import configure
from nsmigrate.workers.fleet.tuning import ThreadPool

app = typer.Typer(add_completion=False)

#: The Celery pools `nsmigrate worker` runs: processes or threads (gevent/eventlet would need monkey-patching).
WORKER_POOLS = ("prefork", "threads")
#: The log levels `nsmigrate worker --loglevel` takes (Celery's; any case).
WORKER_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Tasks `nsmigrate flower` keeps in memory by default: its memory stays bounded however many namespaces a job has.
FLOWER_MAX_TASKS = 10_000

#: The task list's columns: kwargs name the job, batch and namespace; the exception says why a task failed, the result
#: what it copied and what it cost. The uuid (its link opens the task's page) is long: last, where the table scrolls.
FLOWER_TASK_COLUMNS = "name,state,kwargs,exception,result,runtime,received,worker,uuid"

#: How long `nsmigrate flower` waits by default for a worker to answer before starting Flower.
FLOWER_WAIT_FOR_WORKERS_S = 20.0


def worker_answers(celery_app: Celery, within_s: float) -> bool:
    """Whether a worker answers a ping within ``within_s`` seconds (asked again each second until then)."""
    deadline = time.monotonic() + within_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if celery_app.control.ping(timeout=min(1.0, left)):
            return True


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Comma-separated: list,copy,verify,cleanup.")
    ] = "list,copy,verify,cleanup",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Tasks at once in this worker.")] = 8,
    pool: Annotated[
        str,
        typer.Option(
            help="prefork (default: one process per task slot, so a crash in a native library costs one task, which "
            "is redelivered at once) or threads (one process: far less CPU per task for the I/O-bound list and copy "
            "queues, measured in bench/; run one copy worker per core; a crash takes the whole worker down and its "
            "tasks wait out the visibility timeout)."
        ),
    ] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.")] = "INFO",
    log_format: Annotated[
        str | None,
        typer.Option(
            help="text (Celery's lines) or json: one JSON object per line with the job, namespace, batch and run of "
            "the task that logged it, and no start-up banner (the manual: Logs). Default: $NSMIGRATE_LOG_FORMAT, "
            "else text.",
            show_default=False,
        ),
    ] = None,
    hostname: Annotated[
        str | None,
        typer.Option(
            help="Worker node name (default nsmigrate-<queues>-<pool>-<concurrency>@host, e.g. "
            "nsmigrate-copy-threads-8@host: Flower's Workers page shows what each pool is at a glance)."
        ),
    ] = None,
    planner: Annotated[
        bool | None,
        typer.Option(
            "--planner/--no-planner",
            help="Also plan and start the jobs `nsmigrate run` and `plan` hand to the fleet (a thread of this "
            "worker's main process; the command then starts in a fraction of the time). Default: on for a worker "
            "consuming the list queue.",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve the worker's Prometheus metrics (store requests by outcome, rate-budget waits, retries, "
            "batches, vectors, verifications) on http://127.0.0.1:PORT/metrics (README: Metrics). Off by default. A "
            "prefork pool needs PROMETHEUS_MULTIPROC_DIR: an empty directory its processes write their counts to.",
        ),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option(help="Address the metrics are served on (0.0.0.0 inside a container).")
    ] = "127.0.0.1",
    database_url: DatabaseOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Run a worker consuming the given queues (one pool per queue in production)."""
    resolved = settings(database_url, redis_url)
    unknown = [q for q in queues.split(",") if q not in {x.value for x in Queue}]
    if unknown:
        raise fail(f"unknown queue(s) {unknown}: choose from {[q.value for q in Queue]}")
    if pool not in WORKER_POOLS:
        raise fail(f"unknown --pool {pool!r}: choose prefork or threads")
    if loglevel.upper() not in WORKER_LOG_LEVELS:
        raise fail(f"unknown --loglevel {loglevel!r}: choose one of {', '.join(WORKER_LOG_LEVELS)}")
    log_format = log_format or resolved.log_format
    if log_format not in ("text", "json"):
        raise fail(f"unknown --log-format {log_format!r}: choose text or json")
    if metrics_port is not None and pool == "prefork" and not os.environ.get(metrics.MULTIPROC_DIR_ENV):
        raise fail(
            f"--metrics-port with --pool prefork needs {metrics.MULTIPROC_DIR_ENV}: set it to an empty directory "
            "the pool's processes can write their counts to (or use --pool threads)"
        )
    check_redis_credentials(resolved.redis_url)
    refusal, warning = eviction_policy.check(resolved.redis_url)
    if refusal is not None:
        raise fail(refusal)
    if warning is not None:
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}")
    # Workers read their settings from the environment in each process: hand the resolved ones down.
    os.environ["NSMIGRATE_DATABASE_URL"] = resolved.database_url
    os.environ["NSMIGRATE_REDIS_URL"] = resolved.redis_url
    os.environ[TASK_SLOTS_ENV] = str(concurrency if pool == "threads" else 1)
    db(resolved).dispose()  # create/upgrade the schema once, before any task runs (clear error if unreachable)
    celery_app = configure(resolved, planner=planner if planner is not None else "list" in queues.split(","))
    if log_format == "json":
        json_logs.use_json_logs(mlevel(loglevel.upper()))
    name = hostname or f"nsmigrate-{queues.replace(',', '-')}-{pool}-{concurrency}@%h"
    if metrics_port is not None:
        # Started before the pool forks: the main process serves the sum of every pool process's counts.
        try:
            metrics.serve_fleet(metrics_port, metrics_address)
        except OSError as e:
            raise fail(
                f"--metrics-port {metrics_port}: cannot serve on {metrics_address} ({e.strerror}); choose a free port"
            ) from e
    # Celery's own worker object, as `celery worker` builds it, without loading Celery's command line: that imports
    # every celery subcommand and its plugins (Flower, Tornado, prompt_toolkit), ~0.15 CPU-s of every worker start
    # that the worker never uses (bench/README.md: Worker start-up).
    controller = celery_app.Worker(
        hostname=host_format(default_nodename(name)),
        pool_cls=ThreadPool if pool == "threads" else get_implementation(pool),
        loglevel=mlevel(loglevel.upper()),
        concurrency=concurrency,
        queues=queues.split(","),
        without_mingle=True,
        without_gossip=True,
        heartbeat_interval=resolved.worker_heartbeat_s,
        quiet=log_format == "json",  # the banner is text: a log of JSON lines has none
    )
    stopped_by: list[str] = []  # the signals that asked the worker to stop (Celery's worker_shutting_down)
    worker_shutting_down.connect(lambda sig, **_: stopped_by.append(sig), weak=False)
    controller.start()
    raise typer.Exit(worker_exit_code(controller.exitcode, stopped_by))


def worker_exit_code(celery_exit_code: int | None, stopped_by: list[str]) -> int:
    """The worker's exit code: Celery's (0 after a warm shutdown asked with SIGTERM, non-zero when it stopped on an
    error, so that a supervisor restarting on failure restarts it), except after Ctrl-C: 130, as for every command
    Ctrl-C stops (Celery says 1, as for an error, after the same warm shutdown)."""
    if stopped_by and stopped_by[0] == "SIGINT" and celery_exit_code == EX_FAILURE:
        return EXIT_INTERRUPTED
    return celery_exit_code or 0


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="Port to serve Flower on.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to bind (keep it local or behind a proxy).")] = "127.0.0.1",
    max_tasks: Annotated[
        int,
        typer.Option(
            min=1,
            help="Tasks Flower keeps in memory, the oldest forgotten first (Flower's own default, 100,000, holds a "
            "job of tens of thousands of namespaces: its memory grows with the job). The job table keeps every "
            "batch whatever Flower forgets.",
        ),
    ] = FLOWER_MAX_TASKS,
    wait_for_workers_s: Annotated[
        float,
        typer.Option(
            "--wait-for-workers",
            min=0,
            help="Seconds to wait, before Flower starts, for a worker to answer (0: start at once). Flower asks the "
            "workers for their pools and queues once at start and warns about every question nobody answered; "
            "workers started together with it get the time to come up.",
        ),
    ] = FLOWER_WAIT_FOR_WORKERS_S,
    redis_url: RedisOpt = None,
) -> None:
    """Run Flower (task monitor) with basic auth: user $NSMIGRATE_FLOWER_USER (admin), password from the env var
    named by NSMIGRATE_FLOWER_PASSWORD_ENV (default NSMIGRATE_FLOWER_PASSWORD).

    Its task list shows each task's kwargs (job, namespace, batch), result (vectors, requests, 429/5xx answers,
    retries, waits, seconds) and exception; search e.g. `kwargs:job_id=7` with the Failed filter for a job's
    failures."""
    resolved = settings(None, redis_url)
    password = os.environ.get(resolved.flower_password_env)
    if not password:
        raise fail(f"Flower needs a password: set {resolved.flower_password_env} (basic auth is always on)")
    # Flower reads basic auth from its env var, which keeps the password off the command line (ps, /proc).
    check_redis_credentials(resolved.redis_url)
    os.environ["FLOWER_BASIC_AUTH"] = f"{resolved.flower_user}:{password}"
    celery_app = configure(resolved)
    if not worker_answers(celery_app, wait_for_workers_s):
        err_console.print(
            f"no worker answered within {wait_for_workers_s:g} s: Flower starts without their pools and queues "
            "(its Workers page has them once a worker is up and you refresh it)"
        )
    celery_app.start(
        [
            "flower",
            f"--port={port}",
            f"--address={address}",
            "--persistent=False",
            f"--max_tasks={max_tasks}",
            f"--tasks_columns={FLOWER_TASK_COLUMNS}",
            # Flower would broadcast `enable_events` to every worker every 5 s, waking each of them; ours send task
            # events from their start (orchestrator.messaging.dispatch.celery_config).
            "--enable_events=False",
        ]
    )
