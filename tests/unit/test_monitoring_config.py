"""deploy/: Prometheus's scrape config and alert rules and the Grafana dashboard, checked in process.

Every PromQL expression of the rules and the dashboard is parsed with ``promql_parser`` (a port of Prometheus's
grammar) and reduced to the metric names it reads, each of which must be one the code exports (``workers.metrics``);
every alert must have test cases in deploy/prometheus/tests/, which Prometheus's own ``promtool`` runs, with a real
Prometheus and Alertmanager, in tests/fleet/test_monitoring.py; the dashboard must import into any Grafana."""

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
RULE_TESTS = DEPLOY / "prometheus/tests/nsmigrate_test.yml"
SCRAPE = DEPLOY / "prometheus/prometheus.yml"
DASHBOARD = DEPLOY / "grafana/dashboards/nsmigrate.json"
COMPOSE = REPO / "docker-compose.yml"

#: The sample names a family of each type exposes.
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}
DURATION = re.compile(r"^\d+[smhdw]$")
#: Prometheus's own series the rules may read beside nsmigrate's: whether each scrape target answered.
PROMETHEUS_SERIES = {"up"}
#: What Grafana puts in a range's place: the dashboard's queries as Prometheus receives them.
GRAFANA_RANGES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}


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
    for variable, value in GRAFANA_RANGES.items():
        exprs = [expr.replace(variable, value) for expr in exprs]
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
    assert read <= exported_names() | PROMETHEUS_SERIES, sorted(read - exported_names())


def test_the_dashboard_imports_into_another_grafana_and_follows_its_scrape_interval() -> None:
    # Imported (Dashboards → Import), Grafana asks for the data source named in `__inputs` and writes its uid where
    # `${DS_PROMETHEUS}` stands; every query reads it through the `datasource` variable, so a provisioned copy (the
    # compose stack's, whose data source is the default) and one switched by a viewer work the same way.
    board = json.loads(DASHBOARD.read_text())
    assert board["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": board["__inputs"][0]["description"],
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    assert {(r["type"], r["id"]) for r in board["__requires"]} == {("grafana", "grafana"), ("datasource", "prometheus")}
    [variable] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["name"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"]["value"] == "${DS_PROMETHEUS}"
    refs: list[Any] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend([node["datasource"]] if "datasource" in node else [])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(board["panels"])
    collect([v for v in board["templating"]["list"] if v["type"] != "datasource"])
    assert refs and all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs), refs
    assert all(panel["targets"] for panel in board["panels"])
    # A rate over a fixed window too short for the other Grafana's scrape interval draws nothing: $__rate_interval
    # is at least four scrapes; windows of 15 minutes and more are deliberate (rare events: verifications).
    for expr in (t["expr"] for panel in board["panels"] for t in panel["targets"]):
        for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval" or window.endswith(("h", "d")) or int(window.rstrip("m")) >= 15, expr


def test_every_alert_has_a_promtool_case_that_fires_it_and_one_that_does_not() -> None:
    cases = load_yaml(RULE_TESTS)
    assert cases["rule_files"] == ["../rules/nsmigrate.yml"]  # the rules file itself, relative to the tests
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
            for alert in case["exp_alerts"]:
                assert alert["exp_annotations"]["summary"], case["alertname"]  # what a person reads is tested too
    alerts = {rule["alert"] for rule in alert_rules()}
    assert fired == alerts, sorted(alerts ^ fired)
    assert quiet == alerts, sorted(alerts ^ quiet)


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
