"""The erasure ledger: who was erased (a creator, or one twin of theirs), when, by which erasure job, with its receipt.
An erasure enters its line when it starts (its data is held back while it erases, not only once it is gone) and its
receipt when it finishes. Every write path asks ``erasure_subjects`` right before it writes (a copy batch: in the
statement that starts it, ``LEDGER_KEY``), and holds back what an unlifted line owns; only an operator lifts a line
(``lift_erasure``, with a reason), and the line stays, lifted, in the ledger and the audit log. Each function is one
transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from nsmigrate.orchestrator.errors import NotFound, SpecError, StateError
from nsmigrate.orchestrator.jobs.database import Database, add_event, default_actor
from nsmigrate.orchestrator.models import ErasureEntry, Job, JobState, utcnow
from nsmigrate.orchestrator.records.namespaces import SHOWN

#: What a line keeps of its erasure's spec: the subject (``tenancy.erasure.Subject.to_json``), so every write path
#: recognises its records as the erasure did, those the owners table names by id too.
SUBJECT_KEYS = (
    "creator_id",
    "twin_id",
    "twins",
    "source_keys",
    "source_key_fields",
    "owned_ids",
    "creator_fields",
    "twin_fields",
)
#: Ids a ``write_held_back`` event names (the count is always whole).
EVENT_IDS = 100


def enter(s: Session, job_id: int, spec: dict[str, Any]) -> None:
    """The line of erasure ``job_id`` (in the transaction that creates the job)."""
    s.add(
        ErasureEntry(
            job_id=job_id,
            creator_id=spec["creator_id"],
            twin_id=spec.get("twin_id"),
            subject={k: spec[k] for k in SUBJECT_KEYS if k in spec},
        )
    )


def enter_receipt(s: Session, job_id: int, receipt: dict[str, Any]) -> None:
    """The receipt of a finished erasure on its line (in the transaction that finishes the job)."""
    s.execute(sa.update(ErasureEntry).where(ErasureEntry.job_id == job_id).values(receipt=receipt))


def erasure_subjects(db: Database) -> list[tuple[int, Any]]:
    """(erasure job id, ``erasure.Subject``) of every unlifted line whose erasure is running or finished, oldest
    first: no write path writes their data (``erasure.erased_records``). A cancelled erasure erased nothing for
    good, and holds back nothing."""
    from nsmigrate.orchestrator.tenancy.erasure import Subject

    # One statement, no transaction around it: write paths ask right before each write.
    with db.single_statement() as conn:
        rows = conn.execute(_SUBJECTS).all()
    return [(job_id, Subject.from_json(subject or {})) for job_id, subject in rows]


_HOLDING = (ErasureEntry.lifted_at.is_(None), Job.state != JobState.CANCELLED)
_SUBJECTS = (
    sa.select(ErasureEntry.job_id, ErasureEntry.subject)
    .join(Job, Job.id == ErasureEntry.job_id)
    .where(*_HOLDING)
    .order_by(ErasureEntry.job_id)
)
#: The lines ``erasure_subjects`` returns as one value: the md5 of every line's erasure job and subject, None when
#: there are none. A statement a write path runs anyway carries it (``batches._START_BATCH``), and the lines
#: themselves are read only when it is new to the process (``subjects_of_key``): a copy batch asks the ledger without
#: a round trip of its own. It names what the lines say, not when they were read: a key seen again means the same
#: lines.
LEDGER_KEY = (
    sa.select(
        sa.func.md5(
            sa.func.string_agg(
                sa.cast(ErasureEntry.job_id, sa.Text)
                + ":"
                + sa.func.coalesce(sa.cast(ErasureEntry.subject, sa.Text), ""),
                aggregate_order_by(sa.literal_column("','"), ErasureEntry.job_id, ErasureEntry.id),
            )
        )
    )
    .join(Job, Job.id == ErasureEntry.job_id)
    .where(*_HOLDING)
    .scalar_subquery()
)
# The lines with their key, read in one snapshot: what a process keeps under that key.
_SUBJECTS_WITH_KEY = _SUBJECTS.add_columns(LEDGER_KEY.label("ledger_key"))
_by_key: dict[str, list[tuple[int, Any]]] = {}  # the lines under the last key this process read them for
_by_key_lock = threading.Lock()


def subjects_of_key(db: Database, key: str | None) -> list[tuple[int, Any]]:
    """``erasure_subjects`` as they stood when ``LEDGER_KEY`` read ``key``, or later: none for None (no line holds
    anything back), the lines this process last read under the same key, or else the lines read now (an erasure
    recorded since the key was read counts too)."""
    from nsmigrate.orchestrator.tenancy.erasure import Subject

    if key is None:
        return []
    with _by_key_lock:
        known = _by_key.get(key)
    if known is not None:
        return list(known)
    with db.single_statement() as conn:
        rows = conn.execute(_SUBJECTS_WITH_KEY).all()
    subjects = [(job_id, Subject.from_json(subject or {})) for job_id, subject, _ in rows]
    if rows:
        with _by_key_lock:
            _by_key.clear()
            _by_key[rows[0].ledger_key] = subjects
    return list(subjects)


class HeldBack:
    """What one write path held back by the ledger: ``keep`` asks the ledger again before each write (an erasure
    started meanwhile counts) and returns the records it may write; ``held`` is every erasure whose subject's
    records it left out, with their ids, for the command's output and ``record_held_back``."""

    def __init__(
        self, db: Database | None = None, *, subjects: Callable[[], list[tuple[int, Any]]] | None = None
    ) -> None:
        """``db``: ask the job table's ledger; or ``subjects``: what returns its lines as ``erasure_subjects`` does
        (an application's ``DualWriteIndex`` reads the ledger as the fleet publishes it)."""
        if subjects is None:
            if db is None:
                raise ValueError("HeldBack needs the ledger: the job table (db) or a reader of it (subjects)")
            subjects = lambda: erasure_subjects(db)  # noqa: E731
        self._subjects = subjects
        self.held: dict[int, tuple[Any, list[str]]] = {}

    def keep(self, namespace: str, records: list[Any], pair: tuple[str | None, str | None] | None = None) -> list[Any]:
        """The records that may be written into ``namespace``, built for ``pair`` (creator, twin) when the caller
        knows it (a job's run), else for every reading of its name and for the twin it may be named by: a twin's
        own old namespace is its id (a UUID), whose records need carry no id of their own (a restore from a backup)."""
        from nsmigrate.orchestrator.tenancy.erasure import erased_records, pairs_of_name

        erasures = self._subjects()
        if not erasures or not records:
            return records
        out: set[str] = set()
        for built in [pair] if pair is not None else [*pairs_of_name(namespace), (None, namespace)]:
            for at, ids in erased_records(erasures, [(built, [r for r in records if r.id not in out])]).items():
                job_id, subject = erasures[at]
                self.held.setdefault(job_id, (subject, []))[1].extend(ids)
                out.update(ids)
        return [r for r in records if r.id not in out]

    def keep_writes(self, writes: Sequence[tuple[tuple[str | None, str | None], Sequence[Any]]]) -> list[list[Any]]:
        """The records of each write that may be written, asking the ledger once for them all: per target namespace,
        the (creator, twin) it was built for and its records as they will be written (``erasure.erased_records``).
        A record is counted once, for the first erasure that owns it."""
        from nsmigrate.orchestrator.tenancy.erasure import erased_records

        erasures = self._subjects()
        if not erasures:
            return [list(records) for _, records in writes]
        out: set[str] = set()
        for at, ids in erased_records(erasures, writes).items():
            job_id, subject = erasures[at]
            self.held.setdefault(job_id, (subject, []))[1].extend(ids)
            out.update(ids)
        return [[r for r in records if r.id not in out] for _, records in writes]

    @property
    def ids(self) -> list[str]:
        """Every id held back so far, in the order they were met."""
        return [i for _, (_, ids) in sorted(self.held.items()) for i in ids]

    def lines(self) -> list[tuple[int, Any, list[str]]]:
        return [(job_id, subject, ids) for job_id, (subject, ids) in sorted(self.held.items())]

    def sentences(self) -> list[str]:
        """One sentence per erasure that held records back: how many, whose, which (the first few ids), how to lift."""
        return [held_back_text(job_id, subject, ids) for job_id, subject, ids in self.lines()]


