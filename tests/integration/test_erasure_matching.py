"""Which records an erasure takes from a shared namespace: those Pinecone's own filter calls the subject's. A metadata
value may be a list of strings, and Pinecone's ``$eq`` matches a list that holds the operand (its docs: "a filter on
that field matches when any value in the array satisfies it"), so ``creator_id: ["zz9"]`` is creator ``zz9``'s
vector. The erasure's delete and the receipt's check after it read records by one rule; here on real services: the
job table in Postgres, Redis, pgvector (a JSONB list) and the local data plane through the real SDK.
"""

from __future__ import annotations

from typing import Any

import pytest
from pinecone import Pinecone

from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.limits import FETCH_MAX_IDS
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import erasing
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate.workers.stores.base import iter_all_ids
from tests.integration import test_verify_cleanup as verify_cleanup
from tests.integration.test_verify_cleanup import copied_job, make_records, make_spec
from tests.settling import settle

# The fixtures of verification's tests: two pgvector tables, or two indexes of the local data plane, and a context.
sandbox_indexes, store_specs, ctx = verify_cleanup.sandbox_indexes, verify_cleanup.store_specs, verify_cleanup.ctx

#: The shared namespace's vectors: whose each is, by the test's own reading of Pinecone's filter rule.
OWNERS: dict[str, Any] = {
    "listed": ["zz9"],
    "listed-among-others": ["zz8", "zz9"],
    "scalar": "zz9",
    "other-listed": ["zz8"],
    "other-scalar": "zz8",
    "prefix-listed": ["zz90"],
}
THEIRS = {"listed", "listed-among-others", "scalar"}


def test_an_erasure_takes_a_vector_whose_id_is_in_a_list_and_checks_it_gone_by_the_same_rule(
    ctx: WorkerContext, store_specs: tuple[dict[str, Any], ...]
) -> None:
    spec = make_spec(store_specs)
    copied_job(ctx, spec, {"t1": make_records(2, prefix="m")}, pairs={"t1": ("zz9", "t1")})
    records = make_records(len(OWNERS), prefix="p")
    source = ctx.store(spec.source)
    source.upsert(
        "public",
        [Record(id_, r.values, {"creator_id": owner}) for (id_, owner), r in zip(OWNERS.items(), records, strict=True)],
    )
    settle(spec.source, spec.target)  # the application's and the copy's, long before the erasure
    if store_specs[0]["kind"] == "pinecone":  # the service's own filter reads the records so
        index = Pinecone(api_key="pcsk-erase-match").Index(host=store_specs[0]["host"])
        matched = index.query(vector=records[0].values, top_k=10, namespace="public", filter={"creator_id": "zz9"})
        assert {m.id for m in matched.matches} == THEIRS

    plan = erasing.plan_erasure(ctx.db, "zz9", None, open_retrying_store)
    [public] = [p for p in plan.places if p["namespace"] == "public"]
    assert public["kind"] == "records" and public["planned"] == len(THEIRS)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-zz9", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erase_job):
        erasing.erase_place(ctx, place.id)

    left = {r.id for r in source.fetch("public", list(OWNERS))}
    assert left == set(OWNERS) - THEIRS
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None and receipt["verified"]
    [row] = [r for r in receipt["places"] if r["namespace"] == "public"]
    assert row["erased"] == len(THEIRS) and row["check"]["found"] == 0


