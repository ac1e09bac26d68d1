"""What an erasure deletes, decided without I/O: whose data (a creator, or one twin of theirs), which namespaces of a
store are wholly theirs, which shared namespaces must be searched for their vectors, which record is theirs, and the
receipt of a finished erasure.

Everything is matched exactly, never by prefix: a name through the ``naming.Registry`` of the names nsmigrate built
(from the job table), a record by its ``creator_id`` / ``twin_id`` metadata (or a sources key that routes to one of
their twins). Erasing ``a.1`` never touches ``a.10``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.records.namespaces import (
    ParsedNamespace,
    Registry,
    display_namespace,
    id_texts,
    readings,
    validate_identifier,
)
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import (
    RouteContext,
    expected_metadata,
    owners_of,
    split_routing_table,
    target_of,
)

#: The keys nsmigrate's copies name a vector's creator and twin by (``enrich.creator_fields``); a source's may be
#: others (``routing.creator_id_field``, ``routing.twin_id_field``), added per subject.
CREATOR_FIELDS = frozenset({"creator_id"})
TWIN_FIELDS = frozenset({"twin_id"})


def named_by(metadata: Mapping[str, Any], fields: Iterable[str]) -> frozenset[str]:
    """The ids the values of ``fields`` in ``metadata`` name (``id_texts`` of each: a list names each element)."""
    return frozenset().union(*(id_texts(metadata.get(f)) for f in fields))


@dataclass(frozen=True)
class Subject:
    """Whose data an erasure deletes: a creator, or with ``twin_id`` only that twin of theirs.

    ``twins``: every twin of the creator nsmigrate knows (the job table's runs and routing tables), so that a vector
    carrying only ``twin_id`` is still found; ``source_keys``: sources-table keys that route to those twins;
    ``owned_ids``: vector ids the owners table (``routing.owners``) gives them, for vectors without metadata;
    ``creator_fields``, ``twin_fields``: the metadata keys that name a vector's creator and twin (the copies'
    ``creator_id`` and ``twin_id``, and the sources' keys a job's routing read them from: ``routing.*_field``).
    """

    creator_id: str
    twin_id: str | None = None
    twins: frozenset[str] = frozenset()
    source_keys: frozenset[str] = frozenset()
    source_key_fields: frozenset[str] = frozenset()
    owned_ids: frozenset[str] = frozenset()
    creator_fields: frozenset[str] = CREATOR_FIELDS
    twin_fields: frozenset[str] = TWIN_FIELDS

    def __post_init__(self) -> None:
        validate_identifier("creator_id", self.creator_id)
        if self.twin_id is not None:
            validate_identifier("twin_id", self.twin_id)

    @property
    def label(self) -> str:
        return f"creator {self.creator_id!r}" + (f" twin {self.twin_id!r}" if self.twin_id is not None else "")

    def owns_record(self, metadata: Mapping[str, Any] | None, record_id: str | None = None) -> bool:
        """Whether a vector with this metadata is the subject's: its ``creator_id`` (creator erasure), its
        ``twin_id`` (one of the creator's twins; with a ``creator_id`` that is not someone else's), or a sources
        key of one of those twins. Values are compared as text, exactly; a list names each of its elements
        (``id_texts``), as Pinecone's ``$eq`` matches ``["a.1"]`` for ``a.1``: the one rule of what to delete and of
        the check that it went. A record whose metadata names no creator and no twin is theirs too when the owners
        table gives them its id (``record_id``), as the copy routed it."""
        meta = metadata or {}
        creators = named_by(meta, self.creator_fields)
        twins = named_by(meta, self.twin_fields)
        if record_id is not None and record_id in self.owned_ids and not creators and not twins:
            return True
        if creators and self.creator_id not in creators:
            return False  # another creator's vector, whatever its twin id says
        if self.twin_id is not None:
            if self.twin_id not in twins and not (not twins and self._routes_by_source(meta)):
                return False
            # Without a creator id, the twin must be theirs by a mapping (not only by an override_creator copy).
            return self.creator_id in creators or self.twin_id in self.twins
        if self.creator_id in creators:
            return True
        if twins:
            return bool(twins & self.twins)
        return self._routes_by_source(meta)

    def owns_pair(self, creator_id: str | None, twin_id: str | None) -> bool:
        """Whether a namespace built for (``creator_id``, ``twin_id``) is the subject's: their creator namespace (a
        creator erasure), the namespace of their twin, or a copy of their twin filed under another creator by
        ``override_creator`` (as ``places_in_store`` counts it)."""
        if creator_id == self.creator_id and self.twin_id in (None, twin_id):
            return True
        wanted = self.twins if self.twin_id is None else self.twins & {self.twin_id}
        return twin_id is not None and twin_id in wanted

    def _routes_by_source(self, meta: Mapping[str, Any]) -> bool:
        # ``source_keys`` hold only keys that route to the subject's twins (``subject_of``).
        return any(id_texts(meta.get(f)) & self.source_keys for f in self.source_key_fields)

    def to_json(self) -> dict[str, Any]:
        return {
            "creator_id": self.creator_id,
            "twin_id": self.twin_id,
            "twins": sorted(self.twins),
            "source_keys": sorted(self.source_keys),
            "source_key_fields": sorted(self.source_key_fields),
            "owned_ids": sorted(self.owned_ids),
            "creator_fields": sorted(self.creator_fields),
            "twin_fields": sorted(self.twin_fields),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subject:
        return cls(
            creator_id=data["creator_id"],
            twin_id=data.get("twin_id"),
            twins=frozenset(data.get("twins") or ()),
            source_keys=frozenset(data.get("source_keys") or ()),
            source_key_fields=frozenset(data.get("source_key_fields") or ()),
            owned_ids=frozenset(data.get("owned_ids") or ()),
            creator_fields=frozenset(data.get("creator_fields") or CREATOR_FIELDS),
            twin_fields=frozenset(data.get("twin_fields") or TWIN_FIELDS),
        )


@dataclass(frozen=True)
class KnownRun:
    """What the job table says about one namespace run, for finding places: where it read and wrote, for whom."""

    source_store: str
    source_namespace: str
    target_store: str
    target_namespaces: tuple[str, ...]
    creator_id: str | None
    twin_id: str | None
    routing_table: Mapping[str, Any] = field(default_factory=dict)
    source_key_field: str | None = None
    #: The job filed every twin under ``routing.override_creator`` (a test creator): its runs' creator is not the
    #: owner of what they read, so their sources and twins are never attributed to that creator.
    override: bool = False
    #: The source store's identity as its spec gives it (``store_identity.spec_identity``): labels are not unique
    #: (one pgvector prefix in two databases), identities are.
    source_key: str = ""
    #: The target store's identity, likewise: where the run's copies were written (an erasure awaits the reads of
    #: those namespaces, which a store's lagging namespace listing may not show yet).
    target_key: str = ""
    #: Its job, and whether the run may still write into its target (its copy has not ended and its job is not
    #: cancelled, or a batch of it is still being copied): an erasure then would be undone by the copy after its
    #: places were checked empty.
    job_id: int = 0
    writing: bool = False
    #: The run's id and the vectors it has copied so far: an erasure compares them at each place with what its plan
    #: saw (``copied_since``), as a copy that ran in between may have written where the plan did not look.
    run_id: int = 0
    copied: int = 0
    #: The metadata keys its routing read a vector's creator and twin from (``routing.creator_id_field``,
    #: ``routing.twin_id_field``).
    creator_id_field: str = "creator_id"
    twin_id_field: str = "twin_id"
    #: The creator every twin of its job was filed under (``routing.override_creator``), when one was.
    override_creator: str | None = None


def registry_of(runs: Iterable[KnownRun]) -> Registry:
    """The names nsmigrate built, from the job table: every run's (creator, twin) and every routed run's mapping.
    Pairs, not a twin → creator map: a twin filed under a test creator by one job and under its owner by another
    has a name under each."""
    pairs: set[tuple[str, str]] = set()
    creators: set[str] = set()
    for run in runs:
        if run.creator_id and run.twin_id:
            pairs.add((run.creator_id, run.twin_id))
        routed = split_routing_table(run.routing_table)[0]
        pairs.update((c, t) for t, c in routed.items())
        if run.override_creator:  # the twins a routed run filed under the test creator: names it built too
            pairs.update((run.override_creator, t) for t in routed)
        if run.creator_id:
            creators.add(run.creator_id)
    registry = Registry()
    # A mapping may hold ids that never became names: the registry takes only what builds.
    for creator, twin in sorted(pairs):
        if _buildable(creator, twin):
            registry.twin_namespace(creator, twin)
    for creator in sorted(creators | {c for c, _ in pairs}):
        if _buildable(creator, "x"):
            registry.creator_namespace(creator)
    return registry


def _buildable(creator: str, twin: str) -> bool:
    try:
        validate_identifier("creator_id", creator)
        validate_identifier("twin_id", twin)
    except Exception:
        return False
    return True


def subject_of(creator_id: str, twin_id: str | None, runs: Sequence[KnownRun]) -> Subject:
    """The subject with every twin and sources key the job table knows for the creator."""
    twins: set[str] = set()
    keys: set[str] = set()
    fields: set[str] = set()
    # Every job's keys, an override's too: a source keeps its own names, whoever its copies were filed under.
    creator_fields = CREATOR_FIELDS | {run.creator_id_field for run in runs}
    twin_fields = TWIN_FIELDS | {run.twin_id_field for run in runs}
    for run in runs:
        if run.override:
            continue
        if run.creator_id == creator_id and run.twin_id:
            twins.add(run.twin_id)
        routed, sources = split_routing_table(run.routing_table)
        twins.update(t for t, c in routed.items() if c == creator_id)
        if sources and run.source_key_field:
            fields.add(run.source_key_field)
            keys.update(k for k, t in sources.items() if routed.get(t) == creator_id)
    owned = {
        vid
        for run in runs
        if not run.override
        for vid, (creator, twin) in owners_of(run.routing_table).items()
        if creator == creator_id and (twin_id is None or twin == twin_id)
    }
    if twin_id is not None:
        twins &= {twin_id}
        keys = {
            k
            for run in runs
            if not run.override
            for k, t in split_routing_table(run.routing_table)[1].items()
            if t == twin_id and k in keys
        }
    return Subject(
        creator_id,
        twin_id,
        frozenset(twins),
        frozenset(keys),
        frozenset(fields),
        frozenset(owned),
        frozenset(creator_fields),
        frozenset(twin_fields),
    )


def _carries(run: KnownRun, subject: Subject, namespaces: Collection[str]) -> bool:
    """Whether ``run`` copies the subject's data: it is for their creator (or twin), or it reads or writes one of
    ``namespaces`` (the erasure's places, searched ones included: a copy of a shared namespace carries their
    vectors). Matched by namespace name across stores: a run too many, never one too few."""
    theirs = not run.override and run.creator_id == subject.creator_id and subject.twin_id in (None, run.twin_id)
    return theirs or run.source_namespace in namespaces or any(ns in namespaces for ns in run.target_namespaces)


def still_writing(runs: Iterable[KnownRun], subject: Subject, namespaces: Collection[str]) -> dict[int, list[str]]:
    """The copy jobs that may still write the subject's data, each with the source namespaces of those runs: a run
    that may write (``KnownRun.writing``) and carries their data (``_carries``)."""
    return by_job(run for run in runs if run.writing and _carries(run, subject, namespaces))


def carrying(runs: Iterable[KnownRun], subject: Subject, namespaces: Collection[str]) -> list[KnownRun]:
    """The runs that carry the subject's data (``_carries``)."""
    return [run for run in runs if _carries(run, subject, namespaces)]


