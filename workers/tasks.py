"""The Celery tasks: thin wrappers that load context and call the step modules.

Kwargs other than the id (job_id, namespace, …) are only there to make Flower and logs readable.
"""

from __future__ import annotations

from typing import Any

from orchestrator.names import TaskName
from workers import cleaning, copying, listing, verifying
from workers.app import app
from workers.context import get_context
from workers.retry import INFRASTRUCTURE_ERRORS

#: A task that could not reach the job table or Redis is sent again after a random wait of up to 2, 4, 8 … 60 s,
#: up to 20 times (minutes of outage): it changed nothing, and listing, copying and verifying are safe to repeat.
#: Cleanup is not retried this way: it deletes data, an operator looks at it first.
_RETRY_ON_OUTAGE: dict[str, Any] = {
    "autoretry_for": INFRASTRUCTURE_ERRORS, "retry_backoff": 2, "retry_backoff_max": 60, "retry_jitter": True,
    "max_retries": 20,
}


@app.task(name=TaskName.LIST_NAMESPACE.value, **_RETRY_ON_OUTAGE)
def list_namespace(run_id: int, **_context: Any) -> None:
    """Page the ids of one source namespace into batches and enqueue their copies (bounded in flight)."""
    listing.list_run(get_context(), run_id)


@app.task(name=TaskName.COPY_BATCH.value, **_RETRY_ON_OUTAGE)
def copy_batch(batch_id: int, **_context: Any) -> None:
    """fetch → route/enrich → upsert one batch; idempotent, so a redelivered task is harmless."""
    copying.copy_batch(get_context(), batch_id)


@app.task(name=TaskName.VERIFY_NAMESPACE.value, **_RETRY_ON_OUTAGE)
def verify_namespace(run_id: int, **_context: Any) -> None:
    """Counts, id sets and contents of one namespace run; stores the report and gates cleanup."""
    verifying.verify_run(get_context(), run_id)


@app.task(name=TaskName.CLEANUP_NAMESPACE.value)
def cleanup_namespace(run_id: int, **_context: Any) -> None:
    """Delete a verified source namespace (only when the spec allows it and the source is unchanged)."""
    cleaning.cleanup_run(get_context(), run_id)
