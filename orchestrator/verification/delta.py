"""What differs between the two sides of a job, id by id: the delta a ``sync`` copies forward and the restore a
``rollback`` copies back. Pure: no I/O here.

Both directions use the copy's own rule (``orchestrator.routing.route``: ``target_of`` and ``expected_metadata``) and
verification's comparison (``orchestrator.verification.comparisons.compare_record``), so "changed", "restored" and
"verified" cannot mean different things in different places.

- **sync** (``plan_delta``): a source record is *new* when its target namespace does not hold it, *changed* when the
  target's copy differs (values beyond tolerance, or metadata ≠ source + enrichment); a record a target namespace
  holds but the source no longer routes there (deleted from the source, or re-routed) is *stale*.
- **rollback** (``plan_restore``): an original that still exists must be what the forward copy made its target from
  (``expected_metadata(original) == target metadata``; judged forward, so keys the enrichment overwrote do not
  matter); a missing original is rebuilt from the target (``restore_record``) and that rebuild is checked by
  running the forward rule on it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
from nsmigrate.orchestrator.verification.proof import judge_copy

# --------------------------------------------------------------------------------------------------------- sync


@dataclass
class Delta:
    """What one sync scan found. Accumulates over chunks (``add``); lists of examples are capped, counts are exact.

    ``to_copy`` holds every new or changed id (the sync copies them); ``stale`` maps a target namespace to the ids it
    holds that the source no longer routes there (reported; deleted only with ``--propagate-deletes``).
    """

    to_copy: list[str] = field(default_factory=list)
    new_count: int = 0
    changed_count: int = 0
    changed_examples: list[dict[str, str]] = field(default_factory=list)
    unchanged_count: int = 0
    stale: dict[str, list[str]] = field(default_factory=dict)
    unroutable: list[dict[str, str]] = field(default_factory=list)
    unroutable_count: int = 0

    @property
    def stale_count(self) -> int:
        return sum(len(ids) for ids in self.stale.values())

    def add(self, other: Delta) -> None:
        self.to_copy.extend(other.to_copy)
        self.new_count += other.new_count
        self.changed_count += other.changed_count
        self.changed_examples = (self.changed_examples + other.changed_examples)[:MISMATCH_CAP]
        self.unchanged_count += other.unchanged_count
        for ns, ids in other.stale.items():
            self.stale.setdefault(ns, []).extend(ids)
        self.unroutable = (self.unroutable + other.unroutable)[:MISMATCH_CAP]
        self.unroutable_count += other.unroutable_count

    def counts(self) -> dict[str, Any]:
        """The numbers a ``sync`` event and report carry (plus a few example ids)."""
        stale_ids = sorted(i for ids in self.stale.values() for i in ids)
        return {
            "new": self.new_count,
            "changed": self.changed_count,
            "unchanged": self.unchanged_count,
            "to_copy": len(self.to_copy),
            "deleted_in_source": self.stale_count,
            "deleted_in_source_ids": stale_ids[:ID_CAP],
            "changed_examples": list(self.changed_examples[:10]),
            "unroutable": self.unroutable_count,
            "unroutable_examples": list(self.unroutable[:10]),
        }


def route_source(records: Sequence[Record], ctx: RouteContext) -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    """Target namespace → ids of ``records`` routed there, and the records that cannot be routed (with why): the
    namespaces a sync must fetch each id from."""
    by_ns: dict[str, list[str]] = {}
    unroutable: list[dict[str, str]] = []
    for record in records:
        try:
            target = target_of(record, ctx)
        except PlanError as e:
            unroutable.append({"id": record.id, "reason": e.message})
            continue
        if target is not None:  # a dropped record is fetched from no target
            by_ns.setdefault(target, []).append(record.id)
    return by_ns, unroutable


def plan_delta(
    source_records: Sequence[Record],
    target_records: Mapping[str, Sequence[Record]],
    ctx: RouteContext,
    tolerance: float,
    compare: Comparer | None = None,
) -> Delta:
    """Decide, per id, what a sync must do.

    Parameters:
        source_records: what the source holds now, for one chunk of ids.
        target_records: target namespace → the records found there when the chunk's ids were fetched from it (each
            source id from the namespace it routes to; ids gone from the source from every namespace the run wrote).
        ctx: the run's routing context (``routing.route_context``): the same rule the copy and verification use.
        tolerance: largest allowed |source − target| per value (``spec.verify.tolerance``).
        compare: how a target record is judged against its source when the job writes text
            (``textrecords.fields_comparer``); default: values within ``tolerance`` and metadata.

    Returns:
        A ``Delta``: new and changed ids in ``to_copy`` (source order), ids a target holds that the source no longer
        routes there in ``stale``, records whose twin has no creator (or makes a bad name) in ``unroutable`` — those
        are neither copied nor judged: the copy would fail on them.
    """
    found = {ns: {r.id: r for r in records} for ns, records in target_records.items()}
    delta = Delta()
    routed_to: dict[str, str] = {}
    skipped: set[str] = set()
    for src in source_records:
        try:
            ns, reason = judge_copy(src, found, ctx, tolerance, compare)
        except PlanError as e:
            skipped.add(src.id)
            delta.unroutable_count += 1
            if len(delta.unroutable) < MISMATCH_CAP:
                delta.unroutable.append({"id": src.id, "reason": e.message})
            continue
        if ns is None:
            continue  # dropped (unresolved: drop-with-report): never copied; a copy of it in a target is stale
        routed_to[src.id] = ns
        if src.id not in found.get(ns, {}):
            delta.new_count += 1
            delta.to_copy.append(src.id)
            continue
        if reason is None:
            delta.unchanged_count += 1
        else:
            delta.changed_count += 1
            delta.to_copy.append(src.id)
            if len(delta.changed_examples) < MISMATCH_CAP:
                delta.changed_examples.append({"id": src.id, "reason": reason})
    for ns, by_id in found.items():
        stale = sorted(i for i in by_id if i not in skipped and routed_to.get(i) != ns)
        if stale:
            delta.stale[ns] = stale
    return delta


# ----------------------------------------------------------------------------------------------------- rollback


def enrichment_keys(target_namespace: str, ctx: RouteContext) -> set[str]:
    """The metadata keys the forward copy sets on every record it writes into ``target_namespace`` — read off the
    copy's own rule by enriching an empty record, never listed a second time here."""
    return set(expected_metadata(Record("", [], {}), target_namespace, ctx))


