"""A copy's write fence: a delivery of a copy batch writes only while the batch is still its own.

A delivery reads the erasure ledger once, as it starts its batch (``jobs.batches.start_batch``), and an erasure waits
only for the batches running under a delivery it can count on (``jobs.erasure.known_runs``): one started within the
visibility timeout. A delivery held back long (a 429 storm's backoff, a namespace held by a deletion) can outlive
both: Redis hands its message out again after the timeout, or an operator's ``resume`` sends it again, and the new
delivery starts the batch with the ledger as it is then, holds an erased creator back and finishes; the erasure then
deletes. The first delivery's next attempt would write that creator's records back under a receipt saying "erased".

So before each write attempt, holding the target namespace as the write does (a deletion holds it alone:
``workers.transfer.namespace_locks``), a delivery checks that the batch counts the attempts its own start counted and
that it started well within the timeout; otherwise it stops (``Superseded``), neither finishing nor failing the batch.
Whichever comes second sees the other: a new start before the check stops the old delivery, and a check passed
before it holds the namespace until its write is answered, so the erasure's delete comes after that write.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from nsmigrate.orchestrator.errors import Superseded
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.models import Batch

#: The share of the visibility timeout a delivery may write in: the rest allows for the hosts' clocks (an erasure
#: judges a batch by the ``started_at`` its worker wrote) and the start statement's own time.
WRITABLE_SHARE_OF_TIMEOUT = 0.9

_ATTEMPTS = sa.select(Batch.attempts).where(Batch.id == sa.bindparam("batch_id"))


class WriteFence:
    """Whether the delivery that started ``batch_id`` as its ``attempt``-th start, at ``started`` (``time.monotonic``),
    may still write; ``lifetime_s``: the visibility timeout. Shared by the batch's parallel writes."""

    def __init__(self, db: Database, batch_id: int, attempt: int, started: float, lifetime_s: float) -> None:
        self._db, self._batch_id, self._attempt = db, batch_id, attempt
        self._deadline = started + lifetime_s * WRITABLE_SHARE_OF_TIMEOUT
        self._lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._passed_from: float | None = None  # when the last read that found the batch this delivery's began

    def check(self) -> None:
        """Raises ``Superseded`` when this delivery may no longer write. One job-table read, unless a read of the
        batch's other writes began after this one was asked (its namespace held since): its answer holds for this
        write too, and a batch's parallel writes take one connection, not one each."""
        asked = time.monotonic()
        if asked > self._deadline:
            raise Superseded(
                f"this delivery started its batch over {self._lifetime_s * WRITABLE_SHARE_OF_TIMEOUT:.0f} s ago: an "
                "erasure no longer waits for it, so it writes nothing more",
                hint="Redis hands the batch out again after the visibility timeout (NSMIGRATE_VISIBILITY_TIMEOUT_S)",
                batch=self._batch_id,
            )
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