def copies_seen(runs: Iterable[KnownRun], subject: Subject, namespaces: Collection[str]) -> dict[str, int]:
    """What an erasure's plan saw of the runs that carry the subject's data: run id (as text: a JSON key) → vectors
    copied. Kept in the erasure's spec for ``copied_since``."""
    return {str(run.run_id): run.copied for run in runs if _carries(run, subject, namespaces)}


def copied_since(
    runs: Iterable[KnownRun], subject: Subject, namespaces: Collection[str], seen: Mapping[str, int]
) -> dict[int, list[str]]:
    """The copy jobs whose runs carrying the subject's data copied vectors since the plan saw ``seen``
    (``copies_seen``), each with the source namespaces of those runs: a copy that started, was resumed or synced
    after the plan and ended before the erasure began may have written where the plan did not look."""
    return by_job(
        run for run in runs if _carries(run, subject, namespaces) and run.copied != seen.get(str(run.run_id), 0)
    )


def by_job(runs: Iterable[KnownRun]) -> dict[int, list[str]]:
    """Job id → the source namespaces of ``runs``, as the refusals name them."""
    found: dict[int, set[str]] = {}
    for run in runs:
        found.setdefault(run.job_id, set()).add(run.source_namespace)
    return {job_id: sorted(names) for job_id, names in sorted(found.items())}