def restore_record(
    target: Record, target_namespace: str, ctx: RouteContext, held: Mapping[str, Any] | None = None
) -> tuple[Record, str | None]:
    """The original a target record was copied from, rebuilt from the target: its metadata without the keys the
    enrichment added, but for the values ``held`` gives (the original's own under such keys, as the cleanup that
    deleted it recorded them: ``proof.held_enrichment``); for a record routed one by one into a twin namespace, with
    the twin id field it was routed by (routing proves the original had it: ``twin_id_field == <twin of the
    namespace>``).

    Returns:
        ``(record, problem)``: ``problem`` is None when the forward rule maps the rebuilt record back onto exactly
        ``target`` (same namespace, same metadata), else why the rebuild cannot be trusted.

    A value the enrichment *overwrote* (an original ``creator_id`` or constant key) is unknowable from the target; but
    originals that still exist are never rebuilt, and cleanup keeps every original with such a value
    (``proof.replaced_values``) but for an earlier copy's ``migrated_from``, which ``held`` gives back.
    """
    added = enrichment_keys(target_namespace, ctx)
    metadata = {k: v for k, v in (target.metadata or {}).items() if k not in added} | dict(held or {})
    if (twin := routed_twin(target_namespace, ctx)) is not None:
        metadata[ctx.twin_id_field] = twin
    rebuilt = Record(target.id, list(target.values), metadata)
    try:
        routed = target_of(rebuilt, ctx)
    except PlanError as e:
        return rebuilt, f"the rebuilt original cannot be routed: {e.message}"
    if routed != target_namespace:
        return rebuilt, f"the rebuilt original would route to {routed!r}, not {target_namespace!r}"
    problem = compare_metadata(expected_metadata(rebuilt, target_namespace, ctx), target.metadata or {})
    return rebuilt, None if problem is None else f"the rebuilt original does not enrich back to the target: {problem}"


