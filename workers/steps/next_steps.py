"""What happens next after a step: the small decisions that keep a namespace run moving.

- A run whose listing is done and whose batches are all done becomes ``copied`` (exactly one caller wins that) and,
  when the spec says so, is queued for verification.
- A lister that stopped at the in-flight bound is woken when batches finish, at most one wake-up pending at a time.
- A command waiting on the job (`run --wait`, `watch`…) is told when one of its runs settles (``run_settled``): copied
  or judged, or left with only failed batches; so it reads the job's progress at once instead of at its next poll.
- Inside ``verifications_grouped`` (a group of small runs copied by one task, in threads its worker keeps), the
  verifications of the runs copied are sent as one task when the group is done.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator, Sequence

import redis

from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.messaging.task_names import KEY_PREFIX, job_wake_key
from nsmigrate.orchestrator.models import RunState
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.workers.context import WorkerContext

log = logging.getLogger(__name__)

#: A job's wake-ups are kept this long, and at most this many: a command reads them within its poll (``cli.wakes``).
WAKE_TTL_S = 60
WAKE_KEEP = 1000


def advance(
    ctx: WorkerContext,
    run_id: int,
    job_id: int,
    namespace: str,
    spec: JobSpec,
    *,
    again: bool = False,
    outcome: jobs_batches.AfterBatch | None = None,
) -> None:
    """``outcome``: what follows, as ``jobs_batches.finish_batch`` found it in its own statement; looked up with
    ``jobs_batches.after_batch`` when not given. ``again``: this task ran before — a redelivery after its worker was
    killed, or a Celery retry after an outage — and that run may have died between a change it recorded and the
    message that follows it. So clear a wake-up flag it may have set without sending the wake-up, and re-send the
    verification of a run that is ``copied`` (a duplicate verification is harmless)."""
    if again:
        ctx.redis.delete(lister_wake_key(run_id))
    follows = outcome or jobs_batches.after_batch(ctx.db, run_id, spec.max_batches_in_flight)
    copied = follows.copied
    if again and not copied:
        copied = jobs_and_runs.get_run(ctx.db, run_id).state == RunState.COPIED
    if copied:
        run_copied(ctx, run_id, job_id, namespace, spec)
    elif follows.wake_lister:
        wake_lister(ctx, run_id, job_id, namespace)
    elif follows.stuck:
        run_settled(ctx, job_id, run_id)  # its waiting command sees it stuck at once, not at its next poll


#: Verifications held for a group: job id → run id → namespace shown.
Held = dict[int, dict[int, str]]
#: The verifications held inside ``verifications_grouped``: of its thread, and of the calls it runs in kept threads
#: (``workers.transfer.concurrent_calls``, in copies of its context).
_held: contextvars.ContextVar[Held | None] = contextvars.ContextVar("nsmigrate_held_verifications", default=None)
_holding = threading.Lock()  # the threads of one group add to its held verifications


def run_copied(ctx: WorkerContext, run_id: int, job_id: int, namespace: str, spec: JobSpec) -> None:
    """What follows a run this caller moved to ``copied``: its verification, when the spec asks for it; else the run
    has settled."""
    if not spec.auto_verify:
        run_settled(ctx, job_id, run_id)
        return
    held = _held.get()
    if held is not None:
        with _holding:
            held.setdefault(job_id, {})[run_id] = display_namespace(namespace)
    else:
        ctx.dispatcher.verify_namespace(run_id, job_id=job_id, namespace=display_namespace(namespace))


@contextlib.contextmanager
def verifications_grouped(ctx: WorkerContext, order: Sequence[int] = ()) -> Iterator[Held]:
    """The verifications this thread sends inside the block go as one ``verify_small_namespaces`` task per job when
    it ends: a group of small runs copied by one task is verified by one task, not one message each. Calls it runs in
    kept threads hold theirs with them (they run in copies of its context). The runs go in ``order`` (the group's),
    any others after them.

    If the block raises, none is sent: the task is sent again (an outage is retried, a killed worker's task
    redelivered) and, running again, sends the verification of each run it finds ``copied``."""
    held: Held = {}
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)
    place = {run_id: n for n, run_id in enumerate(order)}
    for job_id, runs in held.items():
        ordered = sorted(runs, key=lambda run_id: place.get(run_id, len(place)))
        ctx.dispatcher.verify_small_namespaces(ordered, job_id=job_id, namespaces=[runs[r] for r in ordered])


def run_settled(ctx: WorkerContext, job_id: int, run_id: int) -> None:
    """Wake a command waiting on job ``job_id``: run ``run_id`` is copied (its spec does not verify), judged, or
    left with only failed batches. The job table stays the truth: a wake-up lost (Redis down, two commands waiting on
    one job) only leaves the command to its next poll, so a failure here fails nothing."""
    key = job_wake_key(job_id)
    try:
        with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, run_id)
            pipe.ltrim(key, -WAKE_KEEP, -1)
            pipe.expire(key, WAKE_TTL_S)
            pipe.execute()
    except redis.RedisError as e:
        log.info("no wake-up for job %s (run %s): %s", job_id, run_id, e)


def wake_lister(ctx: WorkerContext, run_id: int, job_id: int, namespace: str) -> None:
    # SET NX: many finishing batches, one wake-up message. The lister clears the flag when it starts.
    if ctx.redis.set(lister_wake_key(run_id), 1, nx=True, ex=60):
        ctx.dispatcher.list_namespace(run_id, job_id=job_id, namespace=display_namespace(namespace))


def lister_wake_key(run_id: int) -> str:
    return f"{KEY_PREFIX}:listwake:{run_id}"