def test_a_record_rewritten_as_another_creators_after_the_listing_is_kept(
    ctx: WorkerContext, store_specs: tuple[dict[str, Any], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids are a namespace's keys, so the application may replace one creator's record with another's under the same
    id. The erasure decides whose a record is by fetching it: a decision taken long before the delete (a namespace's
    every record fetched, then deleted) would delete the other creator's record written in between. Each chunk is
    fetched right before its delete instead."""
    spec = make_spec(store_specs)
    copied_job(ctx, spec, {"t1": make_records(2, prefix="m")}, pairs={"t1": ("zz9", "t1")})
    records = make_records(FETCH_MAX_IDS + 200, prefix="q")
    source = ctx.store(spec.source)
    owners = {r.id: "zz8" if i % 10 == 0 else "zz9" for i, r in enumerate(records)}
    for start in range(0, len(records), FETCH_MAX_IDS):
        chunk = records[start : start + FETCH_MAX_IDS]
        source.upsert("public", [Record(r.id, r.values, {"creator_id": owners[r.id]}) for r in chunk])
    settle(spec.source, spec.target)  # the application's and the copy's, long before the erasure
    by_id = {r.id: r for r in records}
    [*_, rewritten] = [by_id[i] for i in iter_all_ids(source, "public") if owners.get(i) == "zz9"]  # in the last chunk
    plan = erasing.plan_erasure(ctx.db, "zz9", None, open_retrying_store)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-zz9-rewrite", plan.spec("tester"), plan.places)
    [public] = [p for p in jobs_erasure.places_of(ctx.db, erase_job) if p.namespace == "public"]

    fetched_for_owner = erasing.subject_ids

    def the_application_rewrites_a_record_meanwhile(*args: Any, **kwargs: Any) -> list[str]:
        theirs = fetched_for_owner(*args, **kwargs)
        if owners[rewritten.id] == "zz9":  # once, after the erasure's first look at the namespace's records
            source.upsert("public", [Record(rewritten.id, rewritten.values, {"creator_id": "zz8"})])
            owners[rewritten.id] = "zz8"
        return theirs

    monkeypatch.setattr(erasing, "subject_ids", the_application_rewrites_a_record_meanwhile)
    erasing.erase_place(ctx, public.id)

    [kept] = source.fetch("public", [rewritten.id])
    assert kept.metadata["creator_id"] == "zz8"  # the other creator's record, not deleted
    ids = [r.id for r in records]
    left = {
        r.id
        for start in range(0, len(ids), FETCH_MAX_IDS)
        for r in source.fetch("public", ids[start : start + FETCH_MAX_IDS])
    }
    assert left == {i for i, owner in owners.items() if owner == "zz8"}
    [done] = [p for p in jobs_erasure.places_of(ctx.db, erase_job) if p.id == public.id]
    assert done.state == "verified" and done.erased == len(records) - len(left)


@pytest.mark.parametrize("store_specs", ["pgvector"], indirect=True)
def test_a_row_rewritten_as_another_creators_between_its_fetch_and_its_delete_is_kept(
    ctx: WorkerContext, store_specs: tuple[dict[str, Any], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres can delete a row only as the erasure's fetch saw it: one rewritten as another creator's in that
    instant keeps its new version, and the other creator's record with it (Pinecone cannot: its delete names ids)."""
    spec = make_spec(store_specs)
    copied_job(ctx, spec, {"t1": make_records(2, prefix="m")}, pairs={"t1": ("zz9", "t1")})
    records = make_records(4, prefix="w")
    source = ctx.store(spec.source)
    source.upsert("public", [Record(r.id, r.values, {"creator_id": "zz9"}) for r in records])
    plan = erasing.plan_erasure(ctx.db, "zz9", None, open_retrying_store)
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-zz9-instant", plan.spec("tester"), plan.places)
    [public] = [p for p in jobs_erasure.places_of(ctx.db, erase_job) if p.namespace == "public"]
    rewritten = records[1]
    fetched_for_owner = erasing.subject_ids
    looks: list[int] = []

    def rewritten_right_after_the_fetch(*args: Any, **kwargs: Any) -> list[str]:
        theirs = fetched_for_owner(*args, **kwargs)
        looks.append(1)
        if len(looks) == 1:  # the chunk's fetch said it was theirs; the application rewrites it before the delete
            source.upsert("public", [Record(rewritten.id, rewritten.values, {"creator_id": "zz8"})])
        return theirs

    monkeypatch.setattr(erasing, "subject_ids", rewritten_right_after_the_fetch)
    erasing.erase_place(ctx, public.id)

    assert [r.metadata for r in source.fetch("public", [r.id for r in records])] == [{"creator_id": "zz8"}]
    [done] = [p for p in jobs_erasure.places_of(ctx.db, erase_job) if p.id == public.id]
    assert done.state == "verified" and done.erased == 3
