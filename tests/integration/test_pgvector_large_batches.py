"""A batch between two of the application's tables may hold more ids than one fetch (``jobspec.TABLE_BATCH_MAX_IDS``):
its rows pass as they are, but whatever reads them as records reads a fetch's worth at a time, so a batch of
thousands never becomes thousands of records at once. The copy task's own code, called in process, on real services
(the job table in Postgres, Redis, tables made with the application's DDL in "two databases": one database under two
URLs), an erased creator's rows in the source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.models import Batch
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.tenancy.erasure import Subject
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import copying, listing
from nsmigrate.workers.stores.pgvector import table_copies
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore
from nsmigrate_sandbox.seed import application_rows, create_application_table
from tests.integration.test_erasure_and_copies import Dispatcher, a_copy_job, erased
from tests.integration.test_verify_cleanup import URL_ENV, make_spec

pytestmark = [pytest.mark.integration]

DIM = 8
ROWS = 2_500
THEIRS = 40  # the first rows belong to the erased creator


@pytest.fixture
def ctx(job_table_url: str, redis_url: str, worker_context: Callable[..., WorkerContext]) -> WorkerContext:
    return worker_context(job_table_url, redis_url, dispatcher=Dispatcher())


def tables_apart(monkeypatch: pytest.MonkeyPatch, database_url: str, **fields: Any) -> JobSpec:
    """A copy from the application's ``embeddings_*`` tables to its ``copies_*`` tables in "another database" (the
    same one under a second URL), with ``fields``."""
    monkeypatch.setenv(URL_ENV, database_url)
    monkeypatch.setenv(URL_ENV + "_APART", f"{database_url}?application_name=apart")
    documented = {"kind": "pgvector", "schema": "documented"}
    return make_spec(
        (
            {**documented, "table": "embeddings", "database_url_env": URL_ENV},
            {**documented, "table": "copies", "database_url_env": URL_ENV + "_APART"},
        ),
        **fields,
    )


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of each ``COPY`` stream a copy of rows opens, in order."""
    opened: list[int] = []
    copy_rows = table_copies.copy_rows

    def streamed(*args: Any, ids: Sequence[str], **kwargs: Any) -> tuple[int, int] | None:
        opened.append(len(ids))
        return copy_rows(*args, ids=ids, **kwargs)

    monkeypatch.setattr(table_copies, "copy_rows", streamed)
    return opened


@pytest.mark.parametrize("constants", [{}, {"strategy": "moved"}], ids=["as rows", "as records"])
def test_a_batch_larger_than_a_fetch_reads_records_a_fetch_at_a_time_and_copies_every_row(
    ctx: WorkerContext,
    pg: sa.Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    constants: dict[str, str],
    streams: list[int],
) -> None:
    rows = application_rows(ROWS, DIM, seed=45)
    for i, row in enumerate(rows):
        row["metadata"] = {"row": i, "creator_id": "a.1" if i < THEIRS else "a.10"}
    with pg.begin() as conn:
        create_application_table(conn, "embeddings_public", DIM, rows)
    spec = tables_apart(
        monkeypatch, database_url, enrich={"creator_fields": False, "migrated_from": False, "constants": constants}
    )
    # A constant that names a column is written into it, so the batch goes as records (``_tables_only``).
    assert table_copies.between_databases(spec) == (not constants)
    erased(ctx, Subject("a.1"))  # every copy reads the batch's owners then: the rows themselves are read
    fetched: list[int] = []
    fetch = DocumentedPgvectorStore.fetch

    def counted(store: DocumentedPgvectorStore, namespace: str, ids: Sequence[str]) -> list[Record]:
        fetched.append(len(ids))
        return fetch(store, namespace, ids)

    monkeypatch.setattr(DocumentedPgvectorStore, "fetch", counted)
    ids = sorted(r["chunk_id"] for r in rows)

    written = copying.copy_batch(ctx, a_copy_job(ctx, spec, "public", "public_copy", ids))

    assert written == ROWS - THEIRS
    assert fetched and max(fetched) == FETCH_MAX_IDS and sum(fetched) == ROWS
    # The table's only batch, as rows: in parallel_upserts (2) COPY streams at once.
    assert streams == ([] if constants else [(ROWS - THEIRS) // 2] * 2)
    with pg.connect() as conn:
        landed = conn.execute(sa.text("SELECT chunk_id, strategy FROM copies_public_copy")).all()
    theirs = {r["chunk_id"] for r in rows[:THEIRS]}
    assert sorted(chunk_id for chunk_id, _ in landed) == sorted(set(ids) - theirs)
    assert {strategy for _, strategy in landed} == ({"moved"} if constants else {r["strategy"] for r in rows})


def test_a_table_larger_than_a_batch_is_listed_into_even_batches_each_copied_in_one_stream(
    ctx: WorkerContext, pg: sa.Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, streams: list[int]
) -> None:
    """18 rows at ``batch_size`` 8, 4 batches at once: cut as the ids come they would be 8, 8 and 2 (one stream
    idle while another copies 8); cut evenly, 5, 5, 5 and 3. A batch of several goes in one stream of its own."""
    rows = application_rows(18, DIM, seed=46)
    with pg.begin() as conn:
        create_application_table(conn, "embeddings_public", DIM, rows)
    spec = tables_apart(monkeypatch, database_url, batch_size=8, max_batches_in_flight=4)
    plan = Plan(runs=[NamespacePlan("public", "public_copy", len(rows), 3)], estimate=Estimate(0, 0, 0, 0, 0, 0.0))
    job_id = jobs_and_runs.create_job(ctx.db, spec, plan, source_label="embeddings", target_label="copies")
    [run] = jobs_and_runs.runs_of(ctx.db, job_id)

    listing.list_run(ctx, run.id)

    with ctx.db.transaction() as s:
        batches = s.execute(sa.select(Batch.id, Batch.ids).where(Batch.run_id == run.id).order_by(Batch.seq)).all()
    assert [len(ids) for _, ids in batches] == [5, 5, 5, 3]
    assert sorted(i for _, ids in batches for i in ids) == sorted(r["chunk_id"] for r in rows)
    assert [copying.copy_batch(ctx, batch_id) for batch_id, _ in batches] == [5, 5, 5, 3]
    assert streams == [5, 5, 5, 3]
