"""Prometheus metrics of a real fleet: a `nsmigrate worker --metrics-port` and `nsmigrate metrics` scraped over HTTP
on the loopback while a real job copies from the local Pinecone data plane, their counts compared with what the job
table and the data plane say happened."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import RunState
from nsmigrate.workers.build_info import versions
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.services import free_port
from nsmigrate_sandbox.stack import Stack
from tests.fleet_jobs import batches, start_job
from tests.polling import wait_for_job, wait_until

SOURCE, TARGET = "metrics-src", "metrics-dst"
#: Enough namespaces that a series per namespace would outnumber the handful the metrics have (threads pool).
NAMESPACES = 200
#: The prefork pool sums its processes' counts; a series per namespace would still show as a namespace's name in a
#: label, so its job need not be as big.
PREFORK_NAMESPACES = 40
PER_NAMESPACE = 5

PASSWORD = "page-s3cret"

Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(SOURCE, dimension=8), IndexSpec(TARGET, dimension=8)]


def scrape(url: str) -> Samples:
    """Every sample at ``url``, by sample name (``…_total``, ``…_bucket``…), with its labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for have, value in samples.get(name, []) if labels.items() <= have.items())


def load_namespaces(stack: Stack, namespaces: int = NAMESPACES, per_namespace: int = PER_NAMESPACE) -> list[str]:
    rng = np.random.default_rng(3)
    names = [f"tenant-{n:03d}" for n in range(namespaces)]
    for name in names:
        stack.pinecone.load(
            SOURCE, name, [(f"{name}-{i}", rng.random(8).tolist(), {"n": i}) for i in range(per_namespace)]
        )
    return names


@pytest.mark.parametrize(("pool", "namespaces"), [("threads", NAMESPACES), ("prefork", PREFORK_NAMESPACES)])
def test_worker_and_exporter_count_what_a_job_with_429s_did(
    stack: Stack, tmp_path: Path, pool: str, namespaces: int
) -> None:
    names = load_namespaces(stack, namespaces)
    # Fractional Retry-After keeps the test fast; every 429 is one budgeted request (the SDK's retries are off).
    stack.pinecone.set_faults(SOURCE, Faults(error_rate_429=0.1, retry_after_s=0.05, seed=5))
    port = free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    stack.start_worker(
        "list,copy,verify,cleanup",
        2,
        pool=pool,
        args=("--metrics-port", str(port)),
        NSMIGRATE_RETRY_MAX_WAIT_S="0.2",
        NSMIGRATE_RETRY_ATTEMPTS="20",
        **({"PROMETHEUS_MULTIPROC_DIR": str(multiproc)} if pool == "prefork" else {}),
    )
    spec = {
        "name": "metrics-copy",
        "source": {"kind": "pinecone", "host": stack.pinecone.host(SOURCE)},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(TARGET)},
        "batch_size": 50,
    }
    db, _, job_id = start_job(stack, spec)
    try:
        status = wait_for_job(db, job_id, lambda s: all(r.state == RunState.VERIFIED for r in s.runs), timeout_s=170)
        job_batches = batches(db, job_id)
    finally:
        db.dispose()
    assert status.totals.copied == namespaces * PER_NAMESPACE

    worker_url = f"http://127.0.0.1:{port}/metrics"
    # The last verification's counts are written right after its verdict: poll until the worker has them all.
    fleet = wait_until(
        lambda: scrape(worker_url),
        what="the worker's metrics to count every verification",
        timeout_s=30,
        done=lambda s: total(s, "nsmigrate_verifications_total") >= namespaces,
    )
    injected = stack.pinecone.stats(SOURCE)["injected_429"]
    assert injected > 0
    assert total(fleet, "nsmigrate_store_requests_total", outcome="429") == injected
    assert total(fleet, "nsmigrate_store_retries_total") >= injected
    assert total(fleet, "nsmigrate_store_requests_total", outcome="2xx", operation="upsert") > 0
    assert total(fleet, "nsmigrate_store_request_seconds_count", outcome="429") == injected
    assert total(fleet, "nsmigrate_vectors_copied_total") == status.totals.copied
    assert total(fleet, "nsmigrate_batches_total", outcome="done") == len(job_batches)
    assert total(fleet, "nsmigrate_batches_total", outcome="failed") == 0
    assert total(fleet, "nsmigrate_verifications_total", outcome="passed") == namespaces
    assert total(fleet, "nsmigrate_vectors_verified_total") == namespaces * PER_NAMESPACE
    assert fleet["nsmigrate_build_info"] == [(versions(), 1.0)]  # one series, whatever the pool

    # No series per namespace: the namespaces copied leave a handful of series, none naming a namespace.
    ours = [labels for name, series in fleet.items() if name.startswith("nsmigrate_") for labels, _ in series]
    assert not {value for labels in ours for value in labels.values()} & set(names)
    if pool == "threads":  # a label per namespace would give one metric a series for each of the 200
        assert max(len(series) for name, series in fleet.items() if name.startswith("nsmigrate_")) < NAMESPACES

    if pool == "prefork":
        return  # the exporter and the job page read the job table alone, whatever the pool: looked at once (threads)
    exporter = f"http://127.0.0.1:{stack.serve('metrics', NSMIGRATE_FLOWER_PASSWORD=PASSWORD)}"
    table = scrape(f"{exporter}/metrics")
    job = str(job_id)
    assert total(table, "nsmigrate_job_vectors", job_id=job, kind="copied") == status.totals.copied
    assert total(table, "nsmigrate_job_vectors", job_id=job, kind="listed") == status.totals.listed
    assert total(table, "nsmigrate_job_namespaces", job_id=job, state="verified") == NAMESPACES
    assert total(table, "nsmigrate_job_namespaces", job_id=job) == NAMESPACES
    assert total(table, "nsmigrate_job_failed_batches", job_id=job) == 0
    assert table["nsmigrate_build_info"] == [(versions(), 1.0)]

    # The job's page, read by a real browser with Flower's basic auth: every namespace with its bar and verdict.
    page = browse(exporter.replace("://", f"://admin:{PASSWORD}@") + f"/jobs/{job_id}", tmp_path / "job-page.png")
    assert f"Job {job_id}: metrics-copy" in page
    assert f'<progress value="{status.totals.copied}" max="{status.totals.copied}">' in page
    assert all(f"<td>{name}</td>" in page for name in names)
    assert page.count("passed</span>") == NAMESPACES
    assert page.split('<table id="events">')[1].count("<tr>") > 1  # the audit log's tail, under its header
    assert (tmp_path / "job-page.png").stat().st_size > 0
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{exporter}/jobs/{job_id}", timeout=10)
    assert refused.value.code == 401


