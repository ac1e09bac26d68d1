"""What the application's reads see during a cut-over, measured per side (``old``: the source, ``new``: the target)
by whoever reads — an application's ``DualWriteIndex`` (reader ``app``) or ``nsmigrate cutover watch`` (reader
``watch``) — as Prometheus metrics and as samples sent to the fleet (``ReadLog.take``).

Labels stay bounded: a job id, a side, a reader, an outcome; never a namespace (reads per namespace travel to the
fleet in the reports, not to Prometheus). The metrics are registered in prometheus_client's default registry when this
module is imported, so an application that serves its own ``/metrics`` serves them too. P50/P95/P99 are read from the
histogram (``histogram_quantile``); the breach limits of the job's spec are gauges, so an alert rule compares each
job with its own limits (``deploy/prometheus/rules/nsmigrate.yml``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

#: A read's duration, from a cached answer to a cold namespace behind a slow network (the default limits are
#: 100 ms at P95 and 200 ms at P99: boundaries there, so the quantiles near them are close).
_READ_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
#: Samples one report carries at most (the newest); the counts in Prometheus stay whole.
SAMPLES_PER_REPORT = 1000
#: Namespaces whose reads one report counts at most (the most read).
TRAFFIC_PER_REPORT = 200

READS = Counter(
    "nsmigrate_cutover_reads",
    "Reads of a job under cut-over, by side (old: the source, new: the target), reader (app: DualWriteIndex, "
    "watch: `nsmigrate cutover watch`) and outcome (answered, error).",
    ["job_id", "side", "reader", "outcome"],
)
EMPTY_READS = Counter(
    "nsmigrate_cutover_empty_reads",
    "Reads of a job under cut-over that came back empty where the other side answered, by side and reader.",
    ["job_id", "side", "reader"],
)
READ_SECONDS = Histogram(
    "nsmigrate_cutover_read_seconds",
    "Duration of one answered read of a job under cut-over, by side and reader.",
    ["job_id", "side", "reader"],
    buckets=_READ_BUCKETS_S,
)
READS_NEW_PERCENT = Gauge(
    "nsmigrate_cutover_reads_new_percent",
    "The share of a job's namespaces whose reads go to the new side, as the reader follows it.",
    ["job_id", "reader"],
)
LIMIT = Gauge(
    "nsmigrate_cutover_limit",
    "A job's cut-over limits from its spec: p95_ms, p99_ms, max_error_rate (a share), breach_window_s.",
    ["job_id", "limit"],
)
ROLLBACKS = Counter(
    "nsmigrate_cutover_rollbacks",
    "Reads of a job moved back to the last good step by `nsmigrate cutover watch` after a breach.",
    ["job_id"],
)


def set_limits(job_id: int, limits: Mapping[str, Any]) -> None:
    """Export a job's limits (``p95_ms``, ``p99_ms``, ``max_error_rate``, ``breach_window_s``) for the alert rules."""
    for name in ("p95_ms", "p99_ms", "max_error_rate", "breach_window_s"):
        if limits.get(name) is not None:
            LIMIT.labels(str(job_id), name).set(float(limits[name]))


class ReadLog:
    """The reads one reader measured of job ``job_id``: counted in Prometheus at once, and kept as samples (and
    reads per namespace) until ``take`` hands them over for a report. Thread-safe."""

    def __init__(self, job_id: int, reader: str, clock: Callable[[], float] = time.time) -> None:
        self.job_id, self.reader, self._clock = str(job_id), reader, clock
        self._lock = threading.Lock()
        self._samples: list[list[Any]] = []
        self._traffic: Tally[str] = Tally()
        self.dropped = 0
        for side in ("new", "old"):  # every series from the start, at 0: a rule's sum of two never lacks one
            for outcome in ("answered", "error"):
                READS.labels(self.job_id, side, reader, outcome)
            EMPTY_READS.labels(self.job_id, side, reader)

    def read(
        self,
        side: str,
        ms: float | None,
        error: str | None = None,
        *,
        empty: bool = False,
        namespace: str | None = None,
        at: float | None = None,
    ) -> None:
        """One read of ``side``: its duration in ms (None when it failed with ``error``), whether it was empty where
        the other side answered, the namespace the application asked for (its traffic; None: not counted), and when
        it was sent (epoch seconds; default now): a watch judges the reads sent while it watches."""
        READS.labels(self.job_id, side, self.reader, "error" if error is not None else "answered").inc()
        if ms is not None:
            READ_SECONDS.labels(self.job_id, side, self.reader).observe(ms / 1000)
        if empty:
            EMPTY_READS.labels(self.job_id, side, self.reader).inc()
        with self._lock:
            self._samples.append([round(at if at is not None else self._clock(), 3), side, ms, error, empty])
            if len(self._samples) > SAMPLES_PER_REPORT:
                del self._samples[0]
                self.dropped += 1
            if namespace is not None:
                self._traffic[namespace] += 1

    def following(self, percent: int) -> None:
        READS_NEW_PERCENT.labels(self.job_id, self.reader).set(percent)

    def take(self) -> tuple[list[list[Any]], dict[str, int]]:
        """The samples ``[at (epoch s), side, ms, error, empty]`` and reads per namespace since the last take."""
        with self._lock:
            samples, self._samples = self._samples, []
            traffic, self._traffic = dict(self._traffic.most_common(TRAFFIC_PER_REPORT)), Tally()
        return samples, traffic
