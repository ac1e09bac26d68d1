"""Issue 28, item 4: the default namespace's last resort is a choice (``routing.unresolved``), run through the fleet:
real workers, Redis, the job table, the real SDK against the local data plane. The plan counts each route; with
``creator`` the unresolved vectors land in the override creator's own namespace; with ``drop-with-report`` they are
not copied, the report lists them, and cleanup leaves them in the source."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.fleet_jobs import use_stack_env

DIM = 8
TEST_CREATOR = "sainath.no.1"
#: The default namespace: 4 vectors of twin t1, 3 of creator c.9, 5 of nobody (unresolved).
DEFAULT = (
    [(f"tw-{i}", {"twin_id": "t1"}) for i in range(4)]
    + [(f"cr-{i}", {"creator_id": "c.9"}) for i in range(3)]
    + [(f"none-{i}", {"text": f"nobody's {i}"}) for i in range(5)]
)
UNRESOLVED = {vid for vid, meta in DEFAULT if "text" in meta}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("small-src", DIM), IndexSpec("small-dst", DIM)]


def nsmigrate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def fleet(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    use_stack_env(stack, monkeypatch)
    stack.pinecone.load("small-src", "", [(vid, [0.1 + i / 100] * DIM, meta) for i, (vid, meta) in enumerate(DEFAULT)])
    stack.pinecone.load("small-src", "t1", [(f"t1-{i}", [0.5] * DIM, {"n": i}) for i in range(2)])
    stack.start_worker("list,copy,verify,cleanup", 4, pool="threads")
    return stack


def spec_file(stack: Stack, unresolved: str) -> str:
    path = stack.workdir / f"unresolved-{unresolved}.yaml"
    data = {
        "name": f"unresolved-{unresolved}",
        "source": {"kind": "pinecone", "host": stack.pinecone.host("small-src")},
        "target": {"kind": "pinecone", "host": stack.pinecone.host("small-dst")},
        "routing": {"mode": "creator", "override_creator": TEST_CREATOR, "unresolved": unresolved},
        "cleanup": {"mode": "manual"},
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def plan_routes(output: str) -> dict[str, int]:
    """The counts of the plan's line ``routes of __default__ (N vectors): twin_id 4, …``."""
    line = next(line for line in output.splitlines() if line.startswith("routes of __default__"))
    return {route: int(n) for route, n in (part.split() for part in line.split(": ", 1)[1].split(", "))}


def job_of(output: str) -> int:
    return int(next(line for line in output.splitlines() if line.strip().isdigit()))


@pytest.mark.parametrize(
    ("unresolved", "route", "lands_in"),
    [("creator", "override_creator", f"creator_{TEST_CREATOR}"), ("drop-with-report", "dropped", None)],
)
def test_unresolved_vectors_go_where_the_spec_says(
    fleet: Stack, unresolved: str, route: str, lands_in: str | None
) -> None:
    spec = spec_file(fleet, unresolved)

    code, plan = nsmigrate("plan", spec)
    assert code == 0, plan
    assert plan_routes(plan) == {"twin_id": 4, "creator_id": 3, route: 5}

    code, ran = nsmigrate("run", spec, "--wait")
    assert code == 0, ran
    job_id = job_of(ran)
    target = fleet.pinecone.snapshot("small-dst")
    landed = {vid: ns for ns, records in target.items() for vid in records}
    assert {landed.get(vid) for vid in UNRESOLVED} == {lands_in}
    assert landed["t1-0"] == f"creator_{TEST_CREATOR}_twin_t1" and landed["tw-0"] == f"creator_{TEST_CREATOR}_twin_t1"

    code, printed = nsmigrate("report", str(job_id), "--namespace", "__default__")
    [report] = json.loads(printed)
    assert code == 0 and report["verification"]["routes"] == {"twin_id": 4, "creator_id": 3, route: 5}
    dropped = UNRESOLVED if lands_in is None else set()
    assert (report["verification"]["dropped_count"], set(report["verification"]["dropped_ids"])) == (
        len(dropped),
        dropped,
    )

    code, cleaned = nsmigrate("cleanup", str(job_id), "--yes")
    assert code == 0, cleaned
    # Cleanup deletes what was copied; what was dropped has no other copy and stays in the source.
    assert set(fleet.pinecone.snapshot("small-src").get("", {})) == dropped
