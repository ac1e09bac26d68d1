"""``nsmigrate metrics``: the job table's Prometheus gauges over HTTP (``workers.metrics.JobTableCollector``)."""

from __future__ import annotations

from typing import Annotated
from wsgiref.simple_server import WSGIRequestHandler, make_server

import typer
from prometheus_client import CollectorRegistry, make_wsgi_app

from cli.options import DatabaseOpt, db, settings
from orchestrator import jobs
from workers.metrics import JobTableCollector

app = typer.Typer(add_completion=False)

#: Jobs whose gauges `nsmigrate metrics` serves by default: the newest, so the series stay bounded as jobs pile up.
NEWEST_JOBS = 20


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per scrape (Prometheus asks every 15 s)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@app.command()
def metrics(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve /metrics on.")] = 9464,
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
    `nsmigrate status` shows. Workers serve the fleet's counters themselves (`nsmigrate worker --metrics-port`)."""
    database = db(settings(database_url, None))
    registry = CollectorRegistry()
    registry.register(
        JobTableCollector(
            newest=lambda: [job["job_id"] for job in jobs.list_jobs(database, newest_jobs)],
            summary=lambda job_id: jobs.job_summary(database, job_id, 0),
        )
    )
    with make_server(address, port, make_wsgi_app(registry), handler_class=_QuietHandler) as server:
        server.serve_forever()
