"""The command ↔ planner protocol's messages, and which specs the fleet's planner leaves to the command."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nsmigrate.orchestrator.messaging.submissions import Heartbeat, Submission, database_fingerprint
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.fleet.plan_server import needs_the_command

SOURCE = {"kind": "pinecone", "host": "http://127.0.0.1:1"}
TARGET = {"kind": "pinecone", "host": "http://127.0.0.1:2"}


def spec(**extra: Any) -> Any:
    return parse_spec({"name": "s", "source": SOURCE, "target": TARGET, **extra})


def test_a_submission_survives_the_trip_through_redis() -> None:
    sent = Submission("t1", "run", "name: s\n", "/specs/s.yaml", True, "ana@laptop", database_fingerprint("x"), 1.5)
    assert Submission.decode(sent.encode().encode()) == sent
    older = json.loads(sent.encode())
    del older["submitted_at"]  # from a command that kept no marks
    assert Submission.decode(json.dumps(older)).submitted_at == 0.0


def test_a_submission_of_an_unknown_kind_is_refused() -> None:
    raw = Submission("t1", "run", "", "/s.yaml", False, "a", "d").encode().replace('"run"', '"drop"')
    with pytest.raises(ValueError, match="drop"):
        Submission.decode(raw)


@pytest.mark.parametrize("raw", [b"", b"not json", b"{}", b'{"planner": "p"}', b"[1, 2]"])
def test_a_malformed_heartbeat_means_no_planner(raw: bytes) -> None:
    assert Heartbeat.decode(raw) is None


def test_the_fingerprint_names_a_job_table_without_showing_its_url() -> None:
    url = "postgresql+psycopg://app:s3cret@db.internal:5432/jobs"
    fingerprint = database_fingerprint(url)
    assert fingerprint == database_fingerprint(url)
    assert fingerprint != database_fingerprint(url.replace("jobs", "jobs2"))
    assert "s3cret" not in fingerprint and "db.internal" not in fingerprint


def test_the_fleet_plans_a_plain_copy() -> None:
    assert needs_the_command(spec()) is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"backup": {"enabled": True, "directory": "/backups"}}, "backup"),
        (
            {"target": {"kind": "pinecone", "index": "new", "control_host": "http://127.0.0.1:3", "create": {}}},
            "target.create",
        ),
        (
            {
                "strategy": "import",
                "import": {"uri": "s3://bucket/imports"},
                "target": {"kind": "pinecone", "index": "docs", "documents": {}, "create": {}},
            },
            "target.create",
        ),
        (
            {"routing": {"mode": "creator", "creators": {"source": "file", "path": "twins.csv"}}},
            "routing.creators from a file",
        ),
        (
            {"source": {**SOURCE, "enumerate": {"mode": "catalogue", "catalogue": {"path": "ids.csv"}}}},
            "source.enumerate.catalogue from a file",
        ),
    ],
)
def test_specs_that_need_the_command_are_left_to_it(extra: dict[str, Any], reason: str) -> None:
    why = needs_the_command(spec(**extra))
    assert why is not None and reason in why
