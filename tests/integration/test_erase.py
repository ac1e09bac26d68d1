"""`nsmigrate erase CREATOR`: only that creator's namespaces go (parsed, never prefix-matched), with an audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from orchestrator import jobs
from sandbox.pinecone_server import IndexSpec, PineconeSandbox

pytestmark = pytest.mark.integration

NAMESPACES = {
    "creator_a.1_twin_t1": 3,
    "creator_a.1": 2,  # creator a.1
    "creator_a.10_twin_t2": 4,
    "creator_a.10": 1,  # creator a.10: a prefix match would take these too
    "public": 2,
    "3f2c9a1e-0000-4000-8000-000000000001": 2,  # neither
}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("idx", dimension=4), IndexSpec("pod-idx", dimension=4, kind="pod")]


@pytest.fixture(autouse=True)
def loaded(sandbox: PineconeSandbox) -> None:
    for ns, n in NAMESPACES.items():
        sandbox.load("idx", ns, [(f"{ns[:8]}-{i}", [0.1, 0.2, 0.3, float(i + 1)], {"i": i}) for i in range(n)])


@pytest.fixture
def spec_file(sandbox: PineconeSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")
    path = tmp_path / "spec.yaml"
    store = {"kind": "pinecone", "host": sandbox.host("idx")}
    path.write_text(yaml.safe_dump({"name": "erase-test", "source": store, "target": store}))
    return path


def remaining(sandbox: PineconeSandbox) -> dict[str, int]:
    return {ns: n for ns, n in sandbox.stats("idx")["namespaces"].items() if n}


def test_erase_deletes_exactly_the_creators_namespaces_and_audits_it(
    sandbox: PineconeSandbox, spec_file: Path, database_url: str
) -> None:
    result = CliRunner().invoke(
        app, ["erase", "a.1", "--spec", str(spec_file), "--yes", "--database-url", database_url]
    )

    assert result.exit_code == 0, result.output
    left = remaining(sandbox)
    assert "creator_a.1_twin_t1" not in left and "creator_a.1" not in left
    assert {ns: left[ns] for ns in ("creator_a.10_twin_t2", "creator_a.10", "public")} == {
        "creator_a.10_twin_t2": 4,
        "creator_a.10": 1,
        "public": 2,
    }
    db = jobs.Database(database_url)
    [job] = jobs.list_jobs(db)
    assert job["kind"] == "erase" and job["state"] == "finished"
    erased = [e["detail"] for e in jobs.events_of(db, job["job_id"]) if e["action"] == "namespace_erased"]
    assert sorted(e["namespace"] for e in erased) == ["creator_a.1", "creator_a.1_twin_t1"]
    assert sum(e["vectors"] for e in erased) == 5
    db.dispose()


def test_dry_run_and_missing_confirmation_delete_nothing(
    sandbox: PineconeSandbox, spec_file: Path, database_url: str
) -> None:
    before = remaining(sandbox)
    dry = CliRunner().invoke(app, ["erase", "a.1", "--spec", str(spec_file), "--dry-run"])
    unconfirmed = CliRunner().invoke(app, ["erase", "a.1", "--spec", str(spec_file), "--database-url", database_url])

    assert dry.exit_code == 0 and "creator_a.1_twin_t1" in dry.output and "dry run" in dry.output
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.output
    assert remaining(sandbox) == before


def test_an_id_that_cannot_be_a_creator_is_refused_and_nothing_is_deleted(
    sandbox: PineconeSandbox, spec_file: Path
) -> None:
    before = remaining(sandbox)
    result = CliRunner().invoke(app, ["erase", "a 1", "--spec", str(spec_file), "--yes"])

    assert result.exit_code == 2
    assert "a 1" in (result.output + str(result.exception))
    assert remaining(sandbox) == before


def test_erase_on_a_pod_index_empties_the_namespaces_with_delete_all(
    sandbox: PineconeSandbox, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", "sandbox-key")
    for ns, n in NAMESPACES.items():
        sandbox.load("pod-idx", ns, [(f"{ns[:8]}-{i}", [0.1, 0.2, 0.3, float(i + 1)], None) for i in range(n)])
    path = tmp_path / "pod.yaml"
    store = {"kind": "pinecone", "index": "pod-idx", "control_host": sandbox.control_host}
    path.write_text(yaml.safe_dump({"name": "erase-pod", "source": store, "target": store}))

    result = CliRunner().invoke(app, ["erase", "a.1", "--spec", str(path), "--yes", "--database-url", database_url])

    assert result.exit_code == 0, result.output
    left = {ns: n for ns, n in sandbox.stats("pod-idx")["namespaces"].items() if n}
    assert "creator_a.1_twin_t1" not in left and "creator_a.1" not in left and left["creator_a.10"] == 1
    requests = sandbox.stats("pod-idx")["requests"]
    assert requests["delete"] == 2 and "delete_namespace" not in requests  # deleteAll, the way a pod allows
