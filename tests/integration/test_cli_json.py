"""`--json` on `plan`, `run`, `jobs` and `events`: one JSON document on stdout with the keys the manual lists (JSON
output), what is drawn for a person on stderr, errors still one line on stderr with their exit code. Run in process
through ``typer.testing.CliRunner`` against real Redis and Postgres and the real SDK on the local data plane, with no
worker: `run` plans in the command (`run --json --wait` on a real fleet: tests/fleet/test_cli_waits.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import yaml
from click.testing import Result
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.messaging.task_names import Queue
from nsmigrate.orchestrator.planning.summary import NAMESPACE_KEYS, PLAN_KEYS
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

NAMESPACES = {"": 30, "ns1": 45}  # the default namespace and one more: 2 + 3 batches of 20


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("json-src", dimension=8), IndexSpec("json-dst", dimension=8)]


@pytest.fixture
def nsmigrate(
    database_url: str, redis_url: str, sandbox: PineconeSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    for n, (ns, count) in enumerate(NAMESPACES.items()):
        sandbox.load("json-src", ns, [(f"v{n}-{i:03d}", [0.1 * (n + 1)] * 8, {"n": n}) for i in range(count)])
    spec = tmp_path / "json.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "json-out",
                "source": {"kind": "pinecone", "host": sandbox.host("json-src")},
                "target": {"kind": "pinecone", "host": sandbox.host("json-dst")},
                "batch_size": 20,
            }
        )
    )
    env = {"NSMIGRATE_DATABASE_URL": database_url, "NSMIGRATE_REDIS_URL": redis_url, "PINECONE_API_KEY": "any"}

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, [arg.replace("SPEC", str(spec)) for arg in args], env=env)

    return run


def document(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)  # stdout is the document and nothing else


def test_plan_json_lists_each_namespace_with_stable_keys_and_writes_nothing(
    nsmigrate: Any, redis_url: str, sandbox: PineconeSandbox
) -> None:
    plan = document(nsmigrate("plan", "SPEC", "--json"))

    assert tuple(plan) == PLAN_KEYS
    assert plan["name"] == "json-out"
    assert (plan["source"], plan["target"]) == (sandbox.host("json-src")[7:], sandbox.host("json-dst")[7:])
    assert [tuple(n) for n in plan["namespaces"]] == [NAMESPACE_KEYS] * 2
    assert [(n["source_namespace"], n["target_namespace"], n["vectors"], n["batches"]) for n in plan["namespaces"]] == [
        ("", "", 30, 2),
        ("ns1", "ns1", 45, 3),
    ]
    assert plan["totals"] == {"namespaces": 2, "vectors": 75, "batches": 5}
    assert plan["estimate"]["fetch_requests"] == 5 and plan["estimate"]["duration_s"] > 0
    assert plan["notes"][0].startswith("2 namespaces, 75 vectors, 5 batches")
    assert redis_lib.Redis.from_url(redis_url).keys("*") == []  # a dry run sends nothing


def test_run_json_then_jobs_and_events_json_describe_the_same_job(nsmigrate: Any, redis_url: str) -> None:
    started = document(nsmigrate("run", "SPEC", "--json"))

    assert set(started) == {"job_id", "planned_by", "outcome", "plan", "refused", "requeued"}
    assert (started["outcome"], started["planned_by"], started["refused"], started["requeued"]) == (
        "started",
        "command",  # no planner is up: the command planned it
        {},
        None,
    )
    job_id = started["job_id"]
    assert started["plan"]["totals"]["batches"] == 5
    assert redis_lib.Redis.from_url(redis_url).llen(Queue.LIST.value) == 2  # one lister per namespace sent

    again = document(nsmigrate("run", "SPEC", "--json"))  # unfinished: resumed, with what was sent again
    assert (again["job_id"], again["outcome"], again["plan"]) == (job_id, "resumed", None)
    assert again["requeued"] == {"listers": 2, "batches": 0, "verifications": 0}

    [listed] = document(nsmigrate("jobs", "--json"))
    assert listed == {
        "job_id": job_id,
        "name": "json-out",
        "kind": "migrate",
        "state": "running",
        "created_at": listed["created_at"],
    }
    assert listed["created_at"].startswith("20")  # ISO 8601

    logged = document(nsmigrate("events", str(job_id), "--json"))
    assert logged["job_id"] == job_id
    assert all(set(e) == {"at", "actor", "action", "run_id", "detail"} for e in logged["events"])
    actions = [e["action"] for e in logged["events"]]
    assert actions == ["job_created", "job_resumed"], actions


def test_an_error_under_json_is_still_one_line_on_stderr_with_its_exit_code(nsmigrate: Any) -> None:
    result = nsmigrate("events", "4242", "--json")

    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: no job '4242'") and result.stderr.count("\n") == 1
