"""Prometheus metrics: what the fleet does (store requests, rate-budget waits, retries, batches, vectors,
verifications), counted where it happens, and what the job table says (``JobTableCollector``), read when scraped.

Labels stay bounded whatever a job's size: a store's label (from the spec), an operation, an outcome, a job id and
a state, never a namespace, so 12,000 namespaces add no series. A worker serves its counts with ``serve`` (`nsmigrate
worker --metrics-port`); a prefork pool's processes count into ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode, chosen when the variable is set before this module is imported) and the worker's main process
serves their sum. `nsmigrate metrics` serves the job table's gauges. README: "Metrics" lists each one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from nsmigrate.orchestrator.snapshot import JobSummary
from nsmigrate.orchestrator.states import JobKind, PlaceState, RunState
from nsmigrate.workers.build_info import BuildInfoCollector

#: Where prefork processes write their counts (prometheus_client's own variable).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Request latencies span a local Postgres statement to a Pinecone upsert retried behind a slow network.
_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_VERIFY_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

STORE_REQUESTS = Counter(
    "nsmigrate_store_requests",
    "Store requests (every attempt, retries included) by store label, operation and outcome: 2xx (answered), "
    "429, 5xx, 4xx, timeout (no answer), error (refused for good).",
    ["store", "operation", "outcome"],
)
STORE_REQUEST_SECONDS = Histogram(
    "nsmigrate_store_request_seconds",
    "Duration of one store request attempt, by store, operation and outcome (rate-budget waits not included).",
    ["store", "operation", "outcome"],
    buckets=_LATENCY_BUCKETS_S,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "nsmigrate_rate_limit_wait_seconds",
    "Seconds spent waiting for the fleet-wide rate budget (requests, bytes, embedding tokens), by store.",
    ["store"],
)
RATE_SLOTS_MISSED = Counter(
    "nsmigrate_rate_slots_missed",
    "Request slots reserved ahead that went by before their thread could send (over half rate_guard_s late), by "
    "store: each request took a slot of its own, and the budget lost the one it missed.",
    ["store"],
)
WHOLE_READS = Counter(
    "nsmigrate_whole_reads",
    "Small namespaces listed whole and read by one query (outcome queried), or fetched after all (outcome fetched: the "
    "query missed a listed id, was refused or failed).",
    ["outcome"],
)
STORE_RETRIES = Counter(
    "nsmigrate_store_retries",
    "Store requests tried again after a retryable answer (429, 5xx, timeout), by store.",
    ["store"],
)
BATCHES = Counter(
    "nsmigrate_batches",
    "Copy batches ended by workers, by outcome: done, failed, or superseded (a delivery stopped writing a batch no "
    "longer its own, or past 90 % of the visibility timeout).",
    ["outcome"],
)
VECTORS_COPIED = Counter("nsmigrate_vectors_copied", "Vectors written to a target by copy batches.")
VECTORS_VERIFIED = Counter(
    "nsmigrate_vectors_verified", "Source ids whose presence in the target a verification checked."
)
VERIFICATIONS = Counter(
    "nsmigrate_verifications", "Namespace verifications finished, by outcome: passed or failed.", ["outcome"]
)
VERIFICATION_SECONDS = Histogram(
    "nsmigrate_verification_seconds",
    "Duration of one namespace's verification, by outcome.",
    ["outcome"],
    buckets=_VERIFY_BUCKETS_S,
)


def outcome_of(status: int | None) -> str:
    """The ``outcome`` label of a request that failed retryably with HTTP ``status`` (None: the host never
    answered: a timeout, a refused or lost connection)."""
    if status is None:
        return "timeout"
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    return "4xx"


def request_done(store: str, operation: str, outcome: str, seconds: float) -> None:
    """Count one store request attempt and its duration."""
    STORE_REQUESTS.labels(store, operation, outcome).inc()
    STORE_REQUEST_SECONDS.labels(store, operation, outcome).observe(seconds)


def batch_done(vectors: int) -> None:
    BATCHES.labels("done").inc()
    VECTORS_COPIED.inc(vectors)


def batch_failed() -> None:
    BATCHES.labels("failed").inc()


def batch_superseded() -> None:
    BATCHES.labels("superseded").inc()


def verification_done(passed: bool, ids_checked: int, seconds: float) -> None:
    outcome = "passed" if passed else "failed"
    VERIFICATIONS.labels(outcome).inc()
    VERIFICATION_SECONDS.labels(outcome).observe(seconds)
    VECTORS_VERIFIED.inc(ids_checked)


def serve_fleet(port: int, address: str) -> None:
    """Serve this worker's metrics on ``http://address:port/metrics`` from a daemon thread: with
    ``PROMETHEUS_MULTIPROC_DIR`` set (a prefork pool), the sum of its processes' counts, else this process's own;
    and ``nsmigrate_build_info``.

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
    """
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessCounts())
    registry.register(BuildInfoCollector())
    start_http_server(port, address, registry=registry)


class _ProcessCounts(Collector):
    """This process's own counts (the default registry's), served beside the build info in a registry of its own."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