def browse(url: str, screenshot: Path) -> str:
    """The DOM Debian's headless Chromium shows at ``url`` (credentials in the URL: basic auth), and its screenshot
    saved to ``screenshot`` (the test's artifact): one launch, one load of the page, does both."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (apt-get install chromium)"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"]
    command = [*flags, f"--screenshot={screenshot}", "--dump-dom", url]
    return subprocess.run(command, check=True, capture_output=True, timeout=60, text=True).stdout


def test_a_running_jobs_page_shows_its_progress_in_a_browser(stack: Stack, tmp_path: Path) -> None:
    load_namespaces(stack, namespaces=3, per_namespace=60)
    # A slow target (18 upserts of 1 s, one at a time) keeps the job running while the browser looks at it.
    stack.pinecone.set_faults(TARGET, Faults(latency_ms=1000))
    stack.start_worker("list,copy,verify,cleanup", 1, pool="threads")
    pages = f"http://admin:{PASSWORD}@127.0.0.1:{stack.serve('metrics', NSMIGRATE_FLOWER_PASSWORD=PASSWORD)}"
    spec = {
        "name": "slow-copy",
        "source": {"kind": "pinecone", "host": stack.pinecone.host(SOURCE)},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(TARGET)},
        "batch_size": 10,
        "max_batches_in_flight": 1,
    }
    db, _, job_id = start_job(stack, spec)
    try:
        wait_for_job(db, job_id, lambda s: s.totals.copied > 0, timeout_s=60)
        page = browse(f"{pages}/jobs/{job_id}", tmp_path / "running-job.png")
        copied_after = jobs_status.job_status(db, job_id).totals.copied
    finally:
        db.dispose()

    assert '<b id="job-state">running</b>' in page and 'http-equiv="refresh"' in page
    shown = re.search(r'<span id="job-progress"><progress value="(\d+)" max="180">', page)
    assert shown, page[:2000]
    assert 0 < int(shown.group(1)) < 180 and int(shown.group(1)) <= copied_after
