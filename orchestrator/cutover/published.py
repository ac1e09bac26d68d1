"""A job's cut-over as published for its applications, on the fleet's Redis: what ``DualWriteIndex`` follows instead
of the job table, and what it sends back.

The job table stays the one record (``orchestrator.cutover.rollout``); this module keeps a copy of what an
application needs in Redis, written by the commands that change it (``cutover publish|set|watch``, ``erase``) and read
by every application instance (``orchestrator.cutover.following``):

- ``rollout`` (a hash: ``doc``): the rollout's percentage, the ``seq`` of the step it reflects (the newest
  ``cutover_set`` event's id), the version of the layout, and the spec's limits. Small: polled every ``max_age_s``.
- ``layout``: the job's spec (as stored: key variable *names* only) and its namespace runs (where each source
  namespace is copied, for whom). Read once, and again when the rollout names another version.
- the erasure ledger (``ERASURE_LEDGER_KEY``, a hash: ``version``, ``doc``): every unlifted erasure's subject. Its
  version is asked before each dual write, the ledger itself when the version changed.

What applications send, filed into the job table by the commands (``file_writes``: ``cutover set|watch``, ``sync``,
``cleanup``): ``writes`` (a stream of dual writes the new store missed, and of records the ledger held back) become
``dual_write_failed`` and ``write_held_back`` events. ``reads`` (a capped stream of measured reads), ``traffic``
(reads per namespace) and ``queries`` (recent queries with filters) are read by ``cutover watch``, ``set`` and
``check``.

Every publication reads the job table under one Redis lock per document, so the last one written reflects the newest
commit whoever races (two publishers each read then write; under the lock the later reader writes later).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from nsmigrate.orchestrator.cutover import rollout as rollout_rows
from nsmigrate.orchestrator.jobs.database import Database, add_event
from nsmigrate.orchestrator.jobs.erasure_ledger import erasure_subjects
from nsmigrate.orchestrator.messaging.task_names import ERASURE_LEDGER_KEY, cutover_key, lock_key
from nsmigrate.orchestrator.models import Event, Job, NamespaceRun, utcnow
from nsmigrate.orchestrator.states import PASSED_RUN_STATES, RunState

#: How stale an application's rollout may be (``DualWriteIndex``'s ``max_age_s``, at most this): reads follow a
#: ``cutover set`` within it, and every write follows a cleanup's start within it.
ROLLOUT_MAX_AGE_S = 2.0
#: Beyond that, how long a dual write already under way may still be sending its old side (seconds): a cleanup looks at
#: its source for the last time only once every write has either landed there or follows the cleanup.
WRITE_UNDER_WAY_S = 1.0
#: The run's cleanup stages as its layout names them (``cleanup_stage``).
CLEANING, CLEANED = "cleaning", "cleaned"

#: How long a publisher may hold a document's lock (seconds): a few job-table reads and one Redis write.
PUBLISH_LOCK_S = 30
#: The ``reads`` stream keeps about this many reports (an application sends one every few seconds).
READS_KEPT = 2000
#: Recent queries with filters kept per job (``queries``): each holds a vector.
QUERIES_KEPT = 100

#: The ``writes`` stream's entry kinds.
WRITE_FAILED, HELD_BACK = "write_failed", "held_back"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _version(value: Any) -> str:
    return hashlib.sha256(_dumps(value).encode()).hexdigest()[:16]


def readable(run: NamespaceRun) -> bool:
    """Whether reads may go to ``run``'s copy: its last verification passed. A run added after the rollout began
    (``sync --new-namespaces``) is read from the old side until it has, and one that failed since goes back there.
    A source a cleanup deleted from, or may have, is never read again, whatever a later verdict says (a cleanup
    refused part-way leaves the run ``verify_failed``): the target holds the copies of what went."""
    return run.state in PASSED_RUN_STATES or bool((run.verification or {}).get("passed")) or run.source_may_be_deleted


def cleanup_stage(run: NamespaceRun) -> str | None:
    """How far a cleanup of ``run``'s source went, as its applications' writes must know: ``cleaning`` (deleting now),
    ``cleaned`` (gone: no ``sync`` can copy from it any more), or None. A write the new index refuses is then raised
    to the application instead of filed for a sync, and a cleaned source is not written at all
    (``orchestrator.cutover.dualwrite``)."""
    if run.state == RunState.CLEANED:
        return CLEANED
    return CLEANING if run.state == RunState.CLEANING else None


def layout_of(
    job_id: int, spec: Mapping[str, Any], runs: Sequence[NamespaceRun], restored: Collection[str] = ()
) -> dict[str, Any]:
    """The layout document of a job: its spec and runs as an application needs them, with their version.
    ``restored``: source namespaces a rollback wrote back after their cleanup (``rollout.restored_by_rollback``):
    their originals are there again, so they are written on both sides, and read where the rollout says."""
    body = {
        "job_id": job_id,
        "spec": dict(spec),
        "runs": [
            {
                "id": r.id,
                "source_namespace": r.source_namespace,
                "target_namespace": r.target_namespace,
                "target_namespaces": list(r.target_namespaces or []),
                "creator_id": r.creator_id,
                "twin_id": r.twin_id,
                "routing_table": r.routing_table,
                "readable": readable(r),
                "cleanup": None if r.source_namespace in restored else cleanup_stage(r),
            }
            for r in runs
        ],
    }
    return {**body, "version": _version(body)}


def head_of(job_id: int, percent: int, seq: int, layout_version: str, limits: Mapping[str, Any]) -> dict[str, Any]:
    """The rollout document: where reads go, which step that is, which layout, and the limits of a breach."""
    return {
        "job_id": job_id,
        "percent": percent,
        "seq": seq,
        "layout": layout_version,
        "limits": {k: limits[k] for k in ("p95_ms", "p99_ms", "max_error_rate", "breach_window_s")},
        "published_at": utcnow().isoformat(timespec="milliseconds"),
    }


def ledger_of(subjects: Sequence[tuple[int, Any]]) -> dict[str, Any]:
    """The erasure ledger document: (erasure job, subject) of every unlifted line, with its version."""
    body = {"subjects": [[job_id, subject.to_json()] for job_id, subject in subjects]}
    return {**body, "version": _version(body)}


def publish(db: Database, redis: Any, job_id: int) -> dict[str, Any]:
    """Publish job ``job_id``'s rollout and layout, and the erasure ledger, as the job table has them now; returns
    the rollout document. Raises what Redis raises (the caller says that applications did not follow)."""
    publish_ledger(db, redis)
    with redis.lock(lock_key(f"cutover:{job_id}:publish"), timeout=PUBLISH_LOCK_S, blocking_timeout=PUBLISH_LOCK_S):
        with db.transaction() as s:
            job = s.get(Job, job_id)
            spec = dict(job.spec) if job is not None else {}
            runs = list(
                s.scalars(sa.select(NamespaceRun).where(NamespaceRun.job_id == job_id).order_by(NamespaceRun.id))
            )
            seq = s.scalar(
                sa.select(sa.func.max(Event.id)).where(Event.job_id == job_id, Event.action == rollout_rows.SET)
            )
            restored = rollout_rows.restored_by_rollback(s, job_id, verified=False)
        rollout = rollout_rows.rollout_of(db, job_id)
        layout = layout_of(job_id, spec, runs, restored)
        limits = {**_default_limits(), **(spec.get("cutover") or {})}
        head = head_of(job_id, rollout.percent, int(seq or 0), layout["version"], limits)
        pipe = redis.pipeline(transaction=True)
        pipe.set(cutover_key(job_id, "layout"), _dumps(layout))  # first: a rollout never names a layout not there
        pipe.hset(cutover_key(job_id, "rollout"), mapping={"doc": _dumps(head)})
        pipe.execute()
    return head


#: How long one move of a job's reads (aliases repointed, the step recorded, published) may hold its lock (seconds).
MOVE_LOCK_S = 600


def moving_reads(redis: Any, job_id: int) -> Any:
    """Held while reads of job ``job_id`` move (``cutover set``, a watch's roll back): its aliases repointed, the step
    recorded and published as one move, so a move that raced another never leaves the aliases at one step and the
    rollout at another. Whoever holds it reads the rollout again inside."""
    return redis.lock(lock_key(f"cutover:{job_id}:moves"), timeout=MOVE_LOCK_S, blocking_timeout=MOVE_LOCK_S)


def publish_if_followed(db: Database, redis: Any, job_id: int) -> bool:
    """``publish`` again when job ``job_id``'s cut-over was published before (its applications follow it: runs
    added to the job are then dual-written too); whether it was."""
    if not redis.exists(cutover_key(job_id, "layout")):
        return False
    publish(db, redis, job_id)
    return True


def publish_if_followed_at(db: Database, redis: Any, job_id: int) -> float | None:
    """``publish_if_followed``, and when (``time.monotonic``): None when no application follows the job."""
    return time.monotonic() if publish_if_followed(db, redis, job_id) else None


def await_writers(published_at: float | None) -> None:
    """Wait until every application follows what was published at ``published_at`` (a cleanup's start) and every
    dual write begun before it has written its old side: a write that comes later raises to its application what
    the new index refuses, never filed for a sync that cannot follow the cleanup."""
    if published_at is not None:
        time.sleep(max(0.0, published_at + ROLLOUT_MAX_AGE_S + WRITE_UNDER_WAY_S - time.monotonic()))


def _default_limits() -> dict[str, Any]:
    from nsmigrate.orchestrator.spec.jobspec import Cutover

    return Cutover().model_dump()


def publish_ledger(db: Database, redis: Any) -> str:
    """Publish the erasure ledger as the job table has it now; returns its version."""
    with redis.lock(lock_key("erasure-ledger:publish"), timeout=PUBLISH_LOCK_S, blocking_timeout=PUBLISH_LOCK_S):
        ledger = ledger_of(erasure_subjects(db))
        redis.hset(ERASURE_LEDGER_KEY, mapping={"version": ledger["version"], "doc": _dumps(ledger)})
    return str(ledger["version"])


def file_writes(db: Database, redis: Any, job_id: int) -> int:
    """Move what the job's applications sent of their writes into the job table: a ``dual_write_failed`` event per
    write the new store missed (for ``sync`` and the cleanup gate), a ``write_held_back`` event per erasure whose
    records the ledger held back. Each entry is filed, then deleted from the stream (a crash between the two files
    it again: an event twice, never none). Returns how many entries were filed."""
    key = cutover_key(job_id, "writes")
    if not redis.exists(key):
        return 0  # nothing sent: no lock to take (every cleanup and sync of a namespace asks)
    filed = 0
    with redis.lock(lock_key(f"cutover:{job_id}:file"), timeout=PUBLISH_LOCK_S, blocking_timeout=PUBLISH_LOCK_S):
        while True:
            entries = redis.xrange(key, count=500)
            if not entries:
                return filed
            with db.transaction() as s:
                for _, fields in entries:
                    _file_one(s, job_id, json.loads(fields[b"entry"]))
            redis.xdel(key, *[entry_id for entry_id, _ in entries])
            filed += len(entries)


def _file_one(s: Any, job_id: int, entry: dict[str, Any]) -> None:
    where = {"instance": entry.get("instance"), "sent_at": entry.get("at")}
    if entry.get("kind") == HELD_BACK:
        for erasure_job, subject, ids in entry["lines"]:
            add_event(
                s,
                "write_held_back",
                "dual-writer",
                erasure_job,
                creator_id=subject.get("creator_id"),
                twin_id=subject.get("twin_id"),
                records=len(ids),
                ids=ids[:100],
                command="dual_write",
                job=job_id,
                namespace=entry.get("namespace"),
                **where,
            )
        return
    record = {k: entry.get(k) for k in ("namespace", "operation", "ids", "error")}
    add_event(s, rollout_rows.WRITE_FAILED, "dual-writer", job_id, entry.get("run_id"), **record, **where)


def read_reports(redis: Any, job_id: int, after: str = "0-0", count: int = 200) -> tuple[list[dict[str, Any]], str]:
    """The applications' read reports sent after stream id ``after`` (oldest first), and the id to read after next."""
    answer = redis.xread({cutover_key(job_id, "reads"): after}, count=count)
    reports, last = [], after
    for _, entries in answer or []:
        for entry_id, fields in entries:
            reports.append(json.loads(fields[b"report"]))
            last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return reports, last


def newest_report_id(redis: Any, job_id: int) -> str:
    """The id of the newest read report sent so far ("0-0": none), to read only what comes after it."""
    newest = redis.xrevrange(cutover_key(job_id, "reads"), count=1)
    if not newest:
        return "0-0"
    entry_id = newest[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def traffic(redis: Any, job_id: int, top: int) -> list[tuple[str, int]]:
    """The ``top`` source namespaces the applications read most (reads counted by ``DualWriteIndex``), most first."""
    rows = redis.zrevrange(cutover_key(job_id, "traffic"), 0, top - 1, withscores=True)
    return [(name.decode() if isinstance(name, bytes) else name, int(score)) for name, score in rows]


def recorded_queries(redis: Any, job_id: int) -> list[dict[str, Any]]:
    """The queries with filters the applications' ``DualWriteIndex`` recorded, newest first."""
    return [json.loads(raw) for raw in redis.lrange(cutover_key(job_id, "queries"), 0, QUERIES_KEPT - 1)]


def traffic_of(redis: Any, job_id: int, namespaces: Sequence[str]) -> dict[str, int]:
    """The reads the applications counted of each of ``namespaces`` (absent: none counted)."""
    if not namespaces:
        return {}
    scores = redis.zmscore(cutover_key(job_id, "traffic"), list(namespaces))
    return {ns: int(score) for ns, score in zip(namespaces, scores, strict=True) if score is not None}