def erased_in(
    erasures: Iterable[tuple[int, Subject]], writes: Iterable[tuple[tuple[str | None, str | None], Sequence[Any]]]
) -> tuple[int, Subject, list[str]] | None:
    """The first erasure whose subject owns records a copy is about to write, with their ids; None when it writes
    none of an erased (or erasing) subject's data (``erased_records``)."""
    subjects = list(erasures)
    found = erased_records(subjects, writes)
    if not found:
        return None
    first = min(found)
    return subjects[first][0], subjects[first][1], found[first]


def erased_records(
    erasures: Sequence[tuple[int, Subject]], writes: Iterable[tuple[tuple[str | None, str | None], Sequence[Any]]]
) -> dict[int, list[str]]:
    """Which erasure (its position in ``erasures``) owns which of the records about to be written, by their ids.
    ``writes``: per target namespace, the (creator, twin) it was built for and its records as they will be written
    (``.id``, ``.metadata``). A record is the subject's by ``Subject.owns_pair`` of its namespace or
    ``Subject.owns_record`` of its metadata (list-valued ids included), and it is compared only with the subjects
    its ids name (an index by creator, twin and sources key), so the erasures of many creators cost a write a few
    lookups per record. Each record is counted once, for the first erasure that owns it."""
    by_value: dict[str, list[int]] = {}  # a creator, twin or sources key → the erasures (positions) it may name
    fields: set[str] = set(CREATOR_FIELDS | TWIN_FIELDS)
    for at, (_, subject) in enumerate(erasures):
        for value in {subject.creator_id, *subject.twins, *subject.source_keys, *subject.owned_ids} | (
            {subject.twin_id} if subject.twin_id else set()
        ):
            by_value.setdefault(value, []).append(at)
        fields |= subject.source_key_fields | subject.creator_fields | subject.twin_fields
    found: dict[int, list[str]] = {}
    for pair, records in writes:
        for record in records:
            meta = record.metadata or {}
            named: set[str | None] = {*pair, record.id, *named_by(meta, fields)}
            for at in sorted({at for value in named if value is not None for at in by_value.get(value, ())}):
                subject = erasures[at][1]
                if subject.owns_pair(*pair) or subject.owns_record(meta, record.id):
                    found.setdefault(at, []).append(record.id)
                    break
    return found


