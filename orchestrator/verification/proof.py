"""The proof a destructive step needs right before it deletes: an equal copy exists now. Pure: no I/O here.

An earlier verdict is a reason to try, never the proof: between a verification and a cleanup (or a rollback) a
person, an application or another job may delete the copy or change the original. So each step that deletes fetches
both sides of the ids it is about to delete, chunk by chunk, and deletes only the ids ``prove_copies`` proves.

The comparison is the one verification and sync use: the copy is where the copy's routing sends the original
(``routing.target_of``), its values equal within the tolerance and its metadata equals the original's plus the
enrichment (``comparisons.compare_record``), or for a job that writes text its fields (``orchestrator.routing.text``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import RouteContext, expected_metadata, routed_twin, target_of
from nsmigrate.orchestrator.verification.comparisons import (
    ID_CAP,
    MISMATCH_CAP,
    Comparer,
    compare_metadata,
    compare_record,
)


def judge_copy(
    original: Record,
    found: Mapping[str, Mapping[str, Record]],
    ctx: RouteContext,
    tolerance: float,
    compare: Comparer | None = None,
) -> tuple[str | None, str | None]:
    """The namespace ``original`` routes to and why the record ``found`` there is not its copy (None: it is);
    ``(None, None)`` for an original its routing drops (``unresolved: drop-with-report``): it has no copy by design.

    Parameters:
        original: the record the copy was made from, as it is now.
        found: target namespace → id → the records fetched there.
        ctx: the run's routing context (``routing.route_context``).
        tolerance: largest allowed |original − copy| per value (``spec.verify.tolerance``).
        compare: how a text job's copy is judged (``textrecords.fields_comparer``); default ``compare_record``.

    Raises:
        PlanError: the original cannot be routed (its twin has no creator, or makes a bad name).
    """
    ns = target_of(original, ctx)
    if ns is None:
        return None, None
    copy = found.get(ns, {}).get(original.id)
    expected = expected_metadata(original, ns, ctx)
    reason = compare(original, copy, expected) if compare else compare_record(original, copy, expected, tolerance)
    return ns, reason


@dataclass
class Proof:
    """Which ids of a chunk may be deleted (``proven``) and which may not (``refused``: capped examples with the
    reason; the count is exact). Accumulates over chunks (``add``)."""

    proven: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    refused_count: int = 0
    #: Proven ids whose delete failed without saying it was not applied (a timeout, a reset, retries run out): the
    #: store may have deleted them, so they count as deleted wherever that decides what is safe.
    maybe_deleted: list[str] = field(default_factory=list)
    #: Of one chunk's proven originals, what those holding keys the enrichment writes (or takes away) held there
    #: (id → key → value): their copies cannot show it, so a cleanup records it for a rollback (``held_enrichment``).
    held: dict[str, dict[str, Any]] = field(default_factory=dict)

    def refuse(self, id_: str, reason: str) -> None:
        self.refused_count += 1
        if len(self.refused) < MISMATCH_CAP:
            self.refused.append({"id": id_, "reason": reason})

    def add(self, other: Proof) -> None:
        self.proven.extend(other.proven)
        self.maybe_deleted.extend(other.maybe_deleted)
        self.refused = (self.refused + other.refused)[:MISMATCH_CAP]
        self.refused_count += other.refused_count

    def to_json(self) -> dict[str, Any]:
        """What an audit event and a run's cleanup detail carry: counts and example ids, never the proven list."""
        return {
            "proven": len(self.proven),
            "refused_count": self.refused_count,
            "refused_ids": sorted(r["id"] for r in self.refused)[:ID_CAP],
            "refused": list(self.refused),
        }


#: The key of nsmigrate's own lineage on every copy (``enrich.migrated_from``).
LINEAGE_KEY = "migrated_from"


def replaced_values(original: Record, expected: Mapping[str, Any]) -> str | None:
    """Why deleting ``original`` would lose a metadata value: the copy's enrichment (its creator fields, a constant)
    replaced one the original holds with another in ``expected`` (its copy's metadata), so the original is its only
    record; None when it replaced none. ``migrated_from`` is nsmigrate's own lineage: an earlier copy's gives way to
    this one's (data copied again)."""
    replaced = [
        key
        for key, value in original.metadata.items()
        if key in expected and key != LINEAGE_KEY and compare_metadata({key: value}, {key: expected[key]}) is not None
    ]
    if not replaced:
        return None
    shown = ", ".join(repr(key) for key in replaced[:5])
    return (
        f"its metadata {shown} hold(s) other values than the job's enrichment wrote into the copy: the original is "
        "their only record (leave those keys out of `enrich`, or rename them in the source, then copy again)"
    )


