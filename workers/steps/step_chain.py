"""One chain of steps per job whose strategy Pinecone carries out (collection, import, convert).

Such a job is one task at a time that takes the next step and, while Pinecone is busy, sends itself again: a chain
of messages. A step sent from outside the chain — `nsmigrate resume`, `run` of the job's spec again, the workers'
sweep for stalled runs, `retry` — must neither run beside a step under way (an import step writing files for an hour
would have its directories emptied and its import started twice) nor leave two chains polling Pinecone, one more
each time. So:

- a step holds the job's step lock while it runs (kept fresh while it lives, gone ``STEP_LOCK_TTL_S`` after its
  worker died); a step that finds it taken does nothing (``UNDER_WAY``): the step under way sends what follows;
- a step sent from outside starts a new chain (its token the job's chain now), and a step of an older chain does
  nothing (``SUPERSEDED``): the newest sender's chain goes on alone. A step carries its chain's token to the next
  (``current``); one whose token Redis no longer knows (restarted) takes the job's chain over.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

from nsmigrate.orchestrator.messaging.task_names import lock_key
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.transfer import lock_keeper

#: A step's lock expires this long after its worker died (a live step keeps it fresh): a redelivered step waits for
#: none, it finds the lock taken and leaves the step to Redis' redelivery of the dead one's message.
STEP_LOCK_TTL_S = 30.0
#: How long Redis keeps a job's chain token after its last step: any chain's poll comes far sooner.
CHAIN_TTL_S = 7 * 24 * 3600

#: What a step that found another step of its job running did: nothing.
UNDER_WAY = "under_way"
#: What a step of a chain a newer one replaced did: nothing.
SUPERSEDED = "superseded"

_CURRENT: ContextVar[str | None] = ContextVar("nsmigrate_step_chain", default=None)


def chain_key(job_id: int) -> str:
    return lock_key(f"step-chain:{job_id}")


@contextlib.contextmanager
def one_step(ctx: WorkerContext, job_id: int, chain: str | None) -> Iterator[str | None]:
    """Take a step of ``job_id`` carrying ``chain`` (None: sent from outside any chain). Yields None when the step is
    to be taken (``current`` is then its chain's token, for the next step it sends), or why not: ``UNDER_WAY``,
    ``SUPERSEDED``."""
    what = f"the step lock of job {job_id}"
    with lock_keeper.held_while_alive(ctx.redis, lock_key(f"step:{job_id}"), STEP_LOCK_TTL_S, what) as held:
        if not held:
            yield UNDER_WAY
            return
        known = ctx.redis.get(chain_key(job_id))
        if chain is not None and known is not None and known not in (chain, chain.encode()):
            yield SUPERSEDED
            return
        chain = chain or uuid.uuid4().hex
        ctx.redis.set(chain_key(job_id), chain, ex=CHAIN_TTL_S)
        token = _CURRENT.set(chain)
        try:
            yield None
        finally:
            _CURRENT.reset(token)


def current() -> str | None:
    """The chain of the step this thread takes (``one_step``), for the next step it sends; None outside a step."""
    return _CURRENT.get()