def held_back_ids(erasures: Sequence[tuple[int, Subject]], records: Sequence[Record], ctx: RouteContext) -> set[str]:
    """The ids of source ``records`` that a copy under ``ctx`` holds back (``erased_records`` of each record as the
    copy writes it, where it writes it): verification expects them absent and cleanup neither deletes nor refuses
    them. A record the routing cannot place or drops is not held back here (it is not written either way)."""
    if not erasures:
        return set()
    writes: list[tuple[tuple[str | None, str | None], Sequence[Any]]] = []
    for record in records:
        try:
            target = target_of(record, ctx)
        except PlanError:
            continue
        if target is not None:
            writes.append((ctx.pair_of(target), [Record(record.id, [], expected_metadata(record, target, ctx))]))
    return {i for ids in erased_records(erasures, writes).values() for i in ids}


def pairs_of_name(namespace: str) -> list[tuple[str | None, str | None]]:
    """The (creator, twin) pairs a namespace name may have been built for, every reading of it (``readings``): a
    write into a name that may be an erased subject's is held back, whichever reading is meant."""
    pairs = [(r.creator_id, r.twin_id) for r in readings(namespace) if r.kind != "public"]
    return pairs or [(None, None)]


@dataclass(frozen=True)
class StorePlaces:
    """The places of one store: namespaces that are wholly the subject's, shared namespaces to search for their
    vectors, and names that might be theirs but have several readings (reported, never erased on a guess)."""

    whole: list[str]
    search: list[str]
    ambiguous: list[str]


