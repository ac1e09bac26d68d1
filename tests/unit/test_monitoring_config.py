"""deploy/: Prometheus's scrape config and alert rules and the Grafana dashboard, checked without Prometheus.

promtool is not available on these machines (Prometheus ships it only inside its release archives and images, which
the set-up does not fetch), so the rules file is checked by its YAML structure (what ``promtool check rules`` reads),
and every PromQL expression of the rules and the dashboard is parsed with ``promql_parser`` (a port of Prometheus's
grammar) and reduced to the metric names it reads, each of which must be one the code exports (``workers.metrics``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from nsmigrate.orchestrator.cutover import read_metrics
from nsmigrate.orchestrator.jobs.status import SYNC_TOTALS
from nsmigrate.orchestrator.snapshot import JobSummary, Totals
from nsmigrate.orchestrator.states import JobKind, JobState
from nsmigrate.workers import metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus/rules/nsmigrate.yml"
SCRAPE = DEPLOY / "prometheus/prometheus.yml"
DASHBOARD = DEPLOY / "grafana/dashboards/nsmigrate.json"
COMPOSE = REPO / "docker-compose.yml"

#: The sample names a family of each type exposes.
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}
DURATION = re.compile(r"^\d+[smhdw]$")


def exported_names() -> set[str]:
    """Every sample name nsmigrate exports: the fleet's metrics and the job table's gauges (``workers.metrics``), and
    what the cut-over's readers measure (``orchestrator.cutover.read_metrics``: DualWriteIndex, `cutover watch`)."""
    families = [
        family
        for module in (metrics, read_metrics)
        for value in vars(module).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
    ]
    summary = JobSummary(
        job_id=1,
        name="j",
        kind=JobKind.MIGRATE,
        state=JobState.RUNNING,
        created_at=datetime.now(UTC),
        phase=None,
        namespaces=0,
        states={},
        totals=Totals(0, 0, 0, 0),
        runs=(),
    )
    families += list(
        metrics.JobTableCollector(
            newest=lambda: [1],
            summary=lambda _: summary,
            syncs=lambda _: dict.fromkeys(SYNC_TOTALS, 0),
            reads_new=lambda _: 5,
        ).collect()
    )
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, from its syntax tree (Prometheus's grammar, ported to Rust:
    ``promql_parser``); a malformed expression raises ``ValueError``."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        elif isinstance(node, promql_parser.MatrixSelector):
            visit(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs)
            visit(node.rhs)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr)
            if node.param is not None:
                visit(node.param)
        elif isinstance(node, promql_parser.ParenExpr | promql_parser.SubqueryExpr | promql_parser.UnaryExpr):
            visit(node.expr)

    visit(promql_parser.parse(expr))
    return names


def load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path} is missing"
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    # A variable's query: label_values(METRIC, LABEL) reads METRIC.
    queries = [var["definition"] for var in board["templating"]["list"] if var["type"] == "query"]
    exprs += [re.sub(r"^label_values\((\w+),\s*\w+\)$", r"\1", query) for query in queries]
    return exprs


def test_metric_names_are_read_from_promql() -> None:
    expr = 'sum by (le, operation) (rate(nsmigrate_x_bucket{outcome="2xx", job_id=~"$job_id"}[5m])) / on (a) y > 0.2'
    assert metric_names(expr) == {"nsmigrate_x_bucket", "y"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(nsmigrate_x_total[5m])")


def test_the_rules_parse_and_name_what_an_operator_needs() -> None:
    groups = load_yaml(RULES)["groups"]
    assert isinstance(groups, list) and groups
    for group in groups:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
    rules = alert_rules()
    alerts = [rule["alert"] for rule in rules]
    assert len(alerts) == len(set(alerts))
    assert {"NsmigrateJobStalled", "NsmigrateHigh429Share", "NsmigrateVerificationFailed"} <= set(alerts)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
        assert "for" not in rule or DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_an_erasure_unfinished_after_30_seconds_alerts() -> None:
    """Issue 44: an erasure's target is under 10 s; above 30 s an operator is told, with what to do."""
    [rule] = [rule for rule in alert_rules() if rule["alert"] == "NsmigrateErasureSlow"]
    assert rule["for"] == "30s"
    assert metric_names(rule["expr"]) == {"nsmigrate_job_erasure_places"}
    assert 'state=~"pending|erasing"' in rule["expr"] and rule["expr"].rstrip().endswith("> 0")
    assert "erase --resume" in rule["annotations"]["description"]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_the_rules_and_dashboard_read_is_exported(source: str) -> None:
    exprs = [rule["expr"] for rule in alert_rules()] if source == "rules" else dashboard_exprs()
    read = set().union(*(metric_names(expr) for expr in exprs))
    assert read, f"the {source} read no metric"
    assert read <= exported_names(), sorted(read - exported_names())


def test_the_dashboard_queries_the_provisioned_datasource() -> None:
    board = json.loads(DASHBOARD.read_text())
    source = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_prometheus_scrapes_the_ports_compose_serves() -> None:
    services = load_yaml(COMPOSE)["services"]
    scrape = {job["job_name"]: job for job in load_yaml(SCRAPE)["scrape_configs"]}
    workers = scrape["nsmigrate-workers"]["dns_sd_configs"][0]
    pools = {name for name, s in services.items() if (s.get("command") or [None, None])[1] == "worker"}
    assert set(workers["names"]) == pools
    for name in pools:
        assert option([str(a) for a in services[name]["command"]], "--metrics-port") == str(workers["port"]), name
    (target,) = scrape["nsmigrate-jobs"]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert services[host]["command"][:2] == ["nsmigrate", "metrics"]
    assert option(services[host]["command"], "--port") == port
    # Every file compose mounts from deploy/ is in the repository.
    for service in services.values():
        for volume in service.get("volumes", []):
            if volume.startswith("./deploy/"):
                assert (REPO / volume.split(":")[0]).exists(), volume
