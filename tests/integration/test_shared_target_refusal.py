"""A target namespace another unfinished job writes into too is refused at planning (`run` and `plan`), unless the
spec allows overwriting ids. The target's count cannot show it: the other job has not written yet (no worker has
taken its tasks), and a count lags writes anyway. Without the refusal, an id both sources hold is replaced by the last
copy, and once the first job's cleanup has deleted its source, that copy was the only one.

The real command in-process, the real SDK against the local data plane, a real Postgres job table and Redis (the
tasks wait there: no worker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import load_spec
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

DIM = 4


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM), IndexSpec("other", DIM)]


@pytest.fixture
def run_cli(
    sandbox: PineconeSandbox, job_table_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Any:
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")
    monkeypatch.setenv("NSMIGRATE_DATABASE_URL", job_table_url)
    monkeypatch.setenv("NSMIGRATE_REDIS_URL", redis_url)
    for ns in ("twin-a", "twin-b"):  # the same ids in both: a collision once both land in one namespace
        sandbox.load("src", ns, [(f"v{i}", [float(i + 1)] * DIM, {"from": ns}) for i in range(5)])

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, list(args))

    return run


def spec_file(tmp_path: Path, sandbox: PineconeSandbox, name: str, source_ns: str, **extra: Any) -> str:
    spec = {
        "name": name,
        "source": {"kind": "pinecone", "host": sandbox.host("src")},
        "target": {"kind": "pinecone", "host": sandbox.host(extra.pop("target", "dst"))},
        "namespaces": {"include": [source_ns]},
        "routing": {"mode": "explicit", "map": {source_ns: "merged"}},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_target_namespace_an_unfinished_job_writes_into_is_refused_to_another(
    run_cli: Any, sandbox: PineconeSandbox, tmp_path: Path, job_table_url: str
) -> None:
    first = run_cli("run", spec_file(tmp_path, sandbox, "first", "twin-a"), "--plan-here")
    assert first.exit_code == 0, first.output
    second_spec = spec_file(tmp_path, sandbox, "second", "twin-b")

    planned = run_cli("plan", second_spec, "--plan-here")
    started = run_cli("run", second_spec, "--plan-here")

    for refused in (planned, started):
        said = " ".join(refused.output.split())
        assert refused.exit_code == 2, refused.output
        assert "target namespace 'merged' is also written by unfinished job 1 (first)" in said, said
        assert "source namespace 'twin-a'" in said and "allow_id_overwrite" in said
    db = jobs_database.Database(job_table_url, create=False)
    assert sorted(job["name"] for job in jobs_status.list_jobs(db)) == ["first"]  # nothing started
    assert sandbox.stats("dst")["namespaces"] == {}  # and nothing written

    # The first job's own spec plans as its `run` would resume it; another index, or overwriting allowed, starts.
    assert run_cli("plan", spec_file(tmp_path, sandbox, "first", "twin-a"), "--plan-here").exit_code == 0
    elsewhere = run_cli("run", spec_file(tmp_path, sandbox, "elsewhere", "twin-b", target="other"), "--plan-here")
    assert elsewhere.exit_code == 0, elsewhere.output
    allowed = run_cli("run", spec_file(tmp_path, sandbox, "allowed", "twin-b", allow_id_overwrite=True), "--plan-here")
    assert allowed.exit_code == 0, allowed.output
    # Once the jobs writing into it are cancelled (or their runs judged), the namespace is free again.
    for job in ("first", "allowed"):
        assert run_cli("cancel", job).exit_code == 0
    assert run_cli("run", second_spec, "--plan-here").exit_code == 0
    assert sorted(job["name"] for job in jobs_status.list_jobs(db)) == ["allowed", "elsewhere", "first", "second"]
    db.dispose()


def test_of_two_jobs_planned_at_the_same_moment_into_one_namespace_the_second_written_is_refused(
    run_cli: Any, sandbox: PineconeSandbox, tmp_path: Path, job_table_url: str, redis_url: str
) -> None:
    """The check when planning ends cannot see a job whose planning ends a moment later; it is asked again as the job
    is written, one job at a time. Played here by writing the first job between the second's check and its write
    (the second's ``before_write``: where its backup would be written, which can take minutes)."""
    db = jobs_database.Database(job_table_url, create=False)
    dispatcher = Dispatcher(Settings(database_url=job_table_url, redis_url=redis_url))
    first, second = (
        load_spec(Path(spec_file(tmp_path, sandbox, n, ns))) for n, ns in [("a", "twin-a"), ("b", "twin-b")]
    )

    def meanwhile_the_first_is_written(_prepared: Prepared) -> list[tuple[str, dict[str, Any]]]:
        launch.start_or_resume(db, dispatcher, first, open_retrying_store)
        return []

    with pytest.raises(PlanError, match="also written by unfinished job 1 \\(a\\)"):
        launch.start_or_resume(db, dispatcher, second, open_retrying_store, before_write=meanwhile_the_first_is_written)

    assert sorted(job["name"] for job in jobs_status.list_jobs(db)) == ["a"]
    dispatcher.close()
    db.dispose()