@dataclass
class RestoreCheck:
    """What a rollback found about the originals of one forward run. Accumulates over chunks; ``passed`` when every
    id the forward job wrote and a target still holds has an original the forward rule maps onto that target.

    ``to_restore`` are rebuilt originals that are missing, for one chunk only (a rollback writes them, then checks
    again; ``add`` keeps their count and example ids, never the vectors, so a whole namespace is never held);
    ``mismatches``
    are originals that exist but differ (never overwritten: the rollback refuses); ``unrestorable`` are target
    records whose original cannot be rebuilt exactly; ``absent`` ids are in neither side (deleted since, or listed
    but gone before the forward copy fetched them): reported, not judged.
    """

    written: int = 0
    equal: int = 0
    to_restore: list[Record] = field(default_factory=list)
    restore_count: int = 0
    missing_examples: list[str] = field(default_factory=list)
    mismatches: list[dict[str, str]] = field(default_factory=list)
    mismatch_count: int = 0
    unrestorable: list[dict[str, str]] = field(default_factory=list)
    unrestorable_count: int = 0
    only_original: int = 0
    absent: int = 0
    found_in: dict[str, list[str]] = field(default_factory=dict)  # target namespace → ids of this run found there

    def add(self, other: RestoreCheck) -> None:
        self.written += other.written
        self.equal += other.equal
        self.restore_count += other.restore_count
        self.missing_examples = (self.missing_examples + other.missing_examples)[:ID_CAP]
        self.mismatches = (self.mismatches + other.mismatches)[:MISMATCH_CAP]
        self.mismatch_count += other.mismatch_count
        self.unrestorable = (self.unrestorable + other.unrestorable)[:MISMATCH_CAP]
        self.unrestorable_count += other.unrestorable_count
        self.only_original += other.only_original
        self.absent += other.absent
        for ns, ids in other.found_in.items():
            self.found_in.setdefault(ns, []).extend(ids)

    def reasons(self) -> list[str]:
        out: list[str] = []
        if self.mismatch_count:
            first = self.mismatches[0]
            out.append(
                f"{self.mismatch_count} originals differ from their migrated copies (e.g. {first['id']!r}: "
                f"{first['reason']})"
            )
        if self.unrestorable_count:
            first = self.unrestorable[0]
            out.append(
                f"{self.unrestorable_count} originals cannot be rebuilt exactly (e.g. {first['id']!r}: "
                f"{first['reason']})"
            )
        if self.restore_count:
            out.append(f"{self.restore_count} originals are missing (e.g. {self.missing_examples[0]!r})")
        return out

    @property
    def passed(self) -> bool:
        return not self.reasons()

    @property
    def summary(self) -> str:
        parts = [f"{self.equal}/{self.written - self.absent - self.only_original} originals equal to their copies"]
        if self.restore_count:
            parts.append(f"{self.restore_count} missing")
        if self.mismatch_count:
            parts.append(f"{self.mismatch_count} differ")
        if self.unrestorable_count:
            parts.append(f"{self.unrestorable_count} not rebuildable")
        if self.only_original:
            parts.append(f"{self.only_original} no longer in a target")
        if self.absent:
            parts.append(f"{self.absent} in neither")
        line = ", ".join(parts)
        return line if self.passed else f"FAILED: {line}"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "summary": self.summary,
            "reasons": self.reasons(),
            "written": self.written,
            "equal": self.equal,
            "missing_originals": self.restore_count,
            "missing_examples": sorted(self.missing_examples),
            "mismatch_count": self.mismatch_count,
            "mismatches": list(self.mismatches),
            "unrestorable_count": self.unrestorable_count,
            "unrestorable": list(self.unrestorable),
            "only_original": self.only_original,
            "absent": self.absent,
            "target_namespaces": sorted(self.found_in),
        }