def places_in_store(
    store: str,
    namespaces: Iterable[str],
    subject: Subject,
    registry: Registry,
    runs: Sequence[KnownRun],
    store_keys: Collection[str] = (),
) -> StorePlaces:
    """Classify the namespaces of ``store``: a run read it when its ``source_key`` is one of ``store_keys`` (the
    spec identities that reach this store), or without keys (a backup's manifest names only a label) by label.

    Whole: the subject's names (``Registry.owned``), the source namespaces of runs that read this store for the
    subject (the old UUID namespace of one of their twins, until cleanup), and copies of their twins filed under
    another creator by ``override_creator`` (``creator_sainath.no.1_twin_{their twin}``); their twin under any other
    creator (given to them since) is ambiguous. Searched: every other
    namespace that is not another creator's own: ``public``, the review namespace, the default namespace and
    hand-made names (another creator's twin or UUID source namespace holds none of the subject's vectors).
    """
    names = sorted(set(namespaces))
    mine, ambiguous = registry.owned(subject.creator_id, names, subject.twin_id)
    theirs_sources: set[str] = set()
    others_sources: set[str] = set()
    claimed_by_others: set[str] = set()  # read by a run for another creator or twin (not a test creator's copy)
    for run in runs:
        read_here = run.source_key in store_keys if store_keys else run.source_store == store
        if not read_here or run.source_namespace == "" or run.creator_id is None:
            continue
        match = not run.override and run.creator_id == subject.creator_id and subject.twin_id in (None, run.twin_id)
        (theirs_sources if match else others_sources).add(run.source_namespace)
        if not match and not run.override:
            claimed_by_others.add(run.source_namespace)
    # A source namespace one job read for them and another for someone else (a twin given to another creator since)
    # has two readings: reported, never deleted whole on a guess.
    disputed = theirs_sources & claimed_by_others
    theirs_sources -= disputed
    ambiguous = sorted(set(ambiguous) | (disputed & set(names)))
    # A test creator's own namespace holds the vectors of every creator its job routed there by creator id.
    overrides = {run.override_creator for run in runs if run.override_creator}
    twin_copies = {n for n in names if n in registry and _copy_of_their_twin(registry.meaning(n), subject)}
    test_creators = overrides | {run.creator_id for run in runs if run.override and run.creator_id}
    copies = {n for n in twin_copies if registry.meaning(n).creator_id in test_creators}
    # Their twin under another creator no test creator is: the twin was given to that creator since, and the
    # namespace is theirs as much as the subject's (two readings, as a source namespace read for both).
    ambiguous = sorted(set(ambiguous) | (twin_copies - copies - set(mine)))
    whole = [n for n in names if n in set(mine) | theirs_sources | copies]
    search = [
        n
        for n in names
        if n not in whole
        and n not in ambiguous
        and n not in others_sources
        and (
            registry.meaning(n).kind in ("public", "other")
            or (registry.meaning(n).kind == "creator" and registry.meaning(n).creator_id in overrides)
        )
    ]
    return StorePlaces(whole, search, ambiguous)


def _copy_of_their_twin(meaning: ParsedNamespace, subject: Subject) -> bool:
    wanted = subject.twins if subject.twin_id is None else subject.twins & {subject.twin_id}
    return meaning.kind == "twin" and meaning.twin_id in wanted


def receipt(job: Any, places: Sequence[Any]) -> dict[str, Any]:
    """The receipt of a finished erasure: whose data, what was deleted where and how many, when, and whether every
    place was checked empty of it afterwards. Plain JSON (it goes to the audit log and to a file)."""
    spec = job.spec or {}
    rows = [
        {
            "kind": p.kind,
            "store": p.store,
            "namespace": display_namespace(p.namespace) if p.namespace is not None else None,
            "path": p.path,
            "planned": p.planned,
            "erased": p.erased,
            "state": p.state,
            "verified": p.state == "verified",
            "check": p.verification,
            "error": p.last_error,
            "duration_s": (p.verification or {}).get("duration_s"),
        }
        for p in places
    ]
    finished = datetime.now(UTC)
    return {
        "job_id": job.id,
        "creator_id": spec.get("creator_id"),
        "twin_id": spec.get("twin_id"),
        "requested_by": spec.get("requested_by"),
        "started_at": job.created_at.isoformat(timespec="seconds") if job.created_at else None,
        "finished_at": finished.isoformat(timespec="seconds"),
        # From the job's start to its receipt (the places ran concurrently, each its own duration_s).
        "duration_s": round((finished - job.created_at).total_seconds(), 3) if job.created_at else None,
        "verified": all(r["verified"] for r in rows),
        "vectors_erased": sum(r["erased"] for r in rows if r["kind"] not in ("backup", "import_files")),
        "backup_rows_erased": sum(r["erased"] for r in rows if r["kind"] == "backup"),
        "import_files_removed": sum(r["erased"] for r in rows if r["kind"] == "import_files"),
        "places": rows,
        "ambiguous": list(spec.get("ambiguous") or []),
        "not_searched": list(spec.get("not_searched") or []),
        # Namespace aliases that served an erased namespace, removed with it (each place's check names its own).
        "aliases_removed": sorted({a for r in rows for a in (r["check"] or {}).get("aliases_removed") or []}),
        # Copies nsmigrate made that no API can erase inside (Pinecone collections), with what to do about each.
        "cannot_erase": list(spec.get("cannot_erase") or []),
        # `erase --export-first`: where the person's copy went before the delete (it is theirs, never searched).
        "exported_first": spec.get("exported_first"),
    }
