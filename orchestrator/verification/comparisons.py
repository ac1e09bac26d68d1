"""Verification logic: pure comparisons of what the source holds with what the target holds. No I/O here.

``workers.steps.verifying`` lists, fetches and counts; the functions below judge what it found, and ``Report`` turns the
findings into one verdict (``passed``), one line for people (``summary``) and the JSON stored on the namespace run.

The rules, in one place:

- **ids**: every source id must be in the target namespace it was routed to (``compare_id_sets``). Ids in the target
  that the source does not have fail verification only when no other run writes into that target namespace.
- **contents**: values are compared as float32 (what Pinecone and pgvector store), within ``tolerance`` per value
  (both sides' values in the same form a store sent, byte for byte, are equal without being read: ``same_bytes``);
  the target's metadata must *equal* the source's metadata plus the enrichment the copy adds (``compare_record``).
- **counts**: the target's count, polled until stable (``counts_stable``), must equal the number of source ids.
- **queries** (optional): the top-k ids of sample queries must largely agree (``query_summary``).
- **fingerprint**: an order-independent hash of the source ids, stored so cleanup can tell a changed source.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nsmigrate.orchestrator.pgvector_rows import INT_KEYS_KEY
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.records.report_values import shown
from nsmigrate.orchestrator.records.vectors import Record, SparseValues, same_bytes
from nsmigrate.orchestrator.routing.text import text_fields
from nsmigrate.orchestrator.spec.jobspec import JobSpec

#: How many ids / mismatches a report lists (the counts are always complete).
ID_CAP = 100
MISMATCH_CAP = 50


# ------------------------------------------------------------------------------------------------------ id sets


@dataclass(frozen=True)
class IdDiff:
    """Ids expected but absent (``missing``) and present but not expected (``extra``): sorted, capped lists plus
    the full counts."""

    missing: list[str]
    extra: list[str]
    missing_count: int
    extra_count: int

    @property
    def equal(self) -> bool:
        return self.missing_count == 0 and self.extra_count == 0


def compare_id_sets(expected: set[str], actual: set[str], cap: int = ID_CAP) -> IdDiff:
    """Diff two id sets; the lists are sorted and hold at most ``cap`` ids each, the counts are exact."""
    missing = expected - actual
    extra = actual - expected
    return IdDiff(
        missing=sorted(missing)[:cap],
        extra=sorted(extra)[:cap],
        missing_count=len(missing),
        extra_count=len(extra),
    )


# ----------------------------------------------------------------------------------------------------- contents


def _same_value(a: Any, b: Any) -> bool:
    """Metadata equality as the stores keep it: Pinecone returns every number as a float (3 → 3.0), so numbers
    compare by value; but a bool is not a number here (``True == 1`` must not hide a changed type), and numbers
    compare exactly (a JSON integer in a pgvector JSONB: above 2**53 two of them share one float, and a float copy
    of it is another number). Python compares an int with a float exactly, without rounding the int."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def compare_values(source: Sequence[float], target: Sequence[float], tolerance: float) -> str | None:
    """None when both vectors are equal as float32 within ``tolerance`` per value, else why not."""
    if same_bytes(source, target):  # the same floats, equal under every rule below: neither side decoded
        return None
    if len(source) != len(target):
        return f"dimension differs: expected {len(source)}, got {len(target)}"
    if not len(source):
        return None
    import numpy as np  # here, not at the top: planning imports this module's metadata rule and needs no numpy

    # Values beyond float32's range become ±inf, as a float32 store would hold them; that is not an error here.
    # float64 for the difference: the comparison itself must not round a real difference away. Equal values
    # (infinities included) differ by 0, not by inf - inf = NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.asarray(source, dtype=np.float32)
        b = np.asarray(target, dtype=np.float32)
        diff = np.where(a == b, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
    if np.isnan(diff).any():
        # NaN never equals anything; a NaN on either side is a difference unless both sides hold NaN there.
        both_nan = np.isnan(a) & np.isnan(b)
        if not (np.isnan(diff) <= both_nan).all():
            i = int(np.argmax(np.isnan(diff) & ~both_nan))
            return f"values differ (NaN at index {i})"
        diff = np.where(both_nan, 0.0, diff)
    worst = int(np.argmax(diff))
    if diff[worst] > tolerance:
        return f"values differ (max |Δ| {float(diff[worst]):.3g} at index {worst})"
    return None


def compare_metadata(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> str | None:
    """None when ``actual`` equals ``expected`` key for key, else the first differing key (sorted order). A target
    row that says which of its ``metadata`` numbers are integers (``INT_KEYS_KEY``) where its source did not (a
    Pinecone source, whose numbers are all floats: a dual write or a sync kept the application's ``3``) is judged by
    its values alone."""
    keys = set(expected) | set(actual)
    if INT_KEYS_KEY not in expected:
        keys.discard(INT_KEYS_KEY)
    for key in sorted(keys):
        if key not in actual:
            return f"metadata key {key!r}: expected {shown(key, expected[key])}, got None"
        if key not in expected:
            return f"metadata key {key!r}: not expected, got {shown(key, actual[key])}"
        if not _same_value(expected[key], actual[key]):
            return f"metadata key {key!r}: expected {shown(key, expected[key])}, got {shown(key, actual[key])}"
    return None


def compare_record(
    source: Record, target: Record | None, expected_metadata: Mapping[str, Any], tolerance: float
) -> str | None:
    """Compare one copied record with its source.

    Parameters:
        source: the record as the source holds it now.
        target: the record fetched from its target namespace, or None when the target does not have it.
        expected_metadata: the source metadata plus the enrichment the copy adds
            (``orchestrator.routing.route.expected_metadata``); the target's metadata must equal it.
        tolerance: largest allowed absolute difference per value, after casting both sides to float32.

    Returns:
        None when equal, else a short reason such as ``"values differ (max |Δ| 0.31 at index 7)"``.
    """
    if target is None:
        return "missing in target"
    if target.id != source.id:
        return f"id differs: expected {source.id!r}, got {target.id!r}"
    return (
        compare_values(source.values, target.values, tolerance)
        or compare_sparse(source.sparse_values, target.sparse_values, tolerance)
        or compare_metadata(expected_metadata, target.metadata or {})
    )


def compare_sparse(source: SparseValues | None, target: SparseValues | None, tolerance: float) -> str | None:
    """None when both records have no sparse values, or the same indices with values equal as float32 within
    ``tolerance``; else why not."""
    if source is None and target is None:
        return None
    if source is None or target is None:
        return "sparse values missing in target" if target is None else "sparse values in target, none in source"
    if list(source.indices) != list(target.indices):
        return f"sparse indices differ: expected {len(source.indices)}, got {len(target.indices)} or other indices"
    reason = compare_values(source.values, target.values, tolerance)
    return None if reason is None else f"sparse {reason}"


# --------------------------------------------------------------------------------------------- sampling, helpers


def fingerprint(ids: Iterable[str]) -> str:
    """An order-independent fingerprint of a set of ids: sha256 over the sorted ids, first 16 hex digits.

    Each id is length-prefixed, so no choice of id characters can make two different id sets hash alike.
    """
    h = hashlib.sha256()
    for id_ in sorted(set(ids)):
        data = id_.encode()
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.hexdigest()[:16]


def counts_stable(samples: Sequence[int], needed: int = 3) -> bool:
    """True when the last ``needed`` count readings are equal (eventually consistent counts have settled)."""
    if needed < 1:
        raise ValueError(f"needed must be ≥ 1, got {needed}")
    return len(samples) >= needed and len(set(samples[-needed:])) == 1


def sample_ids(ids: Sequence[str], n: int, seed: str) -> list[str]:
    """A deterministic sample of ``n`` ids: the same ``ids`` (in any order) and ``seed`` give the same sample.

    Ids are ranked by sha256(seed, id), so the choice does not depend on listing order and a re-run of
    verification checks the same vectors. ``n ≥ len(ids)`` returns every id.
    """
    unique = sorted(set(ids))
    if n >= len(unique):
        return unique
    if n <= 0:
        return []
    prefix = seed.encode() + b"\x00"
    return sorted(unique, key=lambda i: hashlib.sha256(prefix + i.encode()).digest())[:n]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation between closest ranks.

    Raises:
        ValueError: ``values`` is empty or ``p`` is outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"p must be within 0..100, got {p}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def query_summary(
    source_results: Sequence[Sequence[str]],
    target_results: Sequence[Sequence[str]],
    latencies_ms: Sequence[float],
    top_k: int,
    min_overlap: float,
) -> dict[str, Any]:
    """Judge sample queries run against both sides: how many top-k id lists are the same set, the mean overlap
    (|source ∩ target| / |source|), and the target's latency P50/P95 in milliseconds.

    ``passed`` needs a mean overlap ≥ ``min_overlap`` (the spec's ``verify.query_min_overlap``).
    """
    overlaps: list[float] = []
    same = 0
    for s, t in zip(source_results, target_results, strict=True):
        s_set, t_set = set(s), set(t)
        same += s_set == t_set
        overlaps.append(len(s_set & t_set) / len(s_set) if s_set else float(not t_set))
    mean = sum(overlaps) / len(overlaps) if overlaps else 1.0
    return {
        "samples": len(overlaps),
        "top_k": top_k,
        "same_top_k": same,
        "mean_overlap": round(mean, 4),
        "latency_ms_p50": round(percentile(latencies_ms, 50), 2) if latencies_ms else None,
        "latency_ms_p95": round(percentile(latencies_ms, 95), 2) if latencies_ms else None,
        "passed": mean >= min_overlap,
    }


# -------------------------------------------------------------------------------------------------------- report


def text_search_summary(found: Sequence[bool], top_k: int, min_hit_rate: float) -> dict[str, Any]:
    """The text-search check of an integrated target: each sampled record searched by its own text, ``found`` when
    the top ``top_k`` hits contain it; passed when the share found is at least ``min_hit_rate``."""
    samples = len(found)
    hits = sum(1 for f in found if f)
    rate = hits / samples if samples else 1.0
    return {
        "samples": samples,
        "found": hits,
        "top_k": top_k,
        "hit_rate": round(rate, 4),
        "min_hit_rate": min_hit_rate,
        "passed": rate >= min_hit_rate,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _added(count: int, kept: list[str], ids: Iterable[str]) -> tuple[int, list[str]]:
    """A count and its list of ids with ``ids`` added: the count exact, the list sorted and at most ``ID_CAP``."""
    new = list(ids)
    return count + len(new), sorted(set(kept) | set(new))[:ID_CAP]


@dataclass
class Report:
    """Everything verification found about one namespace run, and the verdict.

    The worker fills the fields as it goes; ``passed``, ``reasons`` and ``summary`` are derived from them, so the
    verdict cannot disagree with the evidence. ``None`` in a count field means "not checked".
    """

    source_namespace: str
    source_count: int = 0  # ids listed in the source at verification time
    source_fingerprint: str = ""
    target_namespaces: list[str] = field(default_factory=list)
    ids_checked: bool = True
    ids_expected: int = 0  # source ids whose presence in the target was checked
    missing_ids: list[str] = field(default_factory=list)
    missing_count: int = 0
    vanished_count: int = 0  # listed in the source, gone when fetched: the source is being written
    #: Ids copied from a source namespace that lists none now (vanished, emptied, or another store reached): an
    #: empty source proves nothing about the copy, so "0/0 ids present" never passes.
    source_vanished: int = 0
    #: Vectors the plan counted in a source namespace of which nothing was copied and nothing is listed now: the
    #: job reached another store than the one it planned (its spec taken for another job's), or the source was
    #: emptied since. "0/0 ids present" never passes then either.
    planned_unseen: int = 0
    target_count: int | None = None
    count_readings: list[int] = field(default_factory=list)
    count_stable: bool = True
    #: The source listed again when the target's settled count differed from the first listing (None: not needed):
    #: a different listing means the application wrote the source during verification, so waiting for the count to
    #: agree is pointless and the run fails at once (``source_changed``) instead of after ``count_timeout_s``.
    source_count_after: int | None = None
    source_changed: bool = False
    extra_ids: list[str] = field(default_factory=list)
    extra_count: int = 0
    extras_fail: bool = False  # only an unshared target namespace must hold nothing but the source's ids
    content_mode: str = "all"
    content_checked: int = 0
    content_mismatches: list[dict[str, str]] = field(default_factory=list)
    content_mismatch_count: int = 0
    query: dict[str, Any] | None = None
    #: A job that writes text: source ids without text (never written), and whether that fails the run
    #: (``missing_text: fail``); an integrated target's text-search check (``text_search_summary``).
    unwritable_ids: list[str] = field(default_factory=list)
    unwritable_count: int = 0
    unwritable_fail: bool = True
    unwritable_reason: str = ""
    text_search: dict[str, Any] | None = None
    #: Source ids of a creator (or twin) in the erasure ledger: the copy held them back (never written), so the target
    #: must not hold them either; named, not failed.
    held_back_ids: list[str] = field(default_factory=list)
    held_back_count: int = 0
    #: How the source's ids were found (list, catalogue, sweep) and, when not listed, the source namespace's count
    #: in its stats: ids an enumeration did not find were neither copied nor checked, so a shortfall fails.
    enumeration: str = "list"
    source_stats_count: int | None = None
    #: A routed run: how many of the source's vectors took each route (``routing.ROUTES``); they add up to the
    #: vectors fetched. None for a fixed target.
    routes: dict[str, int] | None = None
    #: A routed run with ``routing.unresolved: drop-with-report``: the source ids resolved nowhere, not copied (and
    #: kept in the source by cleanup); listed, not judged.
    dropped_ids: list[str] = field(default_factory=list)
    dropped_count: int = 0
    #: Query latency through the tenant guard (``orchestrator.tenancy.tenant_guard``): P50/P95 ms over sampled queries.
    latency: dict[str, Any] | None = None
    #: Per target namespace, how the wait for its lagging reads ended (``workers.steps.freshness``), and why reads
    #: that had not caught up within ``verify.freshness_timeout_s`` could not be believed (a failure: never a pass).
    reads: dict[str, Any] = field(default_factory=dict)
    reads_behind: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    checked_at: str = field(default_factory=_now)

    def add_missing(self, ids: Iterable[str]) -> None:
        """Record source ids absent from their target namespace (the list stays capped and sorted)."""
        self.missing_count, self.missing_ids = _added(self.missing_count, self.missing_ids, ids)

    def add_unwritable(self, ids: Iterable[str]) -> None:
        """Record source ids that cannot be written for having no text (the list stays capped and sorted)."""
        self.unwritable_count, self.unwritable_ids = _added(self.unwritable_count, self.unwritable_ids, ids)

    def add_held_back(self, ids: Iterable[str]) -> None:
        """Record source ids the erasure ledger holds back (the list stays capped and sorted; the count is exact)."""
        self.held_back_count, self.held_back_ids = _added(self.held_back_count, self.held_back_ids, ids)

    def add_dropped(self, ids: Iterable[str]) -> None:
        """Record source ids dropped by routing (the list stays capped and sorted; the count is exact)."""
        self.dropped_count, self.dropped_ids = _added(self.dropped_count, self.dropped_ids, ids)

    @property
    def expected_target_count(self) -> int:
        """What the target namespace must hold: the source's ids, less those that have no text to write and those of
        an erased creator."""
        return self.source_count - self.unwritable_count - self.held_back_count

    def add_mismatch(self, id_: str, reason: str) -> None:
        """Record a content difference (the list stays capped; the count is exact)."""
        self.content_mismatch_count += 1
        if len(self.content_mismatches) < MISMATCH_CAP:
            self.content_mismatches.append({"id": id_, "reason": reason})

    def set_extras(self, diff: IdDiff, *, fail: bool) -> None:
        self.extra_ids, self.extra_count, self.extras_fail = list(diff.extra), diff.extra_count, fail

    def reasons(self) -> list[str]:
        """Why verification failed; empty when it passed."""
        out: list[str] = []
        if self.error:
            out.append(f"error: {self.error}")
        if self.source_vanished and not self.source_count:
            out.append(
                f"the source namespace lists no ids now, but {self.source_vanished} were copied from it: it vanished "
                "or was emptied (or the spec reaches another store); nothing is verified against an empty source"
            )
        if self.planned_unseen and not self.source_count:
            out.append(
                f"the plan counted {self.planned_unseen} vectors in the source namespace, but none were copied and "
                "it lists none now: the job reached another store than the one it planned, or the source was "
                "emptied since; nothing is verified against an empty source"
            )
        if self.missing_count:
            out.append(f"{self.missing_count} source ids missing in target (e.g. {self.missing_ids[0]!r})")
        out.extend(self.reads_behind)
        if self.unwritable_count and self.unwritable_fail:
            out.append(
                f"{self.unwritable_count} source ids were not written, {self.unwritable_reason} (e.g. "
                f"{self.unwritable_ids[0]!r}): give them text in the source, or accept that with missing_text: skip"
            )
        if self.unenumerated:
            out.append(
                f"the {self.enumeration} found {self.source_count} of the {self.source_stats_count} ids the source "
                f"namespace holds (describe_index_stats): {self.unenumerated} were never enumerated, so they were "
                "neither copied nor checked"
                + ("; raise enumerate.max_queries or use a catalogue" if self.enumeration == "sweep" else "")
            )
        if self.vanished_count and self.enumeration == "catalogue":
            out.append(
                f"{self.vanished_count} catalogue ids are not in the source (stale catalogue rows, or the source is "
                "being written)"
            )
        elif self.vanished_count:
            out.append(f"{self.vanished_count} source ids vanished while verifying (the source is being written)")
        if self.content_mismatch_count:
            first = self.content_mismatches[0]
            out.append(f"{self.content_mismatch_count} contents differ (e.g. {first['id']!r}: {first['reason']})")
        if self.extras_fail and self.extra_count:
            out.append(f"{self.extra_count} ids in target not in source (e.g. {self.extra_ids[0]!r})")
        if self.target_count is not None and self.target_count != self.expected_target_count:
            expected = (
                f"source count {self.source_count}"
                + (f" less {self.unwritable_count} without text" if self.unwritable_count else "")
                + (f" less {self.held_back_count} held back by the erasure ledger" if self.held_back_count else "")
            )
            out.append(f"target count {self.target_count} ≠ {expected}")
        if self.source_changed:
            out.append(
                f"the source changed during verification ({self.source_count} → {self.source_count_after} ids): run "
                "`nsmigrate sync` to copy the changes, then verify"
            )
        if not self.count_stable:
            out.append(f"target count did not settle: readings {self.count_readings[-5:]}")
        latency = self.latency or {}
        limit, p95 = latency.get("limit_ms"), latency.get("p95_ms")
        if limit is not None and p95 is not None and p95 > limit:
            out.append(f"query latency p95 {p95} ms is above the limit of {limit} ms")
        if limit is not None and latency.get("error"):  # a limit nothing was timed against is not met
            out.append(f"query latency could not be timed against the limit of {limit} ms: {latency['error']}")
        if self.query is not None and not self.query.get("passed", True):
            out.append(f"query results differ (mean top-k overlap {self.query['mean_overlap']})")
        if self.text_search is not None and not self.text_search["passed"]:
            t = self.text_search
            out.append(
                f"text search found {t['found']} of {t['samples']} records in their own top {t['top_k']} "
                f"(needs {t['min_hit_rate']:.0%})"
            )
        return out

    @property
    def unenumerated(self) -> int:
        """Source ids the enumeration (catalogue or sweep) did not find, by the source's own count."""
        if self.source_stats_count is None:
            return 0
        return max(0, self.source_stats_count - self.source_count)

    @property
    def passed(self) -> bool:
        return not self.reasons()

    @property
    def summary(self) -> str:
        """One line, e.g. ``805/805 ids present, 805 contents equal, counts 805=805``."""
        parts: list[str] = []
        if self.error:
            parts.append(f"error: {self.error[:200]}")
        if self.ids_checked:
            parts.append(f"{self.ids_expected - self.missing_count}/{self.ids_expected} ids present")
        if self.content_checked:
            equal = self.content_checked - self.content_mismatch_count
            if self.content_mismatch_count:
                parts.append(f"{self.content_mismatch_count}/{self.content_checked} contents differ")
            else:
                parts.append(f"{equal} contents equal" + (" (sample)" if self.content_mode == "sample" else ""))
        if self.unwritable_count:
            parts.append(f"{self.unwritable_count} without text, not written")
        if self.held_back_count:
            first = self.held_back_ids[0]
            parts.append(f"{self.held_back_count} of erased creators held back, not written (e.g. {first!r})")
        if self.target_count is not None:
            sign = "=" if self.target_count == self.expected_target_count else "≠"
            parts.append(f"counts {self.expected_target_count}{sign}{self.target_count}")
        if self.extra_count:
            parts.append(f"{self.extra_count} extra in target" + ("" if self.extras_fail else " (shared, not judged)"))
        if self.vanished_count:
            parts.append(f"{self.vanished_count} vanished from source")
        if self.source_stats_count is not None:
            parts.append(f"{self.enumeration} found {self.source_count}/{self.source_stats_count} source ids")
        if self.routes:
            parts.append("routes " + ", ".join(f"{k} {v}" for k, v in self.routes.items()))
        if self.dropped_count:
            parts.append(f"{self.dropped_count} resolved nowhere, dropped (not copied, kept in the source)")
        if self.latency is not None and self.latency.get("p95_ms") is not None:
            parts.append(f"latency p50 {self.latency['p50_ms']} ms, p95 {self.latency['p95_ms']} ms")
        if self.query is not None:
            q = self.query
            parts.append(
                f"queries {q['same_top_k']}/{q['samples']} same top-{q['top_k']}"
                + (f", p95 {q['latency_ms_p95']} ms" if q.get("latency_ms_p95") is not None else "")
            )
        if self.text_search is not None:
            t = self.text_search
            parts.append(f"text search {t['found']}/{t['samples']} in top-{t['top_k']}")
        line = ", ".join(parts) or f"{self.source_count} source ids, nothing checked"
        return line if self.passed else f"FAILED: {line}"

    def to_json(self) -> dict[str, Any]:
        """The report as stored on the namespace run (plain JSON types only)."""
        return {
            "passed": self.passed,
            "summary": self.summary,
            "reasons": self.reasons(),
            "source_namespace": display_namespace(self.source_namespace),
            "target_namespaces": list(self.target_namespaces),
            "source_count": self.source_count,
            "target_count": self.target_count,
            "count_readings": list(self.count_readings),
            "source_count_after": self.source_count_after,
            "source_changed": self.source_changed,
            "ids_checked": self.ids_checked,
            "ids_expected": self.ids_expected,
            "missing_ids": list(self.missing_ids),
            "missing_count": self.missing_count,
            "vanished_count": self.vanished_count,
            "source_vanished": self.source_vanished,
            "planned_unseen": self.planned_unseen,
            "extra_ids": list(self.extra_ids),
            "extra_count": self.extra_count,
            "extras_fail": self.extras_fail,
            "content_mode": self.content_mode,
            "content_checked": self.content_checked,
            "content_mismatches": list(self.content_mismatches),
            "content_mismatch_count": self.content_mismatch_count,
            "query": dict(self.query) if self.query is not None else None,
            "unwritable_ids": list(self.unwritable_ids),
            "unwritable_count": self.unwritable_count,
            "unwritable_fail": self.unwritable_fail,
            "held_back_ids": list(self.held_back_ids),
            "held_back_count": self.held_back_count,
            "text_search": dict(self.text_search) if self.text_search is not None else None,
            "enumeration": self.enumeration,
            "source_stats_count": self.source_stats_count,
            "routes": dict(self.routes) if self.routes is not None else None,
            "dropped_ids": list(self.dropped_ids),
            "dropped_count": self.dropped_count,
            "latency": dict(self.latency) if self.latency is not None else None,
            "reads": dict(self.reads),
            "notes": list(self.notes),
            "error": self.error,
            "source_fingerprint": self.source_fingerprint,
            "checked_at": self.checked_at,
        }


#: Why a target record is not what the copy of a source record wrote (None: it is): (source, target or None,
#: the source's metadata as the copy enriches it).
Comparer = Callable[[Record, Record | None, Mapping[str, Any]], str | None]


def fields_comparer(spec: JobSpec) -> Comparer | None:
    """How a text job's target record is judged by its fields, None for a job that copies vectors. An integrated
    target must hold the text fields of what the copy writes (its values are the model's); a re-embedded one the
    metadata the copy writes (its values follow from the text, which is in the metadata: ``sync`` needs no embedding
    to see a change, verification compares the values too)."""
    text_from = spec.text_from
    if text_from is None:
        return None
    field = spec.text_records.field if spec.text_records is not None else None

    def compare(source: Record, target: Record | None, expected: Mapping[str, Any]) -> str | None:
        if target is None:
            return "missing in target"
        wanted = text_fields(expected, text_from, field) if field is not None else expected
        return compare_metadata(wanted, target.metadata or {})

    return compare
