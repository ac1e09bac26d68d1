"""Prometheus's own tools on deploy/prometheus/: ``promtool`` checks the rules and the scrape config and runs every
alert's test cases; a real Prometheus (Debian's ``prometheus``, which ``scripts/bootstrap.sh`` installs for `make
test`) scrapes a real worker and the exporter with the shipped rules, and a real Alertmanager receives the alert a
failed verification fires. A missing tool fails these tests with what to install; they are never skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nsmigrate.orchestrator.models import RunState
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec
from nsmigrate_sandbox.services import free_port, spawn, wait_for_port
from nsmigrate_sandbox.stack import Stack
from tests.fleet_jobs import start_job
from tests.polling import wait_for_job, wait_until

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy/prometheus"
SOURCE, TARGET = "mon-src", "mon-dst"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(SOURCE, dimension=8), IndexSpec(TARGET, dimension=8)]


def tool(name: str) -> str:
    """The path of one of Prometheus's tools, or a failure that says how to get it (never a skip)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: `make test` installs it (scripts/bootstrap.sh, as root with apt-get), or "
            "`apt-get install prometheus prometheus-alertmanager`"
        )
    return path


def promtool(*args: str) -> str:
    result = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_rules_and_the_config_and_passes_every_alerts_cases() -> None:
    checked = promtool("check", "rules", "deploy/prometheus/rules/nsmigrate.yml")
    assert f"SUCCESS: {len(alert_names())} rules found" in checked, checked
    assert "SUCCESS" in promtool("check", "config", "deploy/prometheus/prometheus.yml")
    # Each alert's cases (tests/unit/test_monitoring_config.py keeps one that fires it and one that does not).
    assert "SUCCESS" in promtool("test", "rules", "deploy/prometheus/tests/nsmigrate_test.yml")


def alert_names() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "rules/nsmigrate.yml").read_text())
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"]]


def scrape_config(rules: Path, alertmanager: int, worker: int, exporter: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with this machine's targets: its scrape jobs (the names the rules read) on
    loopback ports, its rules, and an Alertmanager; scraped and evaluated every second instead of every 15."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules)]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager}"]}]}]}
    ports = {"nsmigrate-workers": worker, "nsmigrate-jobs": exporter}
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(ports), jobs
    config["scrape_configs"] = [
        {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]} for name, port in ports.items()
    ]
    return config


def start(stack: Stack, name: str, argv: list[str], port: int) -> httpx.Client:
    """A server of Prometheus's stopped with the stack, once it listens on ``port``."""
    process = spawn(argv, stack.env(), stack.workdir / f"{name}.log")
    stack.processes.append(process)
    wait_for_port(port, 30, process)
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)


def test_prometheus_scrapes_a_worker_and_the_exporter_and_alertmanager_gets_a_failed_verification(
    stack: Stack,
) -> None:
    ports = {name: free_port() for name in ("worker", "prometheus", "alertmanager")}
    stack.pinecone.load(SOURCE, "docs", [(f"d{i}", [0.1 * (i + 1)] * 8, {"i": i}) for i in range(20)])
    stack.pinecone.set_faults(TARGET, Faults(drop_fraction=0.5))  # answered, half not stored: verification fails
    stack.start_worker("list,copy,verify", 2, pool="threads", args=("--metrics-port", str(ports["worker"])))
    ports["exporter"] = stack.serve("metrics", wait=False, NSMIGRATE_FLOWER_PASSWORD="pages")
    work = stack.workdir
    (work / "alertmanager.yml").write_text(
        yaml.safe_dump({"route": {"receiver": "tests"}, "receivers": [{"name": "tests"}]})
    )
    config = scrape_config(
        PROMETHEUS / "rules/nsmigrate.yml", ports["alertmanager"], ports["worker"], ports["exporter"]
    )
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    alertmanager = start(
        stack,
        "alertmanager",
        [
            tool("prometheus-alertmanager"),
            f"--config.file={work / 'alertmanager.yml'}",
            f"--storage.path={work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",  # one Alertmanager, no gossip port
        ],
        ports["alertmanager"],
    )
    prometheus = start(
        stack,
        "prometheus",
        [
            tool("prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
        ports["prometheus"],
    )
    stack.wait_for_servers()

    def targets_up() -> dict[str, str]:
        active = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    wait_until(
        targets_up,
        what="Prometheus to scrape the worker and the exporter",
        timeout_s=30,
        done=lambda up: up == {"nsmigrate-workers": "up", "nsmigrate-jobs": "up"},
    )

    spec = {
        "name": "monitored",
        "source": {"kind": "pinecone", "host": stack.pinecone.host(SOURCE)},
        "target": {"kind": "pinecone", "host": stack.pinecone.host(TARGET)},
    }
    db, _, job_id = start_job(stack, spec)
    wait_for_job(db, job_id, lambda s: all(r.state == RunState.VERIFY_FAILED for r in s.runs), timeout_s=60)
    db.dispose()

    def query(expr: str) -> list[dict[str, Any]]:
        answer = prometheus.get("/api/v1/query", params={"query": expr}).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    # Both processes' series reach Prometheus: the worker's counters and the exporter's job-table gauges.
    builds = wait_until(
        lambda: query("nsmigrate_build_info"),
        what="both build_info series",
        timeout_s=30,
        done=lambda found: len(found) == 2,
    )
    assert {b["metric"]["job"] for b in builds} == {"nsmigrate-workers", "nsmigrate-jobs"}
    wait_until(
        lambda: query('nsmigrate_verifications_total{outcome="failed"} > 0'),
        what="the worker's failed verification in Prometheus",
        timeout_s=30,
    )

    # The shipped rule fires in Prometheus, and Alertmanager receives it with the job's id.
    def received() -> list[dict[str, Any]]:
        alerts = alertmanager.get("/api/v2/alerts").json()
        return [a for a in alerts if a["labels"].get("alertname") == "NsmigrateVerificationFailed"]

    [alert] = wait_until(received, what="Alertmanager to receive NsmigrateVerificationFailed", timeout_s=30)
    assert alert["labels"]["job_id"] == str(job_id) and alert["labels"]["severity"] == "critical"
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["summary"] == f"1 namespaces of job {job_id} failed verification"
    prometheus.close()
    alertmanager.close()
