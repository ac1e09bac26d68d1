"""`nsmigrate demo --keep` says where to watch beside Flower (the job page, the exporter's and the workers' metrics),
and each address answers while it holds: the workers' counts and the exporter's gauges equal what the job did, the
page shows the job behind Flower's login. This is also the default scenario's play-through (``test_demo.py`` plays
the others): its job verified."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.polling import wait_until

SEED_VECTORS = 805  # the creator-namespaces scenario's data set (README: Quick start)


def fetch(url: str, auth: str | None = None) -> str:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus's text format (0 when absent)."""
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_demo_keep_prints_where_to_watch_and_every_address_answers(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "nsmigrate", "demo", "creator-namespaces", "--workers", "2", "--keep"],
            env={**os.environ, "COLUMNS": "400"},  # one line per message: the addresses are not wrapped
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        held = wait_until(
            log.read_text,
            what="the demo to hold its stack",
            timeout_s=240,
            interval_s=0.5,
            done=lambda text: "running until Ctrl-C" in text or demo.poll() is not None,
        )
        assert demo.poll() is None, held[-3000:]
        assert "verified" in held and "verify_failed" not in held, held[-3000:]
        started = re.search(
            r"job (\d+) started; watch it: Flower (\S+), job page (\S+) \(both: user admin, password (\S+)\); "
            r"metrics (.+)$",
            held,
            re.MULTILINE,
        )
        assert started, held[-3000:]
        job_id, _flower, page, password, metrics = started.groups()
        exporter, *workers = metrics.split()

        page_html = fetch(page, auth=f"admin:{password}")
        assert f"Job {job_id}: " in page_html and f"{SEED_VECTORS:,} / {SEED_VECTORS:,}" in page_html
        gauges = fetch(exporter)
        assert sample(gauges, "nsmigrate_job_vectors", f'{{job_id="{job_id}",kind="copied"}}') == SEED_VECTORS
        copied = sum(sample(fetch(url), "nsmigrate_vectors_copied_total") for url in workers)
        assert copied == SEED_VECTORS
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the demo stops everything it started
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
