"""A copy's write fence: a delivery of a copy batch writes only while the batch is still its own.

A delivery reads the erasure ledger once, as it starts its batch (``jobs.batches.start_batch``), and an erasure waits
only for the batches running under a delivery it can count on (``jobs.erasure.known_runs``): one started within the
visibility timeout. A delivery held back long (a 429 storm's backoff, a namespace held by a deletion) can outlive
both: Redis hands its message out again after the timeout, or an operator's ``resume`` sends it again, and the new
delivery starts the batch with the ledger as it is then, holds an erased creator back and finishes; the erasure then
deletes. The first delivery's next attempt would write that creator's records back under a receipt saying "erased".

So each write attempt, holding the target namespace as the write does (a deletion holds it alone:
``workers.transfer.namespace_locks``), checks that its delivery started well within the timeout and that the batch is
still running under its own start: not started again since, nor ended by an earlier delivery (which wrote the batch
with the ledger it read, so an erasure recorded after that end waited for no one). The second is a job-table read,
needed only when an erasure may have deleted since the delivery started: every erasure place replaces the **erasure
mark** in Redis before it deletes (``mark_erasure``), a delivery reads the mark before its start (``erasure_mark``),
and the namespace's hold reads it again as it is granted. An unchanged mark means no erasure deleted since the start,
so no other delivery holds back anything this one does not; a changed or missing one (a Redis restarted empty) sends
the attempt to the job table. A delivery whose batch is no longer its own stops (``Superseded``), neither finishing
nor failing it. Whichever comes second sees the other: a start or an end before the read stops the old delivery, and
a read passed before it holds the namespace until its write is answered, so the erasure's delete comes after it.

The mark is as durable as Redis, as the namespace holds are: a Redis restored from an older snapshot, or failed over
to a replica that missed the new mark, between an erasure's delete and a held-back delivery's next write would let
that write through. A pgvector batch copied inside Postgres (one statement) asks once, before it, holding its target
for the whole statement (a hold kept fresh, ``NamespaceLocks.shared(kept=True)``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis
import sqlalchemy as sa

from nsmigrate.orchestrator.errors import Superseded
from nsmigrate.orchestrator.jobs.batches import BatchWork
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.messaging.task_names import KEY_PREFIX
from nsmigrate.orchestrator.models import Batch, BatchState

#: The share of the visibility timeout a delivery may write in: the rest allows for the hosts' clocks (an erasure
#: judges a batch by the ``started_at`` its worker wrote) and the start statement's own time.
WRITABLE_SHARE_OF_TIMEOUT = 0.9
#: Where the erasure mark is kept: one value for the whole fleet, replaced by every erasure place before it deletes.
ERASURE_MARK_KEY = f"{KEY_PREFIX}:erasure-mark"

log = logging.getLogger(__name__)

_BATCH_NOW = sa.select(Batch.attempts, Batch.state).where(Batch.id == sa.bindparam("batch_id"))


def erasure_mark(client: redis.Redis) -> str | None:
    """The erasure mark as it is now, made if there is none; read before a delivery starts its batch. None when Redis
    could not answer: every write of the delivery then reads the job table."""
    try:
        made = client.pipeline()  # one round trip, and Redis 6's commands (SET's NX and GET together need 7)
        made.set(ERASURE_MARK_KEY, uuid.uuid4().hex, nx=True)
        made.get(ERASURE_MARK_KEY)
        mark = made.execute()[1]
    except redis.RedisError as e:
        log.warning("the erasure mark could not be read (%s): this batch's writes each read the job table", e)
        return None
    return mark.decode() if isinstance(mark, bytes) else None


def started_after_the_mark(client: redis.Redis, start: Callable[[], BatchWork | None]) -> BatchWork | None:
    """A batch's start (``start``: its statement) with the erasure mark read just before it, as its fence needs."""
    mark = erasure_mark(client)
    work = start()
    return None if work is None else dataclasses.replace(work, erasure_mark=mark)


def mark_erasure(client: redis.Redis) -> None:
    """Replace the erasure mark: an erasure place is about to delete (see the module's text)."""
    client.set(ERASURE_MARK_KEY, uuid.uuid4().hex)


class WriteFence:
    """Whether the delivery that started ``batch_id`` as its ``attempt``-th start, at ``started`` (``time.monotonic``),
    after reading the erasure mark ``mark``, may still write; ``lifetime_s``: the visibility timeout. Shared by the
    batch's parallel writes."""

    def __init__(
        self, db: Database, batch_id: int, attempt: int, started: float, lifetime_s: float, mark: str | None
    ) -> None:
        self._db, self._batch_id, self._attempt, self._mark = db, batch_id, attempt, mark
        self._deadline = started + lifetime_s * WRITABLE_SHARE_OF_TIMEOUT
        self._lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._passed_from: float | None = None  # when the last read that found the batch this delivery's began

    def check(self, mark: str | None) -> None:
        """Raises ``Superseded`` when this delivery may no longer write. ``mark``: the erasure mark read with the
        namespace's hold (None: not read). A job-table read when the mark changed since the start, unless a read of
        the batch's other writes began after this one was asked (its namespace held since): its answer holds for
        this write too, and a batch's parallel writes take one connection, not one each."""
        asked = time.monotonic()
        if asked > self._deadline:
            raise Superseded(
                f"this delivery started its batch over {self._lifetime_s * WRITABLE_SHARE_OF_TIMEOUT:g} s ago: an "
                "erasure no longer waits for it, so it writes nothing more and sends the batch to be started afresh",
                hint="a batch that needs longer needs a longer NSMIGRATE_VISIBILITY_TIMEOUT_S",
                expired=True,
                batch=self._batch_id,
            )
        if mark is not None and mark == self._mark:
            return
        with self._lock:
            if self._passed_from is not None and self._passed_from >= asked:
                return
            began = time.monotonic()
            with self._db.single_statement() as conn:
                attempts, state = conn.execute(_BATCH_NOW, {"batch_id": self._batch_id}).one()
            if attempts == self._attempt and state == BatchState.RUNNING:
                self._passed_from = began
                return
        # Started again since, or ended by an earlier delivery (it wrote the batch with the ledger it read; an erasure
        # recorded after that end waited for no one): either way the batch is no longer this delivery's to write.
        raise Superseded(
            f"the batch is no longer this delivery's: it was started again since (start {attempts}, this "
            f"delivery's {self._attempt}) or ended (it is {state}), so this delivery writes nothing more",
            batch=self._batch_id,
        )
