"""`strategy: import` end to end: real workers write each source namespace as Pinecone import files (Parquet for a
vector index, JSONL for a document index; one directory per target namespace) to a real S3-compatible server
(moto's), the local data plane imports them through ``/bulk/imports`` as Pinecone does, and the job verifies the
result (counts, ids, contents). `plan` compares upsert with import in figures the plan's numbers give. An import
Pinecone would refuse is refused before anything is written, naming the namespace; one Pinecone fails ends the job's
runs with its reason, the target unchanged."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import Result
from pinecone import Pinecone
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import RetryableError
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.limits import IMPORT_MIN_S
from nsmigrate.orchestrator.planning.costs import BYTES_PER_JSON_VALUE
from nsmigrate.orchestrator.planning.import_strategy import BYTES_PER_VALUE, RECORD_OVERHEAD_BYTES, writing_seconds
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers import tally
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import bulk_import, verifying
from nsmigrate.workers.stores.pinecone.bulk_imports import BulkImports
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.polling import wait_for_job, wait_until
from tests.sent_tasks import SentTasks
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


def planned_job(stack: Stack, storage: ObjectStorage, monkeypatch: pytest.MonkeyPatch, pace_s: float = 0.2) -> int:
    """The source loaded and an import job written by `nsmigrate run` with no worker up (its steps are the test's to
    take, in this process, with the storage's keys); the job's id."""
    load_source(stack.pinecone)
    storage.configure(stack.pinecone, "dst", pace_s=pace_s)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", storage.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage.secret_access_key)
    assert nsmigrate(stack, storage, "run", write_spec(stack, storage)).exit_code == 0
    db = jobs_database.Database(stack.database_url)
    try:
        return int(jobs_status.list_jobs(db)[0]["job_id"])
    finally:
        db.dispose()


def run_to_the_end(stack: Stack, storage: ObjectStorage, spec_path: str) -> int:
    """Start the workers and `run --wait` the spec until its job ended well; the job's id."""
    start_worker(stack, storage)
    result = nsmigrate(stack, storage, "run", spec_path, "--wait")
    assert result.exit_code == 0, result.output
    db = jobs_database.Database(stack.database_url)
    try:
        return int(jobs_status.list_jobs(db)[0]["job_id"])
    finally:
        db.dispose()


#: The plan's two lines comparing upsert and import (``orchestrator.planning.import_strategy.compare``).
COMPARISON = re.compile(
    r"upsert: ≈(?P<units>\d+) write units ≈ (?P<upsert_usd>\S+) \(at \$(?P<unit_price>[\d.]+) per million\), "
    r"≈(?P<upsert_s>\d+) s at the configured budgets "
    r"import: ≈(?P<size>[\d.]+) (?P<unit>[KMGT]B) of (?P<format>\w+) files ≈ (?P<import_usd>\S+) "
    r"\(at \$(?P<gb_price>[\d.]+) per GB\), ≈(?P<write_s>\d+) s to write them "
    r"\(fetches at the read budget, (?P<threads>\d+) namespaces at once, "
    r"[\d.]+ MB/s each\), then "
    r"Pinecone's import: at least (?P<least_min>\d+) min"
)
UNITS = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
VALUE_BYTES = {"Parquet": BYTES_PER_VALUE, "JSONL": BYTES_PER_JSON_VALUE}  # the plan's guess of a value's bytes


def assert_shown_usd(shown: str, amount: float) -> None:
    assert shown == "<$0.01" if 0 < amount < 0.01 else float(shown.lstrip("$")) == pytest.approx(amount, abs=0.005)


def assert_plan_compares(stack: Stack, storage: ObjectStorage, spec_path: str, file_format: str) -> None:
    """`nsmigrate plan` shows upsert against import with the figures the plan's own numbers give: write units and
    time from its estimate, file bytes from its records and dimension, prices and the read budget from the spec."""
    as_json = nsmigrate(stack, storage, "plan", spec_path, "--json")
    printed = nsmigrate(stack, storage, "plan", spec_path)
    assert as_json.exit_code == 0 and printed.exit_code == 0, as_json.output + printed.output
    plan = json.loads(as_json.stdout)
    spec = parse_spec(yaml.safe_load(Path(spec_path).read_text()))
    assert spec.bulk_import is not None
    shown = COMPARISON.search(" ".join(printed.output.split()))
    assert shown is not None, printed.output
    records, estimate = plan["totals"]["vectors"], plan["estimate"]
    size = records * (DIM * VALUE_BYTES[file_format] + RECORD_OVERHEAD_BYTES)

    assert int(shown["units"]) == estimate["write_units"] > 0
    assert float(shown["unit_price"]) == spec.bulk_import.usd_per_million_write_units
    assert_shown_usd(shown["upsert_usd"], estimate["write_units"] / 1e6 * spec.bulk_import.usd_per_million_write_units)
    assert int(shown["upsert_s"]) == pytest.approx(estimate["duration_s"], abs=0.5)
    assert shown["format"] == file_format
    assert float(shown["size"]) * UNITS[shown["unit"]] == pytest.approx(size, rel=0.005)
    assert float(shown["gb_price"]) == spec.bulk_import.usd_per_gb
    assert_shown_usd(shown["import_usd"], size / 1e9 * spec.bulk_import.usd_per_gb)
    threads = DEFAULTS.import_write_threads
    assert int(shown["threads"]) == threads
    writing_s = writing_seconds(spec, list(NAMESPACES.values()), size, threads)
    assert (
        int(shown["write_s"]) == pytest.approx(writing_s, abs=0.5)
        and writing_s > math.ceil(records / 1000) / spec.rate.read_rps
    )
    assert int(shown["least_min"]) * 60 == IMPORT_MIN_S


def test_an_import_job_writes_the_files_imports_them_and_is_verified(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    sandbox = stack.pinecone
    load_source(sandbox)
    object_storage.configure(sandbox, "dst", pace_s=0.6)
    # The files kept (``import.keep_files``) to show Pinecone's layout; the test after it, removed.
    spec = write_spec(stack, object_storage, usd_per_gb=250, usd_per_million_write_units=160, keep_files=True)

    assert_plan_compares(stack, object_storage, spec, "Parquet")
    assert object_storage.object_keys() == [] and sandbox.stats("dst")["vector_count"] == 0  # a dry run

    job_id = run_to_the_end(stack, object_storage, spec)

    db = jobs_database.Database(stack.database_url)
    try:
        status = jobs_status.job_status(db, job_id)
        assert status.phase == "imported"
        assert {r.source_namespace: r.state for r in status.runs} == dict.fromkeys(NAMESPACES, "verified")
        events = jobs_status.events_of(db, job_id)
        actions = [e["action"] for e in events]
        for action in ("import_writing", "import_files_written", "import_started", "import_importing"):
            assert action in actions
        assert actions.index("import_started") < actions.index("import_imported") < actions.index("import_files_kept")
        assert "import_files_removed" not in actions
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


def test_the_namespaces_files_are_written_at_once_a_slow_one_holding_up_none(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    """Every data-plane request of namespace alpha (before beta in the runs, four of them) answers a second late: the
    others are written meanwhile, not after it, and the import starts once alpha's files are written too."""
    sandbox = stack.pinecone
    load_source(sandbox)
    sandbox.set_faults("src", Faults(latency_ms=1000, latency_namespaces=("alpha",)))
    object_storage.configure(sandbox, "dst", pace_s=0.2)

    job_id = run_to_the_end(stack, object_storage, write_spec(stack, object_storage))

    db = jobs_database.Database(stack.database_url)
    try:
        runs = {r.id: r.source_namespace for r in jobs_and_runs.runs_of(db, job_id)}
        events = jobs_status.events_of(db, job_id)
    finally:
        db.dispose()
    written = [runs[e["run_id"]] for e in events if e["action"] == "import_files_written"]
    actions = [e["action"] for e in events]
    assert sorted(runs.values()) == ["", "alpha", "beta"] and sorted(written) == sorted(runs.values())
    assert written[-1] == "alpha"  # one after the other, beta would have waited for it
    assert actions.index("import_started") > max(i for i, a in enumerate(actions) if a == "import_files_written")
    assert sandbox.snapshot("dst").keys() == sandbox.snapshot("src").keys()


def test_a_step_taken_again_rewrites_a_namespace_a_crash_left_half_written(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    """A step that died while writing left a file in alpha's directory and recorded none of it: the step taken again
    writes alpha from scratch (the stale file gone, no file twice), and the job imports and verifies every record."""
    sandbox = stack.pinecone
    load_source(sandbox)
    object_storage.configure(sandbox, "dst", pace_s=0.2)
    spec = write_spec(stack, object_storage, keep_files=True)  # kept: what was written is read below
    result = nsmigrate(stack, object_storage, "run", spec)  # no worker yet: queued
    assert result.exit_code == 0, result.output
    db = jobs_database.Database(stack.database_url)
    try:
        job_id = int(jobs_status.list_jobs(db)[0]["job_id"])
        directory = f"imports/big.load-{job_id}"
        object_storage.client().put_object(
            Bucket=object_storage.bucket, Key=f"{directory}/alpha/part-00007.parquet", Body=b"cut short"
        )
        start_worker(stack, object_storage)
        status = wait_for_job(db, job_id, lambda s: all(r.state == "verified" for r in s.runs), timeout_s=120)
    finally:
        db.dispose()
    assert {r.source_namespace: r.copied for r in status.runs} == NAMESPACES
    keys = object_storage.object_keys(directory)
    assert [k for k in keys if "/alpha/" in k] == [f"{directory}/alpha/part-0000{i}.parquet" for i in range(3)]
    assert sandbox.snapshot("dst").keys() == sandbox.snapshot("src").keys()


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


def test_once_imported_the_job_removes_its_files_and_says_so(stack: Stack, object_storage: ObjectStorage) -> None:
    """A copy of every record left in a bucket is a liability nothing needs once Pinecone imported it: removed, with
    an event naming where and how many."""
    sandbox = stack.pinecone
    load_source(sandbox)
    object_storage.configure(sandbox, "dst", pace_s=0.2)

    job_id = run_to_the_end(stack, object_storage, write_spec(stack, object_storage))

    db = jobs_database.Database(stack.database_url)
    try:
        events = jobs_status.events_of(db, job_id)
        written = sum(e["detail"]["files"] for e in events if e["action"] == "import_files_written")
        [removed] = [e["detail"] for e in events if e["action"] == "import_files_removed"]
        assert removed == {"uri": f"s3://{object_storage.bucket}/imports/big.load-{job_id}/", "objects": written}
        assert written == 5  # 40, 260 and 9 records, 100 a file
        assert {r.state for r in jobs_status.job_status(db, job_id).runs} == {"verified"}
    finally:
        db.dispose()
    assert object_storage.object_keys() == []


def test_erasing_a_creator_removes_the_import_files_a_job_kept(
    stack: Stack, object_storage: ObjectStorage, tmp_path: Path
) -> None:
    """Files kept (``import.keep_files``) hold a.1's records: `erase --creator a.1` removes the job's files whole, the
    receipt counting them, and a later erasure does not look there again."""
    sandbox = stack.pinecone
    load_source(sandbox)
    rng = np.random.default_rng(13)
    owned = [(f"own-{i}", rng.random(DIM).tolist(), {"creator_id": "a.1"}) for i in range(3)]
    sandbox.load("src", "alpha", owned)
    object_storage.configure(sandbox, "dst", pace_s=0.2)
    keys = {
        "AWS_ACCESS_KEY_ID": object_storage.access_key_id,
        "AWS_SECRET_ACCESS_KEY": object_storage.secret_access_key,
    }
    stack.start_worker("cleanup", 2, pool="threads", **keys)
    job_id = run_to_the_end(stack, object_storage, write_spec(stack, object_storage, keep_files=True))
    directory = f"imports/big.load-{job_id}"
    files = object_storage.object_keys(directory)
    assert len(files) == 5

    result = nsmigrate(stack, object_storage, "erase", "--creator", "a.1", "--yes", "--receipt", str(tmp_path / "r"))

    assert result.exit_code == 0, result.output
    assert "import_files" in result.output and "its files, whole" in " ".join(result.output.split())
    assert object_storage.object_keys() == []
    receipt = json.loads((tmp_path / "r").read_text())
    [place] = [p for p in receipt["places"] if p["kind"] == "import_files"]
    assert place["path"] == f"s3://{object_storage.bucket}/{directory}/" and place["verified"]
    assert place["erased"] == receipt["import_files_removed"] == 5 and place["check"]["files_left"] == 0
    assert receipt["vectors_erased"] == 6  # a.1's 3 records in the source and in the target
    for index in ("src", "dst"):
        assert not {"own-0", "own-1", "own-2"} & sandbox.snapshot(index)["alpha"].keys()
    db = jobs_database.Database(stack.database_url)
    try:
        assert "import_files_erased" in [e["action"] for e in jobs_status.events_of(db, job_id)]
    finally:
        db.dispose()
    again = nsmigrate(stack, object_storage, "erase", "--creator", "a.1", "--yes", "--receipt", str(tmp_path / "r2"))
    assert again.exit_code == 0, again.output
    assert not [p for p in json.loads((tmp_path / "r2").read_text())["places"] if p["kind"] == "import_files"]


DOCS = "import-documents"
DOC_NAMESPACES = {"": 30, "shelf": 230}


def load_documentable_source(sandbox: PineconeSandbox) -> dict[str, dict[str, tuple[list[float], dict[str, Any]]]]:
    """Records whose metadata hold text for a full-text field and a key a document refuses as it is (``_source``)."""
    rng = np.random.default_rng(21)
    loaded = {
        ns: {
            f"{ns or 'd'}-{i:03d}": (
                rng.random(DIM).astype(np.float32).tolist(),
                {"text": f"chunk {i} of {ns or 'the default namespace'}", "_source": f"doc-{i // 3}", "page": i},
            )
            for i in range(n)
        }
        for ns, n in DOC_NAMESPACES.items()
    }
    for ns, records in loaded.items():
        sandbox.load("src", ns, [(vid, values, meta) for vid, (values, meta) in records.items()])
    return loaded


def test_an_import_job_into_a_document_index_writes_jsonl_and_every_document_verifies(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    """A vector index → a document index the job creates: the plan refuses a key a document refuses before anything
    is written and compares upsert with importing JSONL; then JSONL files, one document a line, in Pinecone's layout
    (a directory per namespace), imported by the data plane and verified document by document; the SDK reads the
    documents back field for field."""
    from pinecone import Pinecone

    sandbox = stack.pinecone
    loaded = load_documentable_source(sandbox)
    object_storage.configure(sandbox, pace_s=0.6)  # the project's integration: the index the job creates reads it
    spec = write_spec(stack, object_storage, keep_files=True)  # kept: the files are read below
    data = yaml.safe_load((stack.workdir / "import.yaml").read_text())
    mapping: dict[str, Any] = {"text_fields": ["chunk_text"], "rename": {"text": "chunk_text"}}
    data |= {"name": "Docs.Load", "enrich": {"creator_fields": False, "migrated_from": False}}
    data["target"] |= {"index": DOCS, "documents": mapping, "create": {}}
    (stack.workdir / "import.yaml").write_text(yaml.safe_dump(data))

    refused = nsmigrate(stack, object_storage, "run", spec)

    said = " ".join(refused.output.split())
    assert refused.exit_code == 2, refused.output
    assert "'_source': field names starting with '_' are reserved" in said and "'_source': 'source'" in said
    assert DOCS not in sandbox.names() and object_storage.object_keys() == []  # nothing created or written

    mapping["rename"]["_source"] = "source"
    (stack.workdir / "import.yaml").write_text(yaml.safe_dump(data))
    assert_plan_compares(stack, object_storage, spec, "JSONL")

    job_id = run_to_the_end(stack, object_storage, spec)

    db = jobs_database.Database(stack.database_url)
    try:
        assert jobs_status.job_status(db, job_id).phase == "imported"
        for run in jobs_and_runs.runs_of(db, job_id):
            report = run.verification or {}
            assert run.state == "verified", report
            assert report["content_mismatch_count"] == 0
            assert report["target_count"] == DOC_NAMESPACES[run.source_namespace]
    finally:
        db.dispose()
    directory = f"imports/docs.load-{job_id}"
    keys = object_storage.object_keys(directory)
    assert keys == sorted(
        [f"{directory}/__default__/part-00000.jsonl"] + [f"{directory}/shelf/part-{n:05d}.jsonl" for n in range(3)]
    )
    first = object_storage.client().get_object(Bucket=object_storage.bucket, Key=f"{directory}/shelf/part-00000.jsonl")
    lines = first["Body"].read().decode().splitlines()
    assert len(lines) == 100
    assert json.loads(lines[0]).keys() == {"_id", "embedding", "chunk_text", "source", "page"}
    schema = sandbox.service(DOCS).spec.documents
    assert schema is not None and schema.text_names == {"chunk_text"}
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=sandbox.host(DOCS))
    for ns, records in loaded.items():
        found = index.documents.fetch(namespace=ns or "__default__", ids=sorted(records)).documents
        assert set(found) == set(records)
        for vid, (values, meta) in records.items():
            document = found[vid].to_dict() if hasattr(found[vid], "to_dict") else dict(found[vid])
            np.testing.assert_allclose(document.pop("embedding"), values, rtol=1e-6)
            assert document == {"_id": vid, "chunk_text": meta["text"], "source": meta["_source"], "page": meta["page"]}
    assert not {"upsert", "upsert_documents"} & set(sandbox.stats(DOCS)["requests"])  # imported, never upserted


def test_a_resume_while_the_files_are_written_neither_rewrites_them_nor_imports_twice(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    """`nsmigrate resume` (or the sweep, or `run` of the spec again) while the job's step writes the import files:
    its step ran beside the one under way, emptied the directories that one was still writing and started a second
    import. It does nothing now (the step under way holds the job's step lock), and its chain takes over only once
    no step runs: the files are written once, one import is started, and every record verifies."""
    sandbox = stack.pinecone
    load_source(sandbox)
    sandbox.set_faults("src", Faults(latency_ms=1000, latency_namespaces=("alpha",)))  # alpha writes for seconds
    object_storage.configure(sandbox, "dst", pace_s=0.2)
    start_worker(stack, object_storage)
    spec = write_spec(stack, object_storage, keep_files=True)  # kept: the files are read below
    assert nsmigrate(stack, object_storage, "run", spec).exit_code == 0
    db = jobs_database.Database(stack.database_url)
    try:
        job_id = int(jobs_status.list_jobs(db)[0]["job_id"])

        def a_namespace_written() -> bool:
            return any(e["action"] == "import_files_written" for e in jobs_status.events_of(db, job_id))

        wait_until(a_namespace_written, what="a namespace's files written, alpha's still being written", timeout_s=60)
        resumed = nsmigrate(stack, object_storage, "resume", str(job_id))
        assert resumed.exit_code == 0, resumed.output
        status = wait_for_job(db, job_id, lambda s: all(r.state == "verified" for r in s.runs), timeout_s=120)
        actions = [e["action"] for e in jobs_status.events_of(db, job_id)]
    finally:
        db.dispose()
    assert {r.source_namespace: r.copied for r in status.runs} == NAMESPACES
    assert actions.count("import_started") == 1 and actions.count("import_files_written") == 3, actions
    assert actions.index("job_resumed") < actions.index("import_started")  # resumed while the files were written
    directory = f"imports/big.load-{job_id}"
    keys = object_storage.object_keys(directory)
    assert [k for k in keys if "/alpha/" in k] == [f"{directory}/alpha/part-0000{i}.parquet" for i in range(3)]
    assert sandbox.snapshot("dst").keys() == sandbox.snapshot("src").keys()


def test_a_start_whose_answer_was_lost_is_taken_up_not_started_again(
    stack: Stack,
    object_storage: ObjectStorage,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pinecone started the import but its answer was lost (a 502 from a gateway, a read timeout): the step sent
    again finds that import and takes it up. It started a second one of the same files, which Pinecone failed
    ("Namespace … already exists"), and ended the runs of a complete import `list_failed`. Steps played in this
    process, the local data plane real."""
    sandbox = stack.pinecone
    job_id = planned_job(stack, object_storage, monkeypatch)
    real_start = BulkImports.start
    lost: list[str] = []

    def start_answer_lost(self: BulkImports, uri: str, **kwargs: Any) -> str:
        started = real_start(self, uri, **kwargs)  # the data plane starts it, then the answer is lost
        if lost:
            return started
        lost.append(started)
        raise RetryableError("Pinecone start_import: 502 Bad Gateway", status=502)

    monkeypatch.setattr(BulkImports, "start", start_answer_lost)
    ctx = worker_context(stack.database_url, stack.redis_url, dispatcher=SentTasks())

    with tally.counting() as counts:  # what Flower shows of the step: its writing threads' reads too
        assert bulk_import.step(ctx, job_id) == "wait"  # no answer: sent again
    assert counts.requests >= 2 * len(NAMESPACES), counts.result()  # a list and a fetch at least, each namespace
    assert bulk_import.step(ctx, job_id, 1) == "start"
    listed = sandbox.service("dst").imports.list(None, {}, None)["data"]
    assert [m["id"] for m in listed] == lost, listed
    events = jobs_status.events_of(ctx.db, job_id)
    assert [e["detail"]["import_id"] for e in events if e["action"] == "import_started"] == lost

    wait_until(lambda: bulk_import.step(ctx, job_id) == "imported", what="the import taken up", timeout_s=60)
    assert isinstance(ctx.dispatcher, SentTasks)
    for kind, run_id in ctx.dispatcher.sent:
        if kind == "verify":
            verifying.verify_run(ctx, run_id)
    runs = jobs_and_runs.runs_of(ctx.db, job_id)
    assert {r.source_namespace: (r.state, r.copied) for r in runs} == {
        ns: ("verified", n) for ns, n in NAMESPACES.items()
    }
    assert len(sandbox.service("dst").imports.list(None, {}, None)["data"]) == 1


class WorkerKilled(BaseException):
    """The worker's process killed mid-step (raised where a kill would stop it; no handler catches it)."""


def test_files_a_worker_killed_after_the_import_left_are_removed_by_the_step_sent_again(
    stack: Stack,
    object_storage: ObjectStorage,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between recording the import's end and removing its files: the step sent again (sweep, `resume`)
    found the job imported and did nothing, leaving a copy of every record in the bucket for good. Steps played in
    this process, the local data plane real."""
    job_id = planned_job(stack, object_storage, monkeypatch)
    ctx = worker_context(stack.database_url, stack.redis_url, dispatcher=SentTasks())
    real_remove = bulk_import._remove_files

    def killed(*args: Any) -> None:
        raise WorkerKilled

    monkeypatch.setattr(bulk_import, "_remove_files", killed)
    assert bulk_import.step(ctx, job_id) == "start"
    with pytest.raises(WorkerKilled):
        wait_until(lambda: bulk_import.step(ctx, job_id) == "imported", what="the import's end", timeout_s=60)
    assert object_storage.object_keys()  # left

    monkeypatch.setattr(bulk_import, "_remove_files", real_remove)
    assert bulk_import.step(ctx, job_id) == "imported"  # sent again

    assert object_storage.object_keys() == []
    assert bulk_import.step(ctx, job_id) == "imported"  # once only
    settled = [e["action"] for e in jobs_status.events_of(ctx.db, job_id) if e["action"] in bulk_import._FILES_SETTLED]
    assert settled == ["import_files_removed"]


def test_cancel_stops_pinecones_import_and_waits_until_it_ended(
    stack: Stack,
    object_storage: ObjectStorage,
    worker_context: Callable[..., WorkerContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelling the job stopped the fleet, not Pinecone, which went on importing every record (an erased
    creator's among them, once `erase` had found the namespaces empty, as its own advice has it: cancel, then
    erase). `cancel` cancels the import and returns once Pinecone says it ended."""
    sandbox = stack.pinecone
    job_id = planned_job(stack, object_storage, monkeypatch, pace_s=30)  # an import under way for the whole test
    ctx = worker_context(stack.database_url, stack.redis_url, dispatcher=SentTasks())
    assert bulk_import.step(ctx, job_id) == "start"
    [started] = sandbox.service("dst").imports.list(None, {}, None)["data"]
    assert started["status"] in ("Pending", "InProgress")

    cancelled = nsmigrate(stack, object_storage, "cancel", str(job_id))

    assert cancelled.exit_code == 0, cancelled.output
    assert f"Pinecone's import of job {job_id} ended: Cancelled" in cancelled.output
    [ended] = sandbox.service("dst").imports.list(None, {}, None)["data"]
    assert ended["status"] == "Cancelled"
    [event] = [e["detail"] for e in jobs_status.events_of(ctx.db, job_id) if e["action"] == "import_cancelled"]
    assert (event["import_id"], event["status"]) == (started["id"], "Cancelled")
    assert bulk_import.step(ctx, job_id, 1) == "stopped"  # the poll sent before: nothing more, nor a second cancel
    assert sum(e["action"] == "import_cancelled" for e in jobs_status.events_of(ctx.db, job_id)) == 1


def test_a_record_deleted_from_the_source_after_the_import_is_deleted_from_its_copy_by_sync(
    stack: Stack, object_storage: ObjectStorage
) -> None:
    """No batch row names what Pinecone imported, so `sync --propagate-deletes` found no id of the job's to delete:
    a record the application deleted after the files were written stayed in the target, and the namespace failed
    verification for good. The target namespace is new, made by the import: every id there is the job's."""
    sandbox = stack.pinecone
    load_source(sandbox)
    object_storage.configure(sandbox, "dst", pace_s=0.2)
    job_id = run_to_the_end(stack, object_storage, write_spec(stack, object_storage))
    Pinecone(api_key=SANDBOX_API_KEY).Index(host=sandbox.host("src")).delete(ids=["alpha-5"], namespace="alpha")
    sandbox.settle("src")

    assert nsmigrate(stack, object_storage, "verify", str(job_id)).exit_code == 1  # the copy holds one more
    synced = nsmigrate(stack, object_storage, "sync", str(job_id), "-n", "alpha", "--propagate-deletes", "--yes")

    assert synced.exit_code == 0, synced.output
    db = jobs_database.Database(stack.database_url)
    try:
        wait_for_job(db, job_id, lambda s: all(r.state == "verified" for r in s.runs), timeout_s=60)
    finally:
        db.dispose()
    assert "alpha-5" not in sandbox.snapshot("dst")["alpha"]
    assert len(sandbox.snapshot("dst")["alpha"]) == NAMESPACES["alpha"] - 1
