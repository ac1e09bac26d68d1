"""An erasure of records in a shared Pinecone namespace whose reads lag its writes (``Faults.freshness_lag_s``),
called directly on real services (the job table in Postgres, Redis, the local data plane through the real SDK).

The application writes one more record of the creator just before the erasure: the erasure's own listing (lagging)
does not show it, so it is not deleted. The check after the deletes must not call the place verified on a listing
that lags as well: it waits until the reads are shown to reflect the erasure's deletes and a point after them
(``freshness.complete_listing``), finds the record there and fails the place; `erase --resume` then erases it.
"""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.errors import ErasureFailed
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.spec.stores import store_spec_from_json
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import erasing
from nsmigrate.workers.stores import open_retrying_store
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.test_verify_cleanup import copied_job, make_records, make_spec
from tests.integration.test_verify_cleanup import ctx as ctx

DIM = 8
KEY_ENV = "NSMIGRATE_TEST_ERASE_LAG_PINECONE_KEY"
LAG_S = 3.0


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("erase-lag", DIM), IndexSpec("erase-lag-pod", DIM, kind="pod")]


def test_a_record_written_just_before_the_erasure_is_never_left_under_a_verified_receipt(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-lag-test")
    spec = store_spec_from_json({"kind": "pinecone", "host": sandbox.host("erase-lag"), "api_key_env": KEY_ENV})
    shared = make_records(3, prefix="m", creator_id="a.1") + make_records(3, prefix="o", seed=1, creator_id="a.10")
    sandbox.load("erase-lag", "public", [(r.id, list(r.values), dict(r.metadata)) for r in shared])
    sandbox.set_faults("erase-lag", Faults(freshness_lag_s=LAG_S))
    store = ctx.store(spec)
    [late] = make_records(1, prefix="late", seed=2, creator_id="a.1")
    store.upsert("public", [late])  # the application, right before the erasure: no lagging read shows it yet

    plan = erasing.plan_erasure(ctx.db, "a.1", None, open_retrying_store, extra_stores=[spec])
    erase_job = jobs_erasure.create_erasure(ctx.db, "erase-a.1", plan.spec("tester"), plan.places)
    [place] = jobs_erasure.places_of(ctx.db, erase_job)
    with pytest.raises(ErasureFailed, match="1 of their records still in 'public'"):
        erasing.erase_place(ctx, place.id)

    [checked] = jobs_erasure.places_of(ctx.db, erase_job)
    assert checked.state == "failed" and checked.erased == 3 and checked.verification["listing_complete"]
    assert [r.id for r in store.fetch("public", [late.id])] == [late.id]  # not deleted, not called erased
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None and not receipt["verified"]

    assert erasing.erase_place(ctx, place.id) == 1  # `erase --resume`: its reads show the record now

    assert store.fetch("public", [late.id]) == []
    assert len(store.fetch("public", [r.id for r in shared])) == 3  # a.10's records kept
    [again] = jobs_erasure.places_of(ctx.db, erase_job)
    assert again.state == "verified" and again.verification["listing_complete"]


@pytest.mark.parametrize("lsns", ["skipping", "none"])
def test_where_no_listing_can_be_shown_complete_an_erasure_polls_its_check_and_says_so(
    ctx: WorkerContext, sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, lsns: str
) -> None:
    """LSNs that skip, or none sent: the check lists until the deletes show, as it did before LSNs were known, and
    a records place is still erased and verified; with LSNs it says its listing was not shown complete."""
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-lag-test")
    spec = store_spec_from_json({"kind": "pinecone", "host": sandbox.host("erase-lag"), "api_key_env": KEY_ENV})
    shared = make_records(3, prefix="m", creator_id="b.1") + make_records(2, prefix="o", seed=1, creator_id="b.10")
    sandbox.load("erase-lag", lsns, [(r.id, list(r.values), dict(r.metadata)) for r in shared])
    sandbox.set_faults("erase-lag", Faults(freshness_lag_s=1.0, lsns=lsns))

    plan = erasing.plan_erasure(ctx.db, "b.1", None, open_retrying_store, extra_stores=[spec])
    erase_job = jobs_erasure.create_erasure(ctx.db, f"erase-b.1-{lsns}", plan.spec("tester"), plan.places)
    [place] = [p for p in jobs_erasure.places_of(ctx.db, erase_job) if p.namespace == lsns]

    assert erasing.erase_place(ctx, place.id) == 3

    [checked] = [p for p in jobs_erasure.places_of(ctx.db, erase_job) if p.id == place.id]
    assert checked.state == "verified", checked.verification
    assert checked.verification.get("listing_complete") is (False if lsns == "skipping" else None)
    store = ctx.store(spec)
    assert store.fetch(lsns, [r.id for r in shared[:3]]) == []
    assert len(store.fetch(lsns, [r.id for r in shared[3:]])) == 2  # b.10's records kept


@pytest.mark.parametrize(
    ("index", "creator", "stats_lag_s"),
    [
        ("erase-lag", "c.1", 0.0),
        ("erase-lag-pod", "p.1", 0.0),
        # the counts lag the other reads further (2026-07's vectorCount may): the copy's own listing says it is there
        ("erase-lag", "s.1", 600.0),
    ],
)
def test_a_copy_made_right_before_the_erasure_is_erased_though_no_listing_shows_it_yet(
    ctx: WorkerContext,
    sandbox: PineconeSandbox,
    monkeypatch: pytest.MonkeyPatch,
    index: str,
    creator: str,
    stats_lag_s: float,
) -> None:
    """nsmigrate copied twin t1 of a creator into its own namespace moments before the erasure: the index's namespace
    listing lags and does not show it yet. The plan finds it in the job table and waits for the index's reads (by
    LSN; a pod tells none, so until its listing shows it), and the copy is erased; a plan on the listing's word alone
    would leave the copy whole under a verified receipt."""
    monkeypatch.setenv(KEY_ENV, "pcsk-erase-lag-test")
    store = {"kind": "pinecone", "host": sandbox.host(index), "api_key_env": KEY_ENV}
    copy, source_ns = f"creator_{creator}_twin_t1", f"{creator}-t1"
    records = make_records(3, prefix="c")
    # the application's source namespace, there long before the job: its counts long settled
    sandbox.load(index, source_ns, [(r.id, list(r.values), dict(r.metadata)) for r in records])
    sandbox.set_faults(index, Faults(freshness_lag_s=LAG_S, stats_new_namespace_lag_s=stats_lag_s))
    spec = make_spec((store, store))
    copied_job(
        ctx, spec, {source_ns: records}, targets={source_ns: copy}, pairs={source_ns: (creator, "t1")}, settled=False
    )
    target = ctx.store(spec.target)
    assert copy not in target.namespaces()  # the listing has not caught up with the copy

    plan = erasing.plan_erasure(ctx.db, creator, None, open_retrying_store)

    [planned] = [p for p in plan.places if p["namespace"] == copy]
    assert planned["kind"] == "namespace" and planned["planned"] == len(records)
    assert stats_lag_s == 0 or copy not in target.namespaces()  # still not in the counts, found all the same
    erase_job = jobs_erasure.create_erasure(ctx.db, f"erase-{creator}", plan.spec("tester"), plan.places)
    for place in jobs_erasure.places_of(ctx.db, erase_job):
        erasing.erase_place(ctx, place.id)
    receipt = jobs_erasure.erasure_receipt(ctx.db, erase_job)
    assert receipt is not None and receipt["verified"], receipt
    assert target.fetch(copy, [r.id for r in records]) == []
    assert target.fetch(source_ns, [r.id for r in records]) == []  # the twin's source namespace, theirs too