class JobTableCollector(Collector):
    """The job table's gauges, read at each scrape with the summary `status` shows (``snapshot.SUMMARY_SQL``) of
    the newest ``jobs`` jobs: series per job and state, never per namespace.

    Parameters:
        newest: returns the ids of the newest jobs.
        summary: returns a job's summary without its runs listed.
        syncs: returns a job's sync totals (``jobs.sync_totals``: a sync runs in the command's process, which serves
            no metrics, so its counts come from the job table).
        reads_new: returns the share of a migrate job's namespaces whose reads go to the target (its rollout), or
            None before a cut-over began.
    """

    def __init__(
        self,
        newest: Callable[[], Sequence[int]],
        summary: Callable[[int], JobSummary],
        syncs: Callable[[int], Mapping[str, int]],
        reads_new: Callable[[int], int | None] | None = None,
    ) -> None:
        self._newest = newest
        self._summary = summary
        self._syncs = syncs
        self._reads_new = reads_new

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily(
            "nsmigrate_job_info", "1 per job: its name, kind and state.", labels=["job_id", "name", "kind", "state"]
        )
        runs = GaugeMetricFamily(
            "nsmigrate_job_namespaces", "Namespace runs of a job in each state.", labels=["job_id", "state"]
        )
        vectors = GaugeMetricFamily(
            "nsmigrate_job_vectors",
            "Vectors of a job summed over its namespaces: source (planned), listed, copied, failed (in failed batches)",
            labels=["job_id", "kind"],
        )
        failed_batches = GaugeMetricFamily(
            "nsmigrate_job_failed_batches", "Batches of a job that failed for good.", labels=["job_id"]
        )
        places = GaugeMetricFamily(
            "nsmigrate_job_erasure_places", "Places of an erasure job in each state.", labels=["job_id", "state"]
        )
        erased = GaugeMetricFamily(
            "nsmigrate_job_erasure_records",
            "Vectors, rows and backup rows of an erasure job's places: planned, erased",
            labels=["job_id", "kind"],
        )
        synced = GaugeMetricFamily(
            "nsmigrate_job_sync",
            "A job's syncs summed: syncs (namespaces synced), new and changed ids copied again, deleted_in_source, "
            "deleted (from the target, --propagate-deletes)",
            labels=["job_id", "kind"],
        )
        reads_new = GaugeMetricFamily(
            "nsmigrate_job_cutover_reads_new_percent",
            "The share of a migrate job's namespaces whose reads go to the target, as its rollout says (`nsmigrate "
            "cutover set`, and back after a breach); only once a cut-over began.",
            labels=["job_id"],
        )
        for job_id in self._newest():
            summary = self._summary(job_id)
            job = str(job_id)
            info.add_metric([job, summary.name, summary.kind.value, summary.state.value], 1)
            if summary.kind == JobKind.ERASE:
                for place_state in PlaceState:
                    places.add_metric([job, place_state.value], sum(p.state == place_state for p in summary.places))
                erased.add_metric([job, "planned"], sum(p.planned for p in summary.places))
                erased.add_metric([job, "erased"], sum(p.erased for p in summary.places))
            for state in RunState:
                runs.add_metric([job, state.value], summary.states.get(state, 0))
            for kind, count in summary.totals.as_dict().items():
                vectors.add_metric([job, kind], count)
            failed_batches.add_metric([job], summary.failed_batches)
            if summary.kind == JobKind.MIGRATE:
                for kind, count in self._syncs(job_id).items():
                    synced.add_metric([job, kind], count)
                percent = self._reads_new(job_id) if self._reads_new is not None else None
                if percent is not None:
                    reads_new.add_metric([job], percent)
        yield from (info, runs, vectors, failed_batches, places, erased, synced, reads_new)
