"""``nsmigrate metrics``: the job table's Prometheus gauges (``workers.metrics.JobTableCollector``) and the live job
pages (``cli.job_page``) over HTTP."""

from __future__ import annotations

import os
from typing import Annotated, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import typer
from prometheus_client import CollectorRegistry, make_wsgi_app

from nsmigrate.cli.job_page import PAGE_EVENTS, PAGE_RUNS, WsgiApp, page_app
from nsmigrate.cli.options import DatabaseOpt, db, fail, read_cutover, settings
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.workers.build_info import BuildInfoCollector
from nsmigrate.workers.metrics import JobTableCollector

app = typer.Typer(add_completion=False)

#: Jobs whose gauges `nsmigrate metrics` serves by default: the newest, so the series stay bounded as jobs pile up.
NEWEST_JOBS = 20


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per request (Prometheus scrapes every 15 s, a page reloads every 5 s)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def _routed(metrics_app: WsgiApp, pages: WsgiApp) -> WsgiApp:
    """``/metrics`` to Prometheus's exposition (no auth: counts only, no namespace), everything else to the pages."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return (metrics_app if environ.get("PATH_INFO") == "/metrics" else pages)(environ, start_response)

    return app


def _reads_new(url: str, job_id: int) -> int | None:
    rollout = read_cutover(url, job_id).rollout
    return rollout.percent if rollout.under_way else None


@app.command()
def metrics(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve the gauges and the pages on.")] = 9465,
    address: Annotated[str, typer.Option(help="Address to bind (keep it local or behind a proxy).")] = "127.0.0.1",
    newest_jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            min=1,
            help="Serve the gauges of this many newest jobs (series per job and state, never per namespace).",
        ),
    ] = NEWEST_JOBS,
    database_url: DatabaseOpt = None,
) -> None:
    """Serve the job table's Prometheus gauges on http://ADDRESS:PORT/metrics: namespaces per job and state, the
    job's vectors (source, listed, copied, failed) and its failed batches, read at each scrape with the same summary
    `nsmigrate status` shows. Workers serve the fleet's counters themselves (`nsmigrate worker --metrics-port`).

    Also serves a live, read-only page per job at /jobs/JOB (its namespaces with progress bars, failed batches,
    verdicts, the audit log's tail; reloading every 5 s while the job runs) and the newest jobs at /, behind the
    same basic auth as Flower: user $NSMIGRATE_FLOWER_USER (admin), password from the env var named by
    NSMIGRATE_FLOWER_PASSWORD_ENV (default NSMIGRATE_FLOWER_PASSWORD); /metrics needs none."""
    resolved = settings(database_url, None)
    password = os.environ.get(resolved.flower_password_env)
    if not password:
        raise fail(f"the job pages need a password: set {resolved.flower_password_env} (basic auth is always on)")
    database = db(resolved)
    registry = CollectorRegistry()
    registry.register(
        JobTableCollector(
            newest=lambda: [job["job_id"] for job in jobs_status.list_jobs(database, newest_jobs)],
            summary=lambda job_id: jobs_status.job_summary(database, job_id, 0),
            syncs=lambda job_id: jobs_status.sync_totals(database, job_id),
            reads_new=lambda job_id: _reads_new(resolved.database_url, job_id),
        )
    )
    registry.register(BuildInfoCollector())
    pages = page_app(
        resolved.flower_user,
        password,
        newest_jobs=lambda: jobs_status.list_jobs(database, newest_jobs),
        job=lambda job_id: (
            jobs_status.job_summary(database, job_id, PAGE_RUNS),
            jobs_status.events_of(database, job_id, last=PAGE_EVENTS),
        ),
        cutover=lambda job_id: read_cutover(resolved.database_url, job_id),
    )
    try:
        server = make_server(address, port, _routed(make_wsgi_app(registry), pages), handler_class=_QuietHandler)
    except OSError as e:
        raise fail(f"--port {port}: cannot serve on {address} ({e.strerror}); choose a free port") from e
    with server:
        # No poll interval: the loop sleeps until a request (its default woke it twice a second to see whether it
        # was shut down, which nothing here asks; Ctrl-C and SIGTERM end the process).
        server.serve_forever(poll_interval=None)  # type: ignore[arg-type]  # None: select() waits (typeshed: float)