def held_enrichment(original: Record, added: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """What ``original`` holds that its copy cannot show: its values under the keys of ``added`` (what the enrichment
    writes into every copy: a value equal to the enrichment's, or an earlier copy's lineage, which ``replaced_values``
    lets go), and the keys the enrichment took away (``expected``, its copy's metadata, lacks them: a NULL metadata's
    mark in a pgvector table). A rollback rebuilding the original from its copy (``delta.restore_record``) strips
    every added key but these, and gives them back."""
    return {k: v for k, v in sorted(original.metadata.items()) if k in added or k not in expected}


def _restored_anyway(added: dict[str, Any], target_namespace: str, ctx: RouteContext) -> dict[str, Any]:
    """``added`` but for the twin id a record routed one by one into a twin namespace holds: the rollback's rebuild
    puts it back from the namespace (``delta.restore_record``), so it is never recorded (it is every such record's)."""
    twin = routed_twin(target_namespace, ctx)
    if twin is not None and added.get(ctx.twin_id_field) == twin:
        return {k: v for k, v in added.items() if k != ctx.twin_id_field}
    return added


def prove_copies(
    originals: Sequence[Record],
    found: Mapping[str, Sequence[Record]],
    ctx: RouteContext,
    tolerance: float,
    compare: Comparer | None = None,
    *,
    deleting_originals: bool = False,
) -> Proof:
    """Judge one chunk: an id is proven when its copy exists where the routing sends it and equals the original now.

    Parameters:
        originals: the records fetched from the original side now (a cleanup's source; a rollback's originals).
            An id not among them is neither proven nor refused: there is no original to compare; nor is one its
            routing drops (``unresolved: drop-with-report``): it was never copied, and is never deleted.
        found: target namespace → the records fetched there now for the chunk's ids.
        ctx, tolerance, compare: as ``judge_copy``.
        deleting_originals: the originals are what is deleted (a cleanup): one whose metadata values the enrichment
            replaced in the copy is refused too (``replaced_values``); a rollback keeps them, so they prove its copy.
            What a proven one held under the keys the enrichment writes is in ``Proof.held``.
    """
    by_ns = {ns: {r.id: r for r in records} for ns, records in found.items()}
    proof = Proof()
    added_in: dict[str, dict[str, Any]] = {}  # target namespace → what the enrichment writes there
    for original in originals:
        try:
            ns, reason = judge_copy(original, by_ns, ctx, tolerance, compare)
        except PlanError as e:
            proof.refuse(original.id, f"cannot be routed: {e.message}")
            continue
        if ns is None:
            continue
        expected = expected_metadata(original, ns, ctx) if deleting_originals else {}
        if reason is None and deleting_originals:
            reason = replaced_values(original, expected)
        if reason is None:
            proof.proven.append(original.id)
            if deleting_originals:
                if ns not in added_in:
                    added_in[ns] = _restored_anyway(expected_metadata(Record("", [], {}), ns, ctx), ns, ctx)
                if held := held_enrichment(original, added_in[ns], expected):
                    proof.held[original.id] = held
        else:
            proof.refuse(original.id, f"{reason} (target namespace {ns!r})")
    return proof


def refusal(proof: Proof, what: str) -> str:
    """One line saying which ids were refused and why, e.g. ``3 ids … (e.g. 'v-1': missing in target …)``;
    ``what`` says what was not done (``"not deleted from the source"``)."""
    first = proof.refused[0]
    return (
        f"{proof.refused_count} ids have no equal copy now, {what} (e.g. {first['id']!r}: {first['reason']}); "
        f"refused ids: {', '.join(repr(r['id']) for r in proof.refused[:10])}"
        + (" …" if proof.refused_count > 10 else "")
    )


def failed_report(report: dict[str, Any] | None, reason: str) -> dict[str, Any]:
    """A run's verification report made to fail with ``reason`` in front: what a refusal by id leaves on the run,
    so ``status`` and ``report`` say why the run is ``verify_failed`` until sync and verification replace it."""
    before = dict(report or {})
    summary = str(before.get("summary", "")).removeprefix("FAILED: ")
    return {
        **before,
        "passed": False,
        "reasons": [reason, *before.get("reasons", [])],
        "summary": f"FAILED: {reason}" + (f"; verified before: {summary}" if summary else ""),
    }
