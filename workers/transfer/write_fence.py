"""A copy's write fence: a delivery of a copy batch writes only while the batch is still its own.

A delivery reads the erasure ledger once, as it starts its batch (``jobs.batches.start_batch``), and an erasure waits
only for the batches running under a delivery it can count on (``jobs.erasure.known_runs``): one started within the
visibility timeout. A delivery held back long (a 429 storm's backoff, a namespace held by a deletion) can outlive
both: Redis hands its message out again after the timeout, or an operator's ``resume`` sends it again, and the new
delivery starts the batch with the ledger as it is then, holds an erased creator back and finishes; the erasure then
deletes. The first delivery's next attempt would write that creator's records back under a receipt saying "erased".

So each write attempt, holding the target namespace as the write does (a deletion holds it alone:
``workers.transfer.namespace_locks``), checks that its delivery started well within the timeout and that no other
delivery started the batch since. The second is a job-table read, needed only when an erasure may have deleted since
the delivery started: every erasure place replaces the **erasure mark** in Redis before it deletes
(``mark_erasure``), a delivery reads the mark before its start (``erasure_mark``), and the namespace's hold reads it
again as it is granted. An unchanged mark means no erasure deleted since the start, so a later start of the batch
holds back nothing this delivery does not; a changed or missing one (a Redis restarted) sends the attempt to the job
table. A delivery that finds the batch started again stops (``Superseded``), neither finishing nor failing it.
Whichever comes second sees the other: a start before the read stops the old delivery, and a read passed before it
holds the namespace until its write is answered, so the erasure's delete comes after that write.
"""

from __future__ import annotations

import threading
import time
import uuid

import redis
import sqlalchemy as sa

from nsmigrate.orchestrator.errors import Superseded
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.messaging.task_names import KEY_PREFIX
from nsmigrate.orchestrator.models import Batch

#: The share of the visibility timeout a delivery may write in: the rest allows for the hosts' clocks (an erasure
#: judges a batch by the ``started_at`` its worker wrote) and the start statement's own time.
WRITABLE_SHARE_OF_TIMEOUT = 0.9
#: Where the erasure mark is kept: one value for the whole fleet, replaced by every erasure place before it deletes.
ERASURE_MARK_KEY = f"{KEY_PREFIX}:erasure-mark"

_ATTEMPTS = sa.select(Batch.attempts).where(Batch.id == sa.bindparam("batch_id"))


def erasure_mark(client: redis.Redis) -> str | None:
    """The erasure mark as it is now, made if there is none; read before a delivery starts its batch. None when Redis
    could not answer: every write of the delivery then reads the job table."""
    fresh = uuid.uuid4().hex
    try:
        kept = client.set(ERASURE_MARK_KEY, fresh, nx=True, get=True)
    except redis.RedisError:
        return None
    return fresh if kept is None else kept.decode() if isinstance(kept, bytes) else str(kept)


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
                attempts = conn.execute(_ATTEMPTS, {"batch_id": self._batch_id}).scalar_one()
            if attempts == self._attempt:
                self._passed_from = began
                return
        raise Superseded(
            f"another delivery started this batch since (its start {attempts}, this one's {self._attempt}): it "
            "writes the batch with the erasure ledger as it is now, and this one writes nothing more",
            batch=self._batch_id,
        )
