"""`strategy: convert` end to end on the local data plane: a serverless vector index → Pinecone's convert (a snapshot,
in progress for a while, its reads lagging its writes) → a new document index, driven as a job by real workers; the
writes made to the source after the snapshot are synced by the fleet and every id and field verified against the
source. A delete after the snapshot is reported, fails the verification by name, and `sync --propagate-deletes`
mends it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import yaml
from pinecone import Pinecone

from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.snapshot import JobStatus
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from nsmigrate_sandbox.stack import SANDBOX_API_KEY, Stack
from tests.fleet_jobs import nsmigrate
from tests.polling import wait_for_job, wait_until

SOURCE, DOCS = "legacy-serverless", "converted-docs"
DIM = 8
NAMESPACES = {"": 40, "twin-a": 130, "twin-b": 7}
LAG_S = 1.0  # every index's reads lag its writes, the new one's too


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec(SOURCE, DIM, "cosine")]


def record(ns: str, i: int, scale: float = 1.0) -> tuple[str, list[float], dict[str, Any]]:
    values = (np.random.default_rng(i + 1000 * len(ns)).random(DIM) * scale).astype(np.float32).tolist()
    return f"{ns or 'd'}-{i}", values, {"chunk_text": f"chunk {i} of {ns or 'the default namespace'}", "i": i}


def load_source(sandbox: PineconeSandbox) -> None:
    for ns, n in NAMESPACES.items():
        sandbox.load(SOURCE, ns, [record(ns, i) for i in range(n)])


def write_spec(stack: Stack, **change: Any) -> str:
    control = stack.pinecone.control_host
    data = {
        "name": "to-documents",
        "strategy": "convert",
        "source": {"kind": "pinecone", "index": SOURCE, "control_host": control},
        "target": {
            "kind": "pinecone",
            "index": DOCS,
            "control_host": control,
            "documents": {"text_fields": ["chunk_text"]},
            "create": {"deletion_protection": "enabled", "tags": {"migrated": "convert"}},
        },
        "verify": {"count_timeout_s": 3, "freshness_timeout_s": 30},
        **change,
    }
    path = stack.workdir / "convert.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def settled(status: JobStatus) -> bool:
    return all(r.state in (RunState.VERIFIED, RunState.VERIFY_FAILED) for r in status.runs)


def documents(sandbox: PineconeSandbox, namespace: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=sandbox.host(DOCS))
    found = index.documents.fetch(namespace=namespace or "__default__", ids=ids).documents
    return {i: d.to_dict() if hasattr(d, "to_dict") else dict(d) for i, d in found.items()}


def test_a_serverless_index_is_converted_synced_and_verified(stack: Stack) -> None:
    sandbox = stack.pinecone
    load_source(sandbox)
    loaded = sandbox.service(SOURCE).store.counts(latest=True)
    sandbox.initial_faults = Faults(freshness_lag_s=LAG_S)  # what is created from now on (the new index)
    sandbox.set_faults(SOURCE, Faults(freshness_lag_s=LAG_S))
    sandbox.control.set_delays(conversion_delay_s=4.0)
    spec = write_spec(stack)

    planned = nsmigrate(stack, "plan", spec)
    assert planned.exit_code == 0, planned.output
    plan_text = " ".join(planned.output.split())
    assert f"target index {DOCS} will be created: serverless aws/us-east-1, document index: dense_vector " in plan_text
    assert "full-text string 'chunk_text'" in plan_text
    assert "strategy convert: Pinecone copies the index itself into a new document index, a snapshot" in plan_text
    assert sandbox.control.conversions.names() == [] and DOCS not in sandbox.names()  # a dry run

    stack.start_worker("list,copy,verify", 4, pool="threads")
    started = nsmigrate(stack, "run", spec)
    assert started.exit_code == 0, started.output
    job_id = int(started.stdout.strip().splitlines()[-1])
    wait_until(sandbox.control.conversions.names, what="Pinecone's conversion started", timeout_s=30)

    # Writes after the snapshot: a new record, a changed one, a deleted one. The conversion cannot have them.
    source = Pinecone(api_key=SANDBOX_API_KEY).Index(host=sandbox.host(SOURCE))
    late_id, late_values, late_meta = record("twin-a", 900)
    source.upsert(vectors=[(late_id, late_values, late_meta)], namespace="twin-a")
    changed_id, changed_values, changed_meta = record("twin-a", 3, scale=9.0)
    source.upsert(vectors=[(changed_id, changed_values, {**changed_meta, "edited": True})], namespace="twin-a")
    source.delete(ids=["d-0"], namespace="")
    converting = " ".join(nsmigrate(stack, "status", str(job_id)).output.split())
    assert "strategy convert: converting" in converting

    db = jobs_database.Database(stack.database_url)
    try:
        status = wait_for_job(db, job_id, settled, timeout_s=120)
        assert status.phase == "converted"
        states = {r.source_namespace: r.state for r in status.runs}
        assert states == {"": "verify_failed", "twin-a": "verified", "twin-b": "verified"}
        runs = {r.source_namespace: r for r in jobs_and_runs.runs_of(db, job_id)}
        twin_a = runs["twin-a"].verification or {}
        assert twin_a["ids_expected"] == 131 and twin_a["content_checked"] == 131 and twin_a["passed"]
        default = runs[""].verification or {}
        assert default["extra_ids"] == ["d-0"] and not default["passed"]

        events = jobs_status.events_of(db, job_id)
        actions = [e["action"] for e in events]
        for action in ("convert_converting", "conversion_started", "convert_converted"):
            assert actions.count(action) == 1, actions
        syncs = {e["detail"]["namespace"]: e["detail"] for e in events if e["action"] == "sync"}
        assert (syncs["twin-a"]["new"], syncs["twin-a"]["changed"]) == (1, 1)
        assert (syncs["twin-b"]["new"], syncs["twin-b"]["changed"]) == (0, 0)
        assert syncs[""]["deleted_in_source_ids"] == ["d-0"] and syncs[""]["deleted"] == 0  # reported, kept
    finally:
        db.dispose()

    # The new index: every source record a document with the same id, its text a full-text field; the writes after
    # the snapshot are there because the fleet synced them, not because the conversion saw them.
    ids = [late_id, changed_id, "twin-a-4"]
    found = documents(sandbox, "twin-a", ids)
    np.testing.assert_allclose(found[changed_id].pop("embedding"), changed_values, rtol=1e-6)
    assert found[changed_id] == {"_id": changed_id, **changed_meta, "edited": True}
    assert found[late_id]["chunk_text"] == late_meta["chunk_text"]
    described = Pinecone(api_key=SANDBOX_API_KEY, host=sandbox.control_host).describe_index(DOCS)
    assert described.deletion_protection == "enabled" and described.tags == {"migrated": "convert"}
    assert sandbox.stats(DOCS)["requests"].get("upsert_documents", 0) >= 1  # the sync's own writes
    # The test's own writes: nsmigrate wrote none, and its deletes (LSN probes: an id no record has) took none.
    written = sandbox.stats(SOURCE)["requests"]
    assert (written.get("upsert"), written.get("update")) == (2, None)
    assert sandbox.service(SOURCE).store.counts(latest=True) == {
        **loaded,
        "twin-a": loaded["twin-a"] + 1,
        "": loaded[""] - 1,
    }

    # The delete after the snapshot: `sync --propagate-deletes` removes it from the new index, proven absent from
    # the source right before, and the namespace verifies.
    synced = nsmigrate(stack, "sync", str(job_id), "--namespace", "__default__", "--propagate-deletes", "--yes")
    assert synced.exit_code == 0, synced.output
    db = jobs_database.Database(stack.database_url)
    try:
        # Every namespace verified, and the job finished: by its own statement, after the last verdict committed
        # (``maybe_finish_job``), so both are waited for; the wait fails with the last status seen.
        wait_for_job(
            db, job_id, lambda s: s.state == "finished" and all(r.state == "verified" for r in s.runs), timeout_s=60
        )
    finally:
        db.dispose()
    reported = json.loads(nsmigrate(stack, "report", str(job_id)).stdout)
    reports = {r["source_namespace"]: r["verification"] for r in reported}
    assert reports["__default__"]["ids_expected"] == 39 and reports["__default__"]["extra_count"] == 0
    shown = " ".join(nsmigrate(stack, "status", str(job_id)).output.split())
    assert "strategy convert: converted" in shown
