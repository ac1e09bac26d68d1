"""What happens next after a step: the small decisions that keep a namespace run moving.

- A run whose listing is done and whose batches are all done becomes ``copied`` (exactly one caller wins that) and,
  when the spec says so, is queued for verification.
- A lister that stopped at the in-flight bound is woken when batches finish, at most one wake-up pending at a time.
"""

from __future__ import annotations

from orchestrator import jobs
from orchestrator.models import RunState
from orchestrator.names import KEY_PREFIX
from orchestrator.records import display_namespace
from orchestrator.spec import JobSpec
from workers.context import WorkerContext


def advance(
    ctx: WorkerContext,
    run_id: int,
    job_id: int,
    namespace: str,
    spec: JobSpec,
    *,
    again: bool = False,
    outcome: tuple[bool, bool] | None = None,
) -> None:
    """``outcome``: (copied, wake) as ``jobs.finish_batch`` found them in its own transaction; looked up with
    ``jobs.after_batch`` when not given. ``again``: this task ran before — a redelivery after its worker was killed,
    or a Celery retry after an outage — and that run may have died between a change it recorded and the message that
    follows it. So clear a wake-up flag it may have set without sending the wake-up, and re-send the verification of
    a run that is ``copied`` (a duplicate verification is harmless)."""
    if again:
        ctx.redis.delete(lister_wake_key(run_id))
    copied, wake = outcome or jobs.after_batch(ctx.db, run_id, spec.max_batches_in_flight)
    if again and not copied:
        copied = jobs.get_run(ctx.db, run_id).state == RunState.COPIED
    if copied:
        run_copied(ctx, run_id, job_id, namespace, spec)
    elif wake:
        wake_lister(ctx, run_id, job_id, namespace)


def run_copied(ctx: WorkerContext, run_id: int, job_id: int, namespace: str, spec: JobSpec) -> None:
    """What follows a run this caller moved to ``copied``: its verification, when the spec asks for it."""
    if spec.auto_verify:
        ctx.dispatcher.verify_namespace(run_id, job_id=job_id, namespace=display_namespace(namespace))


def wake_lister(ctx: WorkerContext, run_id: int, job_id: int, namespace: str) -> None:
    # SET NX: many finishing batches, one wake-up message. The lister clears the flag when it starts.
    if ctx.redis.set(lister_wake_key(run_id), 1, nx=True, ex=60):
        ctx.dispatcher.list_namespace(run_id, job_id=job_id, namespace=display_namespace(namespace))


def lister_wake_key(run_id: int) -> str:
    return f"{KEY_PREFIX}:listwake:{run_id}"
