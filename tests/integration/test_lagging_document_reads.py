"""A cleanup whose source is a document index (API 2026-07), and an erasure in one, whose reads lag its writes, on
real services (the job table in Postgres, Redis, the local data plane through nsmigrate's own client). A document
write is applied asynchronously, and a document fetch lags like the index's list: a proof before a delete must not
compare the copy with an older version of its source document, nor an erasure judge a document by an older owner."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.stores import store_spec_from_json
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning, erasing
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import DIM, copied_job, make_records, make_spec
from tests.integration.test_verify_cleanup import ctx as ctx

KEY_ENV = "NSMIGRATE_TEST_DOC_LAG_PINECONE_KEY"
LAG_S = 3.0


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [document_index("docs-src", DocumentSchema(DenseField("embedding", DIM, "cosine"))), IndexSpec("dst", DIM)]


def test_a_document_written_just_before_the_cleanup_is_proved_as_it_is_now_and_kept(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-doc-lag-test")
    where = {"kind": "pinecone", "control_host": sandbox.control_host, "api_key_env": KEY_ENV}
    spec = make_spec(({**where, "index": "docs-src", "documents": {}}, {**where, "index": "dst"}))
    job = copied_job(ctx, spec, {"alpha": make_records(5)}, started=True)
    assert job.verify()["passed"]
    sandbox.set_faults("docs-src", Faults(freshness_lag_s=LAG_S))
    newer = Record("v-002", [9.0] * DIM, {"text": "edited", "n": 2})
    unchanged_problem = cleaning._unchanged_problem

    def the_application_writes_once_the_cleanup_listed(*args: Any, **kwargs: Any) -> str | None:
        job.source.upsert("alpha", [newer])  # its fetch shows the newer version only after the lag
        assert job.source.fetch("alpha", [newer.id])[0].metadata != newer.metadata
        return unchanged_problem(*args, **kwargs)

    monkeypatch.setattr(cleaning, "_unchanged_problem", the_application_writes_once_the_cleanup_listed)

    result = job.cleanup()

    assert result["action"] == "refused" and result["refused_ids"] == [newer.id], result
    [kept] = job.source.fetch("alpha", [newer.id])
    assert kept.metadata == newer.metadata  # the only copy of the newer version, never deleted
    assert job.state() == RunState.VERIFY_FAILED


def test_a_document_rewritten_as_another_creators_just_before_the_erasure_is_kept(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application gives a document of the subject's to another creator right before the erasure; a lagging
    document fetch still shows it as theirs. Erased on that word, the other creator's document would go."""
    monkeypatch.setenv(KEY_ENV, "pcsk-doc-lag-test")
    where = {"kind": "pinecone", "control_host": sandbox.control_host, "api_key_env": KEY_ENV}
    spec = store_spec_from_json({**where, "index": "docs-src", "documents": {}})
    store = ctx.store(spec)
    theirs = make_records(3, prefix="m", creator_id="a.1")
    store.upsert("public", [*theirs, *make_records(2, prefix="o", seed=1, creator_id="a.10")])
    sandbox.settle("docs-src")  # the application's, long before the erasure
    sandbox.set_faults("docs-src", Faults(freshness_lag_s=LAG_S))
    given = Record(theirs[0].id, theirs[0].values, {**theirs[0].metadata, "creator_id": "a.10"})
    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store, extra_stores=[spec])
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1-docs", plan.spec("tester"), plan.places)
    [place] = jobs_erasure.places_of(ctx.db, erase_job)
    store.upsert("public", [given])  # its fetch shows the new owner only after the lag

    assert erasing.erase_place(ctx, place.id) == 2

    [kept] = store.fetch("public", [given.id])
    assert kept.metadata["creator_id"] == "a.10"  # the other creator's document now: not erased
