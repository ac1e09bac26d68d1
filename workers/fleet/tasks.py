"""The Celery tasks: thin wrappers that load context and call the step modules.

Kwargs other than the ids and ``wait_for_lock`` (job_id, namespace, …) are there to make Flower and logs readable
(and the failure text of a verification or cleanup). A task returns what it did and what it cost
(``workers.tally``), which Flower shows as its result; a task whose work failed for good records that in the job
table, sends what follows, then raises a ``TaskFailed`` that Celery marks FAILURE (``orchestrator.errors``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task

from nsmigrate.orchestrator.errors import CleanupFailed, GroupFailed, TaskFailed, VerificationFailed
from nsmigrate.orchestrator.messaging.task_names import TaskName
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.workers import tally
from nsmigrate.workers.context import WorkerContext, get_context
from nsmigrate.workers.fleet.app import app
from nsmigrate.workers.fleet.tuning import preload_sdk
from nsmigrate.workers.retry import INFRASTRUCTURE_ERRORS
from nsmigrate.workers.steps import (
    bulk_import as import_steps,
)
from nsmigrate.workers.steps import (
    cleaning,
    copying,
    erasing,
    listing,
    small_group,
    step_chain,
    verifying,
)
from nsmigrate.workers.steps import (
    collection as collection_steps,
)
from nsmigrate.workers.steps import (
    converting as convert_steps,
)
from nsmigrate.workers.stores.pgvector import store as _pgvector  # noqa: F401 - preloaded, see below
from nsmigrate.workers.stores.pinecone import store as _pinecone  # noqa: F401 - preloaded, see below

# The store adapters and the modules the SDK imports on first use are loaded here, in the worker's parent process, so
# that every prefork child inherits them instead of importing them during its first task.
preload_sdk()

#: A task that could not reach the job table or Redis is sent again after a random wait of up to 2, 4, 8 … 60 s,
#: up to 20 times (minutes of outage): it changed nothing, and listing, copying and verifying are safe to repeat.
#: Cleanup is not retried this way: it deletes data, an operator looks at it first.
_RETRY_ON_OUTAGE: dict[str, Any] = {
    "autoretry_for": INFRASTRUCTURE_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
}


def _ran_before(task: Task) -> bool:
    """Whether this message was handed out before: redelivered by Redis after its worker died (acks_late) or sent
    again by the retry on an outage. Its earlier run may have stopped between two of its steps: the steps' ``again``
    flag, whose story is told in ``orchestrator.recovery``."""
    return _redelivered(task) or bool(task.request.retries)


def _redelivered(task: Task) -> bool:
    """Whether Redis handed this very message out again: the worker that had it died without acknowledging it (a
    Celery retry after an outage is a new message, and not redelivered unless its own worker died too)."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


#: Raised by a task whose work failed and was recorded: Celery marks it FAILURE and logs it without a traceback.
_FAILS: dict[str, Any] = {"throws": (TaskFailed,)}


@app.task(name=TaskName.LIST_NAMESPACE.value, bind=True, **_RETRY_ON_OUTAGE, **_FAILS)
def list_namespace(self: Task, run_id: int, wait_for_lock: bool = False, **_context: Any) -> dict[str, Any]:
    """Page the ids of one source namespace into batches and enqueue their copies (bounded in flight).
    ``wait_for_lock`` (sent by `resume`): wait out the lock of a lister that was killed."""
    with tally.counting() as counts:
        listing.list_run(get_context(), run_id, wait_for_lock=wait_for_lock, again=_ran_before(self))
    return counts.result()


@app.task(name=TaskName.COPY_BATCH.value, bind=True, **_RETRY_ON_OUTAGE, **_FAILS)
def copy_batch(self: Task, batch_id: int, **_context: Any) -> dict[str, Any]:
    """fetch → route/enrich → upsert one batch; idempotent, so a redelivered task is harmless."""
    with tally.counting() as counts:
        vectors = copying.copy_batch(get_context(), batch_id, again=_ran_before(self), redelivered=_redelivered(self))
    return counts.result(vectors=vectors)


@app.task(name=TaskName.COPY_SMALL_NAMESPACES.value, bind=True, **_RETRY_ON_OUTAGE, **_FAILS)
def copy_small_namespaces(self: Task, run_ids: list[int], **_context: Any) -> dict[str, Any]:
    """List and copy a group of small namespaces (one page and one batch each), one after the other."""
    with tally.counting() as counts:
        vectors = small_group.copy_small_runs(get_context(), run_ids, again=_ran_before(self))
    return counts.result(vectors=vectors)


@app.task(name=TaskName.VERIFY_NAMESPACE.value, **_RETRY_ON_OUTAGE, **_FAILS)
def verify_namespace(run_id: int, job_id: int | None = None, **_context: Any) -> dict[str, Any]:
    """Counts, id sets and contents of one namespace run; stores the report and gates cleanup."""
    with tally.counting() as counts:
        report = verifying.verify_run(get_context(), run_id)
    return counts.result(**verdicts([report] if report else [], job_id))


