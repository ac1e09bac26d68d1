"""The metrics' pure parts: the outcome label of a failed request, the job table's gauges from a job summary, and
the worker's refusal to serve a prefork pool's metrics without a directory to sum them from."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.jobs.status import SYNC_TOTALS
from nsmigrate.orchestrator.snapshot import JobSummary, PlaceStatus, Totals
from nsmigrate.orchestrator.states import JobKind, JobState, PlaceState, RunState
from nsmigrate.workers import metrics


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(429, "429"), (500, "5xx"), (503, "5xx"), (408, "4xx"), (None, "timeout")],
)
def test_a_failed_request_is_labelled_by_its_status(status: int | None, outcome: str) -> None:
    assert metrics.outcome_of(status) == outcome


def summary(job_id: int, states: dict[RunState, int], copied: int) -> JobSummary:
    return JobSummary(
        job_id=job_id,
        name=f"job-{job_id}",
        kind=JobKind.MIGRATE,
        state=JobState.RUNNING,
        created_at=datetime.now(UTC),
        phase=None,
        namespaces=sum(states.values()),
        states=states,
        totals=Totals(source=copied + 5, listed=copied + 2, copied=copied, failed=1),
        runs=(),
        failed_batches=2,
    )


def no_syncs() -> dict[str, int]:
    return dict.fromkeys(SYNC_TOTALS, 0)


def test_job_table_gauges_have_one_series_per_job_and_state() -> None:
    summaries = {
        7: summary(7, {RunState.COPYING: 11_000, RunState.VERIFIED: 1_000}, copied=40_000),
        8: summary(8, {RunState.PENDING: 3}, copied=0),
    }
    registry = CollectorRegistry()
    syncs = {7: {"syncs": 12_000, "new": 5, "changed": 2, "deleted_in_source": 1, "deleted": 0}, 8: no_syncs()}
    registry.register(
        metrics.JobTableCollector(
            newest=lambda: list(summaries), summary=summaries.__getitem__, syncs=syncs.__getitem__
        )
    )

    def value(metric: str, /, **labels: str) -> float | None:
        return registry.get_sample_value(metric, labels)

    assert value("nsmigrate_job_namespaces", job_id="7", state="copying") == 11_000
    assert value("nsmigrate_job_namespaces", job_id="7", state="verified") == 1_000
    assert value("nsmigrate_job_namespaces", job_id="7", state="pending") == 0
    assert value("nsmigrate_job_namespaces", job_id="8", state="pending") == 3
    assert value("nsmigrate_job_vectors", job_id="7", kind="copied") == 40_000
    assert value("nsmigrate_job_vectors", job_id="7", kind="source") == 40_005
    assert value("nsmigrate_job_failed_batches", job_id="7") == 2
    assert value("nsmigrate_job_info", job_id="7", name="job-7", kind="migrate", state="running") == 1
    assert value("nsmigrate_job_sync", job_id="7", kind="syncs") == 12_000
    assert value("nsmigrate_job_sync", job_id="7", kind="changed") == 2
    assert value("nsmigrate_job_sync", job_id="8", kind="new") == 0
    # 12,000 namespaces, yet a series per state: the count of series depends on the jobs only.
    lines = [line for line in generate_latest(registry).decode().splitlines() if line.startswith("nsmigrate_job")]
    assert len(lines) == 2 * (1 + len(RunState) + 4 + 1 + len(SYNC_TOTALS))


def place(state: PlaceState, planned: int, erased: int) -> PlaceStatus:
    return PlaceStatus("namespace", "pinecone:idx", "creator_a.1", None, planned, erased, state.value, None)


def test_an_erasure_jobs_places_and_records_are_gauges() -> None:
    erasure = replace(
        summary(9, {}, copied=0),
        kind=JobKind.ERASE,
        places=(place(PlaceState.VERIFIED, 5, 5), place(PlaceState.VERIFIED, 2, 2), place(PlaceState.FAILED, 3, 0)),
    )
    registry = CollectorRegistry()
    registry.register(
        metrics.JobTableCollector(newest=lambda: [9], summary=lambda _: erasure, syncs=lambda _: no_syncs())
    )

    def value(metric: str, /, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {"job_id": "9", **labels})

    assert value("nsmigrate_job_erasure_places", state="verified") == 2
    assert value("nsmigrate_job_erasure_places", state="failed") == 1
    assert value("nsmigrate_job_erasure_places", state="pending") == 0
    assert value("nsmigrate_job_erasure_records", kind="planned") == 10
    assert value("nsmigrate_job_erasure_records", kind="erased") == 7
    assert value("nsmigrate_job_info", name="job-9", kind="erase", state="running") == 1


def test_worker_refuses_prefork_metrics_without_a_multiprocess_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_DIR_ENV, raising=False)
    result = CliRunner().invoke(app, ["worker", "--pool", "prefork", "--metrics-port", "9464"])
    assert result.exit_code == 2
    assert metrics.MULTIPROC_DIR_ENV in result.output and "--pool threads" in result.output


def test_metrics_refuses_to_serve_the_job_pages_without_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSMIGRATE_FLOWER_PASSWORD", raising=False)
    result = CliRunner().invoke(app, ["metrics", "--port", "9465"])
    assert result.exit_code == 2
    assert "set NSMIGRATE_FLOWER_PASSWORD" in result.output and "basic auth is always on" in result.output
