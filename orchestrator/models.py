"""The job table: jobs, namespace runs, batches and the audit log (SQLAlchemy 2, Postgres).

States are ``str`` enums; every change of state goes through one small function in ``orchestrator.jobs`` that runs in
a single transaction. The schema is created (and upgraded by adding what is missing) by ``ensure_schema``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from nsmigrate.orchestrator.errors import NsmigrateError
from nsmigrate.orchestrator.packed_ids import PACK_JSONB_IDS_SQL, PackedIds
from nsmigrate.orchestrator.records.report_values import described
from nsmigrate.orchestrator.states import (  # noqa: F401  (re-exported: where the job table's users import them from)
    BatchState,
    CollectionPhase,
    ConvertPhase,
    JobKind,
    JobState,
    PlaceKind,
    PlaceState,
    RunState,
)

# 2: namespace_runs.last_error (a lister that failed for good); 3: jobs.phase (collection strategy); 4: erase_places;
# 5: batches.ids packed into bytea (``orchestrator.packed_ids``), was a JSONB array; ix_batches_unfinished;
# 6: ix_runs_job_target, ix_runs_job_creator, ix_runs_job_state; 7: erasure_ledger; 8: batches.lost_attempts;
# 9: metadata values older reports quoted, described instead (``_describe_quoted_metadata``); 10: held_metadata,
# namespace_runs.verifying_since
SCHEMA_VERSION = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


# JSON on Postgres is JSONB; the variant keeps SQLite usable for throwaway local runs.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[str]: JSONType}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default=JobKind.MIGRATE)
    spec: Mapped[dict[str, Any]]  # env var *names* only, never secrets
    state: Mapped[str] = mapped_column(sa.String(16), default=JobState.RUNNING)
    dry_run: Mapped[bool] = mapped_column(default=False)
    # CollectionPhase of a `strategy: collection` job, ConvertPhase of a `strategy: convert` one
    phase: Mapped[str | None] = mapped_column(sa.String(32))
    parent_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    runs: Mapped[list[NamespaceRun]] = relationship(back_populates="job", order_by="NamespaceRun.id")


#: The key of a run's ``cleanup`` record set when its job was cancelled while a cleanup of it was deleting.
CANCELLED_WHILE_CLEANING = "cancelled_while_cleaning"
#: The key of a run's ``cleanup`` record set when a cleanup of it was taken up after its worker died deleting: how
#: many ids that one deleted is unknown (``jobs.verdicts.take_up_lost_cleanup``).
CLEANUP_WORKER_LOST = "cleanup_worker_lost"


class NamespaceRun(Base):
    __tablename__ = "namespace_runs"
    __table_args__ = (
        sa.UniqueConstraint("job_id", "source_namespace"),
        # A verification reads the runs writing into its target namespace and its creator's first twin run: without
        # these, each of a 12,000-namespace job's verifications would read all 12,000 runs.
        sa.Index("ix_runs_job_target", "job_id", "target_namespace"),
        sa.Index("ix_runs_job_creator", "job_id", "creator_id"),
        # Whether a job has an open run left, asked after every verdict (``jobs.maybe_finish_job``).
        sa.Index("ix_runs_job_state", "job_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id"), index=True)
    source_store: Mapped[str] = mapped_column(sa.String(300))
    source_namespace: Mapped[str] = mapped_column(sa.String(512))
    target_store: Mapped[str] = mapped_column(sa.String(300))
    target_namespace: Mapped[str | None] = mapped_column(sa.String(512))  # None = routed per vector
    creator_id: Mapped[str | None] = mapped_column(sa.String(100))
    twin_id: Mapped[str | None] = mapped_column(sa.String(100))
    routing_table: Mapped[dict[str, Any]] = mapped_column(default=dict)  # twin → creator, routed runs only
    state: Mapped[str] = mapped_column(sa.String(16), default=RunState.PENDING, index=True)
    source_count: Mapped[int] = mapped_column(default=0)  # at plan time
    listed: Mapped[int] = mapped_column(default=0)
    copied: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    batches_total: Mapped[int] = mapped_column(default=0)
    listing_done: Mapped[bool] = mapped_column(default=False)
    list_token: Mapped[str | None] = mapped_column(sa.Text)  # resume point of the lister
    last_error: Mapped[str | None] = mapped_column(sa.Text)  # why the lister failed (state list_failed)
    target_namespaces: Mapped[list[str]] = mapped_column(default=list)  # where this run wrote (routed: several)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # When the verification under way began: set as the run enters ``verifying`` from another state, kept by one
    # started again beside it (a redelivery, the sweep); its verdict is recorded only on that same entry.
    verifying_since: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    cleanup: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    job: Mapped[Job] = relationship(back_populates="runs")

    @property
    def deleted_by_cleanup(self) -> int:
        """How many source ids a cleanup that stopped part-way already deleted (0 when none did, or the run is
        cleaned): their target copies are now the only ones, and ``nsmigrate cleanup`` takes the rest up again."""
        if self.state == RunState.CLEANED:
            return 0
        return int((self.cleanup or {}).get("deleted_count") or 0)

    @property
    def cleanup_stopped_part_way(self) -> bool:
        """Whether a cleanup of this run stopped part-way with source ids deleted, or maybe deleted (its worker died:
        ``CLEANUP_WORKER_LOST``): the source lacks them on purpose, so its verification can no longer pass, and a
        cleanup takes the rest up again proving every id left."""
        return self.deleted_by_cleanup > 0 or (
            self.state != RunState.CLEANED and bool((self.cleanup or {}).get(CLEANUP_WORKER_LOST))
        )

    @property
    def source_may_be_deleted(self) -> bool:
        """Whether a cleanup deleted, is deleting, or may have deleted source ids of this run: their target copies may
        be the only ones left, so no read may go back to the source and no absence from it may be propagated to the
        target. A run cancelled while it was cleaning counts (``CANCELLED_WHILE_CLEANING``): how much went is known
        only to that cleanup, whose host may be lost."""
        return (
            self.state in (RunState.CLEANING, RunState.CLEANED)
            or self.cleanup_stopped_part_way
            or bool((self.cleanup or {}).get(CANCELLED_WHILE_CLEANING))
        )


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "seq"),
        sa.Index("ix_batches_run_state", "run_id", "state"),
        # The batches not done yet, few beside a job's million done: `status` counts a run's batches from it (and
        # its ``batches_total``) without reading the done ones.
        sa.Index(
            "ix_batches_unfinished",
            "run_id",
            "state",
            postgresql_where=sa.text(f"state <> '{BatchState.DONE}'"),
            sqlite_where=sa.text(f"state <> '{BatchState.DONE}'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("namespace_runs.id"))
    seq: Mapped[int]
    ids: Mapped[list[str]] = mapped_column(PackedIds())
    state: Mapped[str] = mapped_column(sa.String(16), default=BatchState.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    # Deliveries whose worker died while they ran the batch (it was found still `running` by a redelivery), since
    # it was last queued: at ``Settings.batch_max_lost_attempts`` the batch fails instead of starting again.
    lost_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    vectors: Mapped[int] = mapped_column(default=0)
    missing: Mapped[int] = mapped_column(default=0)  # listed but gone from the source when fetched
    bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    worker: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class HeldMetadata(Base):
    """What an original held under keys the copy's enrichment writes (``proof.held_enrichment``), recorded by a
    cleanup right before it deleted that original: in the copy those keys hold the enrichment's values, and a rollback
    rebuilding the original from it would strip them (``delta.restore_record``). A row only for such an original."""

    __tablename__ = "held_metadata"

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("namespace_runs.id"), primary_key=True)
    record_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    held: Mapped[dict[str, Any]]


class Event(Base):
    """Append-only audit log: who did what to which job/namespace, when. Erasures and cleanups always write one."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("namespace_runs.id"))
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class ErasePlace(Base):
    """One place an erasure job (kind ``erase``) deletes a creator's or twin's data from, and what it found there."""

    __tablename__ = "erase_places"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    store: Mapped[str] = mapped_column(sa.String(300))  # the store's label, or "backup"
    store_spec: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # env var names only, never secrets
    namespace: Mapped[str | None] = mapped_column(sa.String(512))
    path: Mapped[str | None] = mapped_column(sa.Text)  # a backup directory
    planned: Mapped[int] = mapped_column(default=0)  # vectors (rows) found when the erasure was planned
    erased: Mapped[int] = mapped_column(default=0)  # vectors (rows) deleted, over every attempt
    erased_ids: Mapped[list[str]] = mapped_column(default=list)  # records places: fetched again to verify
    state: Mapped[str] = mapped_column(sa.String(16), default=PlaceState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ErasureEntry(Base):
    """One line of the erasure ledger: a creator (or one twin of theirs) erased, by which erasure job, when, with its
    receipt once it finished. Every write path asks it before it writes (``jobs.erasure_subjects``); only an
    operator lifts a line (``erase --lift``), with a reason, and the line stays, lifted."""

    __tablename__ = "erasure_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id"), index=True)
    creator_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    twin_id: Mapped[str | None] = mapped_column(sa.String(200))
    subject: Mapped[dict[str, Any]]  # ``erasure.Subject.to_json()``: how its records are matched
    erased_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    lifted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    lifted_by: Mapped[str | None] = mapped_column(sa.String(200))
    lift_reason: Mapped[str | None] = mapped_column(sa.Text)