def held_back_text(erasure_job: int, subject: Any, ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:SHOWN]) + (f", … ({len(ids) - SHOWN} more)" if len(ids) > SHOWN else "")
    lift = f"--creator {subject.creator_id}" + (f" --twin {subject.twin_id}" if subject.twin_id else "")
    return (
        f"held back {len(ids)} record(s) of {subject.label} ({shown}): erased by erasure job {erasure_job}, so the "
        f"erasure ledger lets none of their data be written (an operator lifts it: `nsmigrate erase --lift {lift} "
        '--reason "…"`)'
    )


def ledger(db: Database, creator_id: str | None = None) -> list[dict[str, Any]]:
    """The ledger's lines (of one creator, or all), oldest first, as plain data."""
    with db.transaction() as s:
        query = sa.select(ErasureEntry).order_by(ErasureEntry.id)
        if creator_id is not None:
            query = query.where(ErasureEntry.creator_id == creator_id)
        return [_line(e) for e in s.scalars(query)]


def _line(e: ErasureEntry) -> dict[str, Any]:
    return {
        "erasure_job": e.job_id,
        "creator_id": e.creator_id,
        "twin_id": e.twin_id,
        "erased_at": e.erased_at.isoformat(timespec="seconds"),
        "receipt": e.receipt,
        "lifted_at": e.lifted_at.isoformat(timespec="seconds") if e.lifted_at else None,
        "lifted_by": e.lifted_by,
        "lift_reason": e.lift_reason,
    }


