"""The Celery tasks: thin wrappers that load context and call the step modules.

Kwargs other than the id (job_id, namespace, …) are only there to make Flower and logs readable.
"""

from __future__ import annotations

from typing import Any

from orchestrator.names import TaskName
from workers import cleaning, copying, listing, verifying
from workers.app import app
from workers.context import get_context


@app.task(name=TaskName.LIST_NAMESPACE.value)
def list_namespace(run_id: int, **_context: Any) -> None:
    """Page the ids of one source namespace into batches and enqueue their copies (bounded in flight)."""
    listing.list_run(get_context(), run_id)


@app.task(name=TaskName.COPY_BATCH.value)
def copy_batch(batch_id: int, **_context: Any) -> None:
    """fetch → route/enrich → upsert one batch; idempotent, so a redelivered task is harmless."""
    copying.copy_batch(get_context(), batch_id)


@app.task(name=TaskName.VERIFY_NAMESPACE.value)
def verify_namespace(run_id: int, **_context: Any) -> None:
    """Counts, id sets and contents of one namespace run; stores the report and gates cleanup."""
    verifying.verify_run(get_context(), run_id)


@app.task(name=TaskName.CLEANUP_NAMESPACE.value)
def cleanup_namespace(run_id: int, **_context: Any) -> None:
    """Delete a verified source namespace (only when the spec allows it and the source is unchanged)."""
    cleaning.cleanup_run(get_context(), run_id)