def plan_restore(
    ids: Iterable[str],
    originals: Mapping[str, Record],
    targets: Mapping[str, Sequence[tuple[str, Record]]],
    ctx: RouteContext,
    tolerance: float,
    held: Mapping[str, Mapping[str, Any]] | None = None,
) -> RestoreCheck:
    """Judge the originals of one chunk of ids the forward job wrote.

    Parameters:
        ids: the chunk of written ids (from the forward run's done batches).
        originals: id → record as the original (forward source) namespace holds it now.
        targets: id → every (target namespace, record) where a target still holds it.
        ctx: the forward run's routing context.
        tolerance: largest allowed |Δ| per value.
        held: id → what its original held under the enrichment's keys, as its cleanup recorded it (``restore_record``).
    """
    check = RestoreCheck()
    for id_ in ids:
        check.written += 1
        original = originals.get(id_)
        if id_ not in targets:
            if original is None:
                check.absent += 1
            else:
                check.only_original += 1
            continue
        copies = targets[id_]
        if original is None:
            rebuilt, problem, homes = _rebuild(copies, ctx, (held or {}).get(id_))
            for ns in homes:
                check.found_in.setdefault(ns, []).append(id_)
            if problem is None:
                check.restore_count += 1
                check.to_restore.append(rebuilt)
                if len(check.missing_examples) < ID_CAP:
                    check.missing_examples.append(id_)
            else:
                check.unrestorable_count += 1
                if len(check.unrestorable) < MISMATCH_CAP:
                    check.unrestorable.append({"id": id_, "reason": problem})
            continue
        try:
            routed = target_of(original, ctx)
        except PlanError as e:
            reason: str | None = f"the original cannot be routed any more: {e.message}"
            ns = copies[0][0]
        else:
            ns, target = next(((n, r) for n, r in copies if n == routed), copies[0])
            reason = (
                f"the original now routes to {routed!r}, its copy is in {ns!r}"
                if routed != ns
                else compare_record(original, target, expected_metadata(original, ns, ctx), tolerance)
            )
        check.found_in.setdefault(ns, []).append(id_)  # the copy it is judged by: the one a rollback deletes
        if reason is None:
            check.equal += 1
        else:
            check.mismatch_count += 1
            if len(check.mismatches) < MISMATCH_CAP:
                check.mismatches.append({"id": id_, "reason": reason})
    return check


def _rebuild(
    copies: Sequence[tuple[str, Record]], ctx: RouteContext, held: Mapping[str, Any] | None
) -> tuple[Record, str | None, list[str]]:
    """The original of a missing id rebuilt from its copies (``restore_record``): from the one copy that rebuilds one
    the forward rule maps back onto it, and the namespaces of the copies it was judged by. Two that do are two
    candidates (a record re-routed since its copy, then synced; or another source namespace's record of the same id
    whose copy this rule maps back too): which one is the original's latest is unknown, and none is rebuilt."""
    rebuilt = [(ns, *restore_record(copy, ns, ctx, held)) for ns, copy in copies]
    fitting = [(ns, record) for ns, record, problem in rebuilt if problem is None]
    if len(fitting) == 1:
        return fitting[0][1], None, [fitting[0][0]]
    if not fitting:
        return rebuilt[0][1], rebuilt[0][2], [rebuilt[0][0]]
    names = ", ".join(repr(ns) for ns, _ in fitting)
    problem = (
        f"copies in {len(fitting)} namespaces ({names}) each rebuild an original: one is outdated (a record re-routed "
        "since its copy) or another source namespace's record of the same id; none is rebuilt: restore it by hand"
    )
    return fitting[0][1], problem, [ns for ns, _ in fitting]


def namespace_disposal(listed: Iterable[str], written_here: Iterable[str]) -> tuple[bool, list[str], list[str]]:
    """How a rollback removes one target namespace: ``(whole, delete_ids, kept_ids)``.

    The whole namespace goes only when it holds nothing but ids this job wrote there; otherwise only those ids are
    deleted and the others (written by someone else, e.g. after cut-over) are kept and reported.
    """
    listed_set, written = set(listed), set(written_here)
    kept = sorted(listed_set - written)
    return not kept, sorted(listed_set & written), kept