def lift_erasure(
    db: Database, creator_id: str, twin_id: str | None, reason: str, actor: str | None = None
) -> list[dict[str, Any]]:
    """Lift the unlifted lines of exactly (``creator_id``, ``twin_id``): their data may be written again. Recorded
    on each line and as an ``erasure_lifted`` event of its erasure job. Returns the lines lifted.

    Raises:
        SpecError: no reason given (nothing is changed).
        NotFound: no unlifted line of that creator (and twin).
        StateError: its erasure is still running: lifting it would let copies write back what it deletes.
    """
    if not reason.strip():
        raise SpecError(
            "lifting an erasure needs a reason: it lets their data be written again",
            hint='give it with --reason "…" (it is kept in the ledger and the audit log)',
        )
    who = f"creator {creator_id!r}" + (f" twin {twin_id!r}" if twin_id else "")
    with db.transaction() as s:
        entries = list(
            s.scalars(
                sa.select(ErasureEntry)
                .where(
                    ErasureEntry.creator_id == creator_id,
                    ErasureEntry.twin_id.is_(None) if twin_id is None else ErasureEntry.twin_id == twin_id,
                    ErasureEntry.lifted_at.is_(None),
                )
                .with_for_update()
            )
        )
        if not entries:
            raise NotFound(
                f"the erasure ledger holds no erasure of {who} to lift",
                hint="`nsmigrate erase --ledger` lists its lines (a twin's erasure is lifted with --twin)",
                creator_id=creator_id,
            )
        running = list(
            s.scalars(
                sa.select(Job.id)
                .where(Job.id.in_({e.job_id for e in entries}), Job.state == JobState.RUNNING)
                .order_by(Job.id)
            )
        )
        if running:
            raise StateError(
                f"erasure job(s) {running} of {who} are still erasing: lifting now would let copies write back what "
                "they delete; nothing was lifted",
                hint="wait for the receipt (`nsmigrate erase --resume JOB`), or `nsmigrate cancel JOB`",
            )
        now, by = utcnow(), actor or default_actor()
        for e in entries:
            e.lifted_at, e.lifted_by, e.lift_reason = now, by, reason
            add_event(s, "erasure_lifted", by, e.job_id, creator_id=creator_id, twin_id=twin_id, reason=reason)
        s.flush()
        return [_line(e) for e in entries]


def record_held_back(db: Database, held: Sequence[tuple[int, Any, list[str]]], **where: Any) -> None:
    """A ``write_held_back`` event on each erasure job whose subject's records a write path skipped or refused:
    (erasure job, subject, ids), with ``where`` (the command or job, store, namespace) — `nsmigrate events JOB` of
    the erasure then shows every write its ledger line held back."""
    if not held:
        return
    with db.transaction() as s:
        for erasure_job, subject, ids in held:
            add_event(
                s,
                "write_held_back",
                default_actor(),
                erasure_job,
                creator_id=subject.creator_id,
                twin_id=subject.twin_id,
                records=len(ids),
                ids=ids[:EVENT_IDS],
                **where,
            )


def record_held_in_job(
    db: Database, held: HeldBack, actor: str, job_id: int, run_id: int | None, namespace: str, **where: Any
) -> None:
    """What a job's write held back (``held``), in the erasures' events (``write_held_back``) and the job's own
    (``records_held_back``: the ids, how many, which erasures and how to lift them); nothing when it held none."""
    if not held.held:
        return
    record_held_back(db, held.lines(), job=job_id, namespace=namespace, **where)
    with db.transaction() as s:
        add_event(
            s,
            "records_held_back",
            actor,
            job_id,
            run_id,
            namespace=namespace,
            ids=held.ids[:EVENT_IDS],
            records=len(held.ids),
            erasures=[erasure for erasure, _, _ in held.lines()],
            reason="; ".join(held.sentences()),
            **where,
        )
