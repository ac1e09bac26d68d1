"""`strategy: import` end to end: real workers write each source namespace as Pinecone import files (Parquet, one
directory per target namespace) to a real S3-compatible server (moto's), the local data plane imports them through
``/bulk/imports`` as Pinecone does, and the job verifies the result (counts, ids, contents). An import Pinecone would
refuse is refused before anything is written, naming the namespace; one Pinecone fails ends the job's runs with its
reason, the target unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.polling import wait_for_job
from tests.service_fixtures import ObjectStorage

DIM = 8
NAMESPACES = {"": 40, "alpha": 260, "beta": 9}


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


def load_source(sandbox: PineconeSandbox) -> None:
    rng = np.random.default_rng(11)
    for ns, n in NAMESPACES.items():
        records = [(f"{ns or 'd'}-{i}", rng.random(DIM).tolist(), {"i": i, "tags": ["x", ns]}) for i in range(n)]
        sandbox.load("src", ns, records)


def write_spec(stack: Stack, storage: ObjectStorage, **bulk: Any) -> str:
    control = stack.pinecone.control_host
    data = {
        "name": "Big.Load",
        "strategy": "import",
        "source": {"kind": "pinecone", "index": "src", "control_host": control},
        "target": {"kind": "pinecone", "index": "dst", "control_host": control},
        "import": {
            "uri": f"s3://{storage.bucket}/imports",
            "integration_id": storage.integration_id,
            "endpoint_url": storage.url,
            "rows_per_file": 100,
            **bulk,
        },
        "verify": {"count_timeout_s": 3},
    }
    path = stack.workdir / "import.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def nsmigrate(stack: Stack, storage: ObjectStorage, *args: str) -> Result:
    env = {
        "NSMIGRATE_DATABASE_URL": stack.database_url,
        "NSMIGRATE_REDIS_URL": stack.redis_url,
        "PINECONE_API_KEY": SANDBOX_API_KEY,
        "AWS_ACCESS_KEY_ID": storage.access_key_id,
        "AWS_SECRET_ACCESS_KEY": storage.secret_access_key,
    }
    return CliRunner().invoke(app, list(args), env=env)


def start_worker(stack: Stack, storage: ObjectStorage) -> None:
    keys = {"AWS_ACCESS_KEY_ID": storage.access_key_id, "AWS_SECRET_ACCESS_KEY": storage.secret_access_key}
    stack.start_worker("list,copy,verify", 4, pool="threads", **keys)


def test_an_import_job_writes_the_files_imports_them_and_is_verified(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    sandbox = stack.pinecone
    load_source(sandbox)
    object_storage.configure(sandbox, "dst", pace_s=0.6)
    spec = write_spec(stack, object_storage)

    planned = nsmigrate(stack, object_storage, "plan", spec)
    assert planned.exit_code == 0, planned.output
    plan_text = " ".join(planned.output.split())
    assert "upsert: ≈" in plan_text and "import: ≈" in plan_text and "at least 10 min" in plan_text
    assert object_storage.object_keys() == [] and sandbox.stats("dst")["vector_count"] == 0  # a dry run

    start_worker(stack, object_storage)
    result = nsmigrate(stack, object_storage, "run", spec, "--wait")

    assert result.exit_code == 0, result.output
    db = jobs_database.Database(stack.database_url)
    try:
        job_id = jobs_status.list_jobs(db)[0]["job_id"]
        status = jobs_status.job_status(db, job_id)
        assert status.phase == "imported"
        assert {r.source_namespace: r.state for r in status.runs} == dict.fromkeys(NAMESPACES, "verified")
        actions = [e["action"] for e in jobs_status.events_of(db, job_id)]
        for action in ("import_writing", "import_files_written", "import_started", "import_importing"):
            assert action in actions
        assert actions.index("import_started") < actions.index("import_imported")
    finally:
        db.dispose()
    directory = f"imports/big.load-{job_id}"
    keys = object_storage.object_keys(directory)
    assert f"{directory}/alpha/part-00002.parquet" in keys and f"{directory}/__default__/part-00000.parquet" in keys
    assert len([k for k in keys if "/alpha/" in k]) == 3  # 260 records, 100 a file
    source, target = sandbox.snapshot("src"), sandbox.snapshot("dst")
    assert target.keys() == source.keys()
    for ns, records in source.items():
        assert target[ns].keys() == records.keys()
        for id_, (values, metadata) in records.items():
            assert np.array_equal(target[ns][id_][0], values)
            assert target[ns][id_][1] == {**(metadata or {}), "migrated_from": f"{sandbox.host('src')}/{ns}"} or (
                target[ns][id_][1] is not None and target[ns][id_][1].items() >= (metadata or {}).items()
            )
    assert not {"upsert"} & set(sandbox.stats("dst")["requests"])  # imported, never upserted
    shown = nsmigrate(stack, object_storage, "status", str(job_id))
    assert "strategy import: imported" in " ".join(shown.output.split())


def test_an_import_into_a_namespace_that_exists_is_refused_before_anything_is_written(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    sandbox = stack.pinecone
    load_source(sandbox)
    sandbox.load("dst", "alpha", [("kept", [0.5] * DIM, {"mine": True})])
    object_storage.configure(sandbox, "dst")
    spec = write_spec(stack, object_storage)
    data = yaml.safe_load((stack.workdir / "import.yaml").read_text())
    (stack.workdir / "overwrite.yaml").write_text(yaml.safe_dump({**data, "allow_id_overwrite": True}))

    refused_by_the_plan = nsmigrate(stack, object_storage, "run", spec)
    result = nsmigrate(stack, object_storage, "run", str(stack.workdir / "overwrite.yaml"))

    assert refused_by_the_plan.exit_code == 2 and "alpha (1 vectors)" in refused_by_the_plan.output
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "Pinecone imports only into namespaces that do not exist yet" in said and "alpha (1 records)" in said
    assert "routing.mode: explicit" in said  # what to do
    db = jobs_database.Database(stack.database_url)
    try:
        assert jobs_status.list_jobs(db) == []
    finally:
        db.dispose()
    assert object_storage.object_keys() == []
    assert sandbox.stats("dst")["namespaces"] == {"alpha": 1}


def test_an_import_pinecone_fails_ends_the_runs_with_its_reason(stack: Stack, object_storage: ObjectStorage) -> None:
    sandbox = stack.pinecone
    load_source(sandbox)
    object_storage.configure(sandbox, "dst", pace_s=0.2)
    spec = write_spec(stack, object_storage, integration_id=None)  # a private bucket, read without an integration

    start_worker(stack, object_storage)
    result = nsmigrate(stack, object_storage, "run", spec, "--wait")

    assert result.exit_code != 0, result.output
    db = jobs_database.Database(stack.database_url)
    try:
        job_id = jobs_status.list_jobs(db)[0]["job_id"]
        status = wait_for_job(db, job_id, lambda s: all(r.state == "list_failed" for r in s.runs), timeout_s=60)
        error = status.runs[0].last_error or ""
        assert "Pinecone import 1 is Failed: Unable to access" in error and f"nsmigrate retry {job_id}" in error
    finally:
        db.dispose()
    assert sandbox.stats("dst")["vector_count"] == 0


def test_an_import_job_leaves_an_erased_creators_records_out_names_them_and_verifies(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    """Creator a.1 is in the erasure ledger: the import files hold none of their records, the job's and the
    erasure's events name them, a.10's and everyone else's are imported, and every run verifies."""
    sandbox = stack.pinecone
    load_source(sandbox)
    rng = np.random.default_rng(12)
    owned = [(f"own-{i}", rng.random(DIM).tolist(), {"creator_id": ("a.1", "a.10")[i % 2]}) for i in range(6)]
    sandbox.load("src", "alpha", owned)
    object_storage.configure(sandbox, "dst", pace_s=0.2)
    db = jobs_database.Database(stack.database_url)
    place = {"kind": "records", "store": "elsewhere", "store_spec": None, "namespace": "x", "planned": 0}
    erase_job = jobs_erasure.create_erasure(db, "erase-a.1", Subject("a.1").to_json(), [place])
    start_worker(stack, object_storage)

    result = nsmigrate(stack, object_storage, "run", write_spec(stack, object_storage), "--wait")

    try:
        assert result.exit_code == 0, result.output
        job_id = next(j["job_id"] for j in jobs_status.list_jobs(db) if j["kind"] == "migrate")
        status = jobs_status.job_status(db, job_id)
        assert {r.source_namespace: r.state for r in status.runs} == dict.fromkeys(NAMESPACES, "verified")
        [event] = [e["detail"] for e in jobs_status.events_of(db, job_id) if e["action"] == "records_held_back"]
        assert event["ids"] == ["own-0", "own-2", "own-4"] and event["erasures"] == [erase_job]
        held = [e["detail"] for e in jobs_status.events_of(db, erase_job) if e["action"] == "write_held_back"]
        assert [h["ids"] for h in held] == [["own-0", "own-2", "own-4"]]
    finally:
        db.dispose()
    imported = sandbox.snapshot("dst")["alpha"]
    assert {"own-1", "own-3", "own-5"} <= imported.keys() and not {"own-0", "own-2", "own-4"} & imported.keys()
    assert len(imported) == NAMESPACES["alpha"] + 3
