"""A target index the spec asks nsmigrate to create (``target.create``), through the CLI, the real SDK and the local
control plane: `plan` creates nothing, `run` creates it, waits for it with progress and records it; a target whose
shape differs from the source's is refused before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from pinecone import Pinecone
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack

SOURCE, MADE = "plain-src", "made-by-run"
DIM, METRIC = 8, "dotproduct"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(SOURCE, DIM, METRIC), IndexSpec("wide", DIM * 2, METRIC), IndexSpec("same-shape", DIM, METRIC)]


def load_source(sandbox: PineconeSandbox) -> None:
    for ns in ("docs", "faq"):
        sandbox.load(SOURCE, ns, [(f"{ns}-{i}", [0.5 + i] * DIM, {"i": i}) for i in range(30)])


def spec_file(tmp_path: Path, sandbox: PineconeSandbox, target: str = MADE, **create: Any) -> str:
    control = sandbox.control_host
    data = {
        "name": "into-a-new-index",
        "source": {"kind": "pinecone", "index": SOURCE, "control_host": control},
        "target": {"kind": "pinecone", "index": target, "control_host": control, "create": create},
        "enrich": {"migrated_from": False},
        "batch_size": 20,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def nsmigrate(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"PINECONE_API_KEY": SANDBOX_API_KEY, **env})


def test_plan_says_what_it_will_create_and_creates_nothing(sandbox: PineconeSandbox, tmp_path: Path) -> None:
    load_source(sandbox)
    result = nsmigrate("plan", spec_file(tmp_path, sandbox, deletion_protection="enabled", tags={"team": "search"}))
    assert result.exit_code == 0, result.output
    assert (
        f"target index {MADE} will be created: serverless aws/us-east-1, {DIM}-dim {METRIC} dense, deletion "
        "protection enabled, tags team=search" in " ".join(result.output.split())
    )
    assert MADE not in sandbox.names()

    used = nsmigrate("plan", spec_file(tmp_path, sandbox, target="same-shape"))
    assert used.exit_code == 0, used.output
    assert "target index same-shape exists with this shape and is used as it is" in " ".join(used.output.split())


@pytest.mark.parametrize(
    ("target", "create", "words"),
    [
        (MADE, {"dimension": DIM * 2}, [f"dimension {DIM * 2} and metric {METRIC}", f"has dimension {DIM}"]),
        (MADE, {"metric": "cosine"}, [f"dimension {DIM} and metric cosine", f"metric {METRIC}"]),
        ("wide", {}, [f"target index wide exists with dimension {DIM * 2}, not {DIM}"]),
    ],
)
def test_a_target_of_another_shape_is_refused_and_nothing_is_written(
    sandbox: PineconeSandbox,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    target: str,
    create: dict[str, Any],
    words: list[str],
) -> None:
    load_source(sandbox)
    before = set(sandbox.names())
    env = {"NSMIGRATE_DATABASE_URL": database_url, "NSMIGRATE_REDIS_URL": redis_url}
    for command in ("plan", "run"):
        result = nsmigrate(command, spec_file(tmp_path, sandbox, target=target, **create), **env)
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        for word in words:
            assert word in message
    assert set(sandbox.names()) == before
    db = jobs_database.Database(database_url)
    try:
        assert jobs_status.list_jobs(db) == []
    finally:
        db.dispose()


def test_run_creates_the_index_waits_for_it_and_copies_into_it(stack: Stack) -> None:
    sandbox = stack.pinecone
    load_source(sandbox)
    sandbox.control.set_delays(ready_delay_s=1.0)
    stack.start_worker("list,copy,verify", 4, pool="threads")
    spec = spec_file(stack.workdir, sandbox, deletion_protection="enabled", tags={"team": "search"})
    env = {"NSMIGRATE_DATABASE_URL": stack.database_url, "NSMIGRATE_REDIS_URL": stack.redis_url}

    result = nsmigrate("run", spec, "--wait", **env)

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"creating target index {MADE}" in output
    assert f"target index {MADE}: Initializing after" in output  # it was not ready at first
    assert f"target index {MADE} is ready" in output
    described = Pinecone(api_key=SANDBOX_API_KEY, host=sandbox.control_host).describe_index(MADE)
    assert (described.dimension, described.metric, described.deletion_protection) == (DIM, METRIC, "enabled")
    assert described.tags == {"team": "search"} and described.spec.serverless is not None
    assert sandbox.count(MADE, "docs") == 30 and sandbox.count(MADE, "faq") == 30

    db = jobs_database.Database(stack.database_url)
    try:
        job_id = jobs_status.list_jobs(db)[0]["job_id"]
        assert all(r.state == "verified" for r in jobs_status.job_status(db, job_id).runs)
        created = [e for e in jobs_status.events_of(db, job_id) if e["action"] == "target_index_created"]
        assert len(created) == 1
        detail = created[0]["detail"]
        assert detail["index"] == MADE and detail["host"] == sandbox.host(MADE) and detail["waited_s"] >= 1.0
        assert detail["shape"]["dimension"] == DIM and detail["shape"]["tags"] == {"team": "search"}
    finally:
        db.dispose()