class SchemaInfo(Base):
    __tablename__ = "nsmigrate_schema"

    version: Mapped[int] = mapped_column(primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class SchemaTooNew(NsmigrateError):
    """The job table was written by a newer nsmigrate: this one does not know its schema and must not write to it."""

    #: The command's (and a worker's) exit code: a supervisor or a deploy script tells "upgrade this nsmigrate"
    #: apart from a setting to fix (2) or a failed check (1).
    exit_code = 3

    def __init__(self, table_version: int) -> None:
        self.table_version = table_version
        super().__init__(
            f"the job table's schema is version {table_version}, newer than this nsmigrate knows (schema version "
            f"{SCHEMA_VERSION}, nsmigrate {_nsmigrate_version()}); nothing was changed",
            hint="run the nsmigrate the table was upgraded by (or a newer one) here too; `nsmigrate --version` says "
            "which one this is",
        )


def _nsmigrate_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nsmigrate")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def ensure_schema(engine: sa.Engine) -> None:
    """Create the job table schema, or bring an older one up to date. Safe to call from many processes at once.

    Raises:
        SchemaTooNew: a newer nsmigrate upgraded the table; this one changes nothing in it.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialise concurrent first runs (CLI + workers) so CREATE TABLE races cannot fail.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7316001)"))
        found = _schema_version(conn)
        if found == SCHEMA_VERSION:  # the usual case: one query, no reflection of every table
            return
        if found is not None and found > SCHEMA_VERSION:
            # Its columns, states or ids may mean what this code cannot read or would write wrongly.
            raise SchemaTooNew(found)
        if not set(sa.inspect(conn).get_table_names()) & set(Base.metadata.tables):
            # A fresh database: nothing older to bring up to date, so none of the catalogue reads below (each
            # table's columns and indexes, 40-odd queries that cost more than the tables themselves).
            Base.metadata.create_all(conn, checkfirst=False)
            conn.execute(sa.insert(SchemaInfo).values(version=SCHEMA_VERSION))
            return
        Base.metadata.create_all(conn)
        # create_all adds no column to an existing table: add what later versions brought. States are plain
        # strings (not a database enum), so a new state needs no change to the database.
        columns = {c["name"] for c in sa.inspect(conn).get_columns(NamespaceRun.__tablename__)}
        if "last_error" not in columns:
            conn.execute(sa.text("ALTER TABLE namespace_runs ADD COLUMN last_error TEXT"))
        if "verifying_since" not in columns:
            conn.execute(sa.text("ALTER TABLE namespace_runs ADD COLUMN verifying_since TIMESTAMP WITH TIME ZONE"))
        if "phase" not in {c["name"] for c in sa.inspect(conn).get_columns(Job.__tablename__)}:
            conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN phase VARCHAR(32)"))
        if "lost_attempts" not in {c["name"] for c in sa.inspect(conn).get_columns(Batch.__tablename__)}:
            conn.execute(sa.text("ALTER TABLE batches ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0"))
        _pack_batch_ids(conn)
        _enter_older_erasures(conn)
        _describe_quoted_metadata(conn)
        for table in (Batch.__table__, NamespaceRun.__table__):
            for index in table.indexes:  # type: ignore[attr-defined]
                index.create(conn, checkfirst=True)  # an index a later version added to an existing table
        current = conn.execute(sa.select(sa.func.max(SchemaInfo.version))).scalar()
        if current is None or current < SCHEMA_VERSION:
            conn.execute(sa.insert(SchemaInfo).values(version=SCHEMA_VERSION))


def _schema_version(conn: sa.Connection) -> int | None:
    """The newest schema version recorded, None before the first ``ensure_schema``."""
    if not sa.inspect(conn).has_table(SchemaInfo.__tablename__):
        return None
    return conn.execute(sa.select(sa.func.max(SchemaInfo.version))).scalar()


def _pack_batch_ids(conn: sa.Connection) -> None:
    """Version 5: a JSONB ``batches.ids`` column becomes packed bytea, in SQL, its rows kept (``packed_ids``)."""
    ids_type = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns(Batch.__tablename__)}["ids"]
    if conn.dialect.name != "postgresql" or isinstance(ids_type, sa.LargeBinary):
        return
    conn.execute(sa.text("ALTER TABLE batches ADD COLUMN ids_packed BYTEA"))
    conn.execute(sa.text(f"UPDATE batches SET ids_packed = {PACK_JSONB_IDS_SQL.format(column='ids')}"))
    conn.execute(sa.text("ALTER TABLE batches DROP COLUMN ids"))
    conn.execute(sa.text("ALTER TABLE batches RENAME COLUMN ids_packed TO ids"))
    conn.execute(sa.text("ALTER TABLE batches ALTER COLUMN ids SET NOT NULL"))


def _enter_older_erasures(conn: sa.Connection) -> None:
    """Version 7: every erasure job made before the ledger gets its line, so what it erased stays held back."""
    entered = sa.select(ErasureEntry.job_id)
    older = sa.select(Job.id, Job.spec, Job.created_at).where(Job.kind == JobKind.ERASE, Job.id.not_in(entered))
    for job_id, spec, created_at in conn.execute(older).all():
        spec = spec or {}
        if spec.get("creator_id"):
            conn.execute(
                sa.insert(ErasureEntry).values(
                    job_id=job_id,
                    creator_id=spec["creator_id"],
                    twin_id=spec.get("twin_id"),
                    subject=spec,
                    erased_at=created_at or utcnow(),
                )
            )


def _describe_quoted_metadata(conn: sa.Connection) -> None:
    """Version 9: reports written before ``records.report_values.shown`` quoted up to 60 characters of each
    differing metadata value (a person's words) into the job table, where no erasure looks. Every report, event,
    error and receipt that may hold one is rewritten with the value described by its size (``described``)."""

    def rewritten(value: Any) -> Any:
        if isinstance(value, str):
            return described(value)
        if isinstance(value, list):
            return [rewritten(item) for item in value]
        if isinstance(value, dict):
            return {key: rewritten(item) for key, item in value.items()}
        return value

    columns = [
        NamespaceRun.verification,
        NamespaceRun.cleanup,
        NamespaceRun.last_error,
        Batch.last_error,
        Event.detail,
        ErasePlace.verification,
        ErasePlace.last_error,
        ErasureEntry.receipt,
    ]
    for column in columns:
        table = column.class_.__table__
        quoting = sa.cast(column, sa.Text).like("%metadata key %")
        for row_id, value in conn.execute(sa.select(table.c.id, column).where(quoting)).all():
            new = rewritten(value)
            if new != value:
                conn.execute(sa.update(table).where(table.c.id == row_id).values({column.key: new}))
