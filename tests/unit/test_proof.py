"""The proof a deletion needs (``orchestrator.verification.proof``): an id is proven only when its copy exists where the
copy's
routing sends it and equals the original now. Pure, no I/O."""

from __future__ import annotations

from typing import Any

from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import RouteContext, route_records
from nsmigrate.orchestrator.spec.jobspec import Enrichment
from nsmigrate.orchestrator.verification.proof import Proof, failed_report, prove_copies, refusal

TWINS = {"t1": "a.1"}
T1 = "creator_a.1_twin_t1"


def ctx(target: str | None = T1) -> RouteContext:
    return RouteContext(
        source_label="seeds",
        source_namespace="" if target is None else "t1",
        target_namespace=target,
        enrichment=Enrichment(constants={"schema": 2}),
        twins=TWINS,
    )


def rec(rid: str, values: list[float] | None = None, **metadata: Any) -> Record:
    return Record(rid, values if values is not None else [0.1, 0.2], metadata)


def test_only_ids_with_an_equal_copy_now_are_proven() -> None:
    route = ctx()
    originals = [rec("equal", text="a"), rec("missing", text="b"), rec("changed", [0.1, 0.9], text="c")]
    copies = route_records([originals[0], rec("changed", text="c")], route)[T1]  # the copy's own enrichment

    proof = prove_copies(originals, {T1: copies}, route, tolerance=1e-6)

    assert proof.proven == ["equal"]
    assert proof.refused_count == 2
    reasons = {r["id"]: r["reason"] for r in proof.refused}
    assert reasons["missing"].startswith("missing in target") and T1 in reasons["missing"]
    assert reasons["changed"].startswith("values differ")


def test_a_copy_without_its_enrichment_or_in_another_namespace_is_not_a_proof() -> None:
    route = ctx()
    original = rec("x", text="a")
    bare = Record("x", [0.1, 0.2], {"text": "a"})  # the values, but not what the copy writes

    assert prove_copies([original], {T1: [bare]}, route, 1e-6).proven == []
    assert prove_copies([original], {"elsewhere": route_records([original], route)[T1]}, route, 1e-6).proven == []


def test_an_original_whose_values_the_enrichment_replaced_proves_its_copy_but_is_not_deleted() -> None:
    # The copy is as the job makes it (verification passes, a rollback may delete it), but the original holds
    # values the copy does not: another creator id and schema. Deleting it (cleanup) would lose them.
    route = ctx()
    originals = [rec("kept", creator_id="someone", schema=1, text="a"), rec("same", creator_id="a.1", schema=2)]
    copies = route_records(originals, route)[T1]

    assert prove_copies(originals, {T1: copies}, route, 1e-6).proven == ["kept", "same"]
    cleanup = prove_copies(originals, {T1: copies}, route, 1e-6, deleting_originals=True)

    assert cleanup.proven == ["same"] and cleanup.refused_count == 1
    reason = cleanup.refused[0]["reason"]
    assert "its metadata 'creator_id', 'schema' hold(s) other values" in reason and T1 in reason, reason


def test_an_unroutable_original_is_refused_and_an_absent_one_is_neither() -> None:
    route = ctx(target=None)  # routed by twin id metadata
    proof = prove_copies([rec("orphan", twin_id="nobody")], {}, route, 1e-6)

    assert proof.proven == [] and proof.refused_count == 1
    assert proof.refused[0]["reason"].startswith("cannot be routed")
    assert prove_copies([], {T1: [rec("copy-only")]}, ctx(), 1e-6).to_json()["refused_count"] == 0


def test_refusals_accumulate_and_the_failed_report_leads_with_the_reason() -> None:
    total = Proof()
    for n in range(3):
        chunk = Proof(proven=[f"p{n}"])
        chunk.refuse(f"r{n}", "missing in target")
        total.add(chunk)
    reason = refusal(total, "nothing was deleted")

    assert total.proven == ["p0", "p1", "p2"] and total.to_json()["refused_ids"] == ["r0", "r1", "r2"]
    assert reason.startswith("3 ids have no equal copy now, nothing was deleted (e.g. 'r0': missing in target)")
    report = failed_report({"passed": True, "summary": "3/3 ids present", "reasons": []}, reason)
    assert report["passed"] is False and report["reasons"] == [reason]
    assert report["summary"] == f"FAILED: {reason}; verified before: 3/3 ids present"