@app.task(name=TaskName.VERIFY_SMALL_NAMESPACES.value, **_RETRY_ON_OUTAGE, **_FAILS)
def verify_small_namespaces(run_ids: list[int], job_id: int, rejudge: bool = False, **_context: Any) -> dict[str, Any]:
    """The verifications of a group of small namespaces of one job, one after the other (``rejudge``: `nsmigrate
    verify` asked, and runs that have a verdict are judged again)."""
    with tally.counting() as counts:
        reports = verifying.verify_runs(get_context(), run_ids, job_id, rejudge=rejudge)
    return counts.result(**verdicts(reports, job_id))


def verdicts(reports: list[dict[str, Any]], job_id: int | None) -> dict[str, int]:
    """How many namespaces passed; raises ``VerificationFailed`` (one namespace) or ``GroupFailed`` (several) naming
    those that did not, with their reasons."""
    failed = [r for r in reports if not r.get("passed")]
    if not failed:
        return {"verified": len(reports)}
    if len(reports) == 1:
        reasons = "; ".join(failed[0].get("reasons") or ["did not pass"])
        raise VerificationFailed(reasons, job=job_id, namespace=failed[0].get("source_namespace"))
    named = "; ".join(f"{r.get('source_namespace')}: {'; '.join(r.get('reasons') or [])}" for r in failed)
    raise GroupFailed(f"{len(failed)} of {len(reports)} namespaces failed verification: {named}", job=job_id)


@app.task(name=TaskName.CLEANUP_NAMESPACE.value, **_FAILS)
def cleanup_namespace(run_id: int, job_id: int | None = None, **_context: Any) -> dict[str, Any]:
    """Delete a verified source namespace (only when the spec allows it and the source is unchanged)."""
    with tally.counting() as counts:
        outcome = cleaning.cleanup_run(get_context(), run_id)
    # A cleanup under way elsewhere reports its own end; a namespace cleaned before needs none.
    if outcome["action"] not in ("deleted", cleaning.UNDER_WAY, cleaning.CLEANED_ALREADY):
        what = f"cleanup {outcome['action']}: {outcome.get('reason', '')}"
        raise CleanupFailed(what, job=job_id, namespace=display_namespace(outcome["namespace"]))
    return counts.result(deleted=outcome["count"])


@app.task(name=TaskName.COLLECTION_STEP.value, **_RETRY_ON_OUTAGE, **_FAILS)
def collection_step(
    job_id: int, polls: int = 0, failing_since: float | None = None, chain: str | None = None, **_context: Any
) -> dict[str, Any]:
    """The next step of a `strategy: collection` job: make the collection, the index from it, hand it to
    verification; sends itself again while Pinecone is busy."""
    return _one_step(collection_steps.step, job_id, polls, failing_since, chain)


@app.task(name=TaskName.CONVERT_STEP.value, **_RETRY_ON_OUTAGE, **_FAILS)
def convert_step(
    job_id: int, polls: int = 0, failing_since: float | None = None, chain: str | None = None, **_context: Any
) -> dict[str, Any]:
    """The next step of a `strategy: convert` job: start Pinecone's conversion, follow it, then sync what was written
    after its snapshot and hand the namespaces to verification; sends itself again while Pinecone converts."""
    return _one_step(convert_steps.step, job_id, polls, failing_since, chain)


@app.task(name=TaskName.IMPORT_STEP.value, **_RETRY_ON_OUTAGE, **_FAILS)
def import_step(
    job_id: int, polls: int = 0, failing_since: float | None = None, chain: str | None = None, **_context: Any
) -> dict[str, Any]:
    """The next step of a `strategy: import` job: write the import files, start Pinecone's import, track it, hand
    the namespaces to verification; sends itself again while Pinecone is busy."""
    return _one_step(import_steps.step, job_id, polls, failing_since, chain)


def _one_step(
    take: Callable[[WorkerContext, int, int, float | None], str],
    job_id: int,
    polls: int,
    failing_since: float | None,
    chain: str | None,
) -> dict[str, Any]:
    """A step of a stepped job's chain (``step_chain``): taken, or nothing done when another step of the job runs or
    a newer chain replaced this one."""
    ctx = get_context()
    with tally.counting() as counts, step_chain.one_step(ctx, job_id, chain) as not_taken:
        did = not_taken or take(ctx, job_id, polls, failing_since)
    return counts.result(step=did)


@app.task(name=TaskName.ERASE_PLACE.value, **_RETRY_ON_OUTAGE, **_FAILS)
def erase_place(place_id: int, **_context: Any) -> dict[str, Any]:
    """Delete one place of an erasure job (a namespace, a creator's vectors in a shared namespace, a backup) and
    check it gone; idempotent, so a redelivered or retried task finishes the job."""
    with tally.counting() as counts:
        erased = erasing.erase_place(get_context(), place_id)
    return counts.result(erased=erased)
