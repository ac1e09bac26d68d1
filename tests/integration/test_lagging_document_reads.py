"""A cleanup whose source is a document index (API 2026-07), whose reads lag its writes, on real services (the job
table in Postgres, Redis, the local data plane through nsmigrate's own client). A document write is applied
asynchronously, and a document fetch lags like the index's list: the proof before each delete must not compare the
copy with an older version of its source document, or the newer one would go with no copy of it anywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import cleaning
from nsmigrate_sandbox.document_schema import DenseField, DocumentSchema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import DIM, RecordingDispatcher, copied_job, make_records, make_spec

KEY_ENV = "NSMIGRATE_TEST_DOC_LAG_PINECONE_KEY"
LAG_S = 3.0


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [document_index("docs-src", DocumentSchema(DenseField("embedding", DIM, "cosine"))), IndexSpec("dst", DIM)]


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=RecordingDispatcher())


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
