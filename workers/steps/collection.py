"""The steps of a ``strategy: collection`` job (see ``orchestrator.planning.collection_strategy``): one task asks the
control plane where Pinecone is, takes the next step, records it in the job table and sends itself again later while
Pinecone is busy. When the index made from the collection is ready, its namespaces' runs become ``copied`` and are
verified
(``workers.steps.verifying``: every target id fetched from the pod source and compared, and the counts)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.errors import (
    CollectionFailed,
    NsmigrateError,
    RetryableError,
    StopAsked,
    StoreError,
    TaskFailed,
    failure_text,
)
from nsmigrate.orchestrator.jobs import collection as jobs_collection
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import CollectionPhase
from nsmigrate.orchestrator.planning.collection_strategy import collection_name, next_step, poll_delay_s
from nsmigrate.orchestrator.planning.target_indexes import wanted_shape
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.redaction import redact_url
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import CreateIndex, PineconeStoreSpec
from nsmigrate.orchestrator.states import LISTABLE_RUN_STATES
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.retry import INFRASTRUCTURE_ERRORS
from nsmigrate.workers.steps import step_chain
from nsmigrate.workers.stores.pinecone.control import CollectionInfo, PineconeControl

log = logging.getLogger(__name__)


def step(ctx: WorkerContext, job_id: int, polls: int = 0, failing_since: float | None = None) -> str:
    """Take the next step of collection job ``job_id``; returns what it did (for logs and tests).

    A step that failed for good — Pinecone refused, the control plane failed for longer than
    ``collection_control_plane_outage_s`` on end (``failing_since``: epoch time of the first of those failures), or
    anything unforeseen (a bug, an answer of a shape nobody expected) — is recorded (its runs ``list_failed`` with the
    error, `nsmigrate retry` goes on) and raised as ``CollectionFailed``, so that the task is a FAILURE in Flower
    with the reason and `status` and `run --wait` see it. An outage of the job table or Redis propagates: Celery
    sends the task again."""
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    phase = jobs_collection.job_phase(ctx.db, job_id)
    if phase == CollectionPhase.RESTORED:
        return "restored"  # a redelivered step: its runs were handed to verification already
    if not any(r.state in LISTABLE_RUN_STATES for r in jobs_and_runs.runs_of(ctx.db, job_id)):
        return "stopped"  # cancelled, or failed and not retried
    source, target = spec.source, spec.target
    assert isinstance(source, PineconeStoreSpec) and isinstance(target, PineconeStoreSpec)  # the spec made sure
    control = PineconeControl(target, allowed_key_vars=ctx.settings.allowed_key_vars)
    name = collection_name(spec.name, job_id)
    driven = Driven(
        ctx,
        job_id,
        control,
        what=f"a step of collection {name}",
        fail=lambda reason: _fail(ctx, job_id, reason),
        again=lambda polls, delay_s, since: ctx.dispatcher.collection_step(
            job_id, polls=polls, countdown_s=delay_s, failing_since=since, chain=step_chain.current()
        ),
        outage=lambda failing_s, e: _outage_text(control, spec, name, failing_s, e, job_id),
    )
    return driven.take(lambda: _take_step(ctx, control, spec, job_id, phase, name, polls), polls, failing_since)


@dataclass(frozen=True)
class Driven:
    """What a step of a strategy that Pinecone carries out (collection, convert) does when it fails: wait out the
    control plane's outage up to ``collection_control_plane_outage_s`` (sending itself ``again``), record anything
    else that failed for good (``fail``: its runs ``list_failed``, then the step's ``TaskFailed``), and let an outage
    of the job table or Redis propagate (Celery sends the task again)."""

    ctx: WorkerContext
    job_id: int
    control: PineconeControl
    what: str  # the step, in a message: "a step of collection X"
    fail: Callable[[str], NoReturn]
    again: Callable[[int, float, float], None]  # (polls, countdown_s, failing_since)
    outage: Callable[[float, RetryableError], str]  # (seconds failing, last error) → the reason recorded

    def take(self, take_step: Callable[[], str], polls: int, failing_since: float | None) -> str:
        job_id = self.job_id
        try:
            return take_step()
        except RetryableError as e:
            since = failing_since if failing_since is not None else time.time()
            if time.time() - since < self.ctx.settings.collection_control_plane_outage_s:
                log.warning("job %s: the control plane did not answer (%s); asking again", job_id, e)
                self.again(polls + 1, poll_delay_s(polls + 1), since)
                return "wait"
            self.fail(self.outage(time.time() - since, e))
        except TaskFailed:
            raise  # recorded already
        except StopAsked:
            return "stopped"  # cancelled before a phase nothing would stop (``collection.enter_phase``)
        except INFRASTRUCTURE_ERRORS:
            raise  # the job table or Redis is unreachable: the task is sent again (workers.fleet.tasks)
        except NsmigrateError as e:
            self.fail(f"{failure_text(e)}; run `nsmigrate retry {job_id}` once its cause is fixed")
        except Exception as e:
            # Anything unforeseen must not leave the runs waiting with no reason: `status` and `run --wait` would say
            # nothing for ever while Flower alone showed the FAILURE.
            log.exception("job %s: %s failed unexpectedly", job_id, self.what)
            error = f"unexpected {type(e).__name__} in {self.what}: {e}"
            self.fail(f"{error}; run `nsmigrate retry {job_id}` once its cause is fixed")
        finally:
            self.control.close()


def _outage_text(
    control: PineconeControl, spec: JobSpec, name: str, failing_s: float, error: RetryableError, job_id: int
) -> str:
    host = redact_url(control.host)
    return (
        f"the Pinecone control plane {host} failed for {failing_s:.0f} s on end while collection {name} of "
        f"pod index {spec.source.label} was made into index {spec.target.label}; last answer: {error} — check "
        f"Pinecone's status and the key's project, then run `nsmigrate retry {job_id}` (setting "
        "NSMIGRATE_COLLECTION_CONTROL_PLANE_OUTAGE_S bounds this wait)"
    )


def _fail(ctx: WorkerContext, job_id: int, reason: str) -> NoReturn:
    jobs_collection.collection_failed(ctx.db, job_id, reason)
    raise CollectionFailed(f"strategy collection: {reason}", job=job_id)


def _ready_dimension(control: PineconeControl, collection: CollectionInfo) -> int:
    """The dimension of a Ready collection, which its index must be created with. The spec lets the control plane
    leave it out; nsmigrate does not guess it (a wrong one is refused, or worse, a different index is made)."""
    if collection.dimension is not None:
        return collection.dimension
    raise StoreError(
        f"the Pinecone control plane {redact_url(control.host)} described collection {collection.name} as Ready "
        f"without its dimension (status {collection.status}, vector_count {collection.vector_count}, no dimension), "
        "and an index is created from a collection with its dimension",
        hint=f"check collection {collection.name} in the Pinecone console: nsmigrate does not guess a dimension",
        store=control.name,
        collection=collection.name,
    )


def _take_step(
    ctx: WorkerContext, control: PineconeControl, spec: JobSpec, job_id: int, phase: str | None, name: str, polls: int
) -> str:
    source, target = spec.source, spec.target
    assert isinstance(source, PineconeStoreSpec) and isinstance(target, PineconeStoreSpec)
    target_name = str(target.index)
    collection = control.describe_collection(name)
    index = control.describe_index(target_name)
    decided = next_step(phase, collection.status if collection else None, index, target_name, name)
    again = 0  # polls of the next step: reset by progress, counted while Pinecone is busy
    if decided.action == "fail":
        _fail(ctx, job_id, decided.reason)
    if decided.action == "create_collection":
        control.create_collection(name, str(source.index))
        jobs_collection.enter_phase(ctx.db, job_id, CollectionPhase.COLLECTING, collection=name, source=source.index)
    elif decided.action == "wait":
        # Also where the phase was not recorded yet (a worker died in between), and for a retried job's runs.
        current = CollectionPhase(phase) if phase is not None else CollectionPhase.COLLECTING
        jobs_collection.enter_phase(ctx.db, job_id, current, collection=name, source=source.index)
        again = polls + 1
    elif decided.action == "create_index":
        assert collection is not None  # next_step creates an index only from a Ready collection
        pod = control.describe_index(str(source.index))
        dimension = _ready_dimension(control, collection)
        shape = wanted_shape(target.create or CreateIndex(), dimension, pod.metric if pod else None)
        if phase is None:
            jobs_collection.enter_phase(
                ctx.db, job_id, CollectionPhase.COLLECTING, collection=name, source=source.index
            )
        detail: dict[str, Any] = {"index": target_name, "collection": name, "shape": shape.as_json()}
        # Recorded before asking: a step that stops after Pinecone made the index (a worker killed, an answer lost)
        # is taken up again as restoring, where that index is the job's own, not one that "appeared" in its way.
        jobs_collection.enter_phase(
            ctx.db, job_id, CollectionPhase.RESTORING, **detail, vectors=collection.vector_count
        )
        created = control.create_index_from_collection(target_name, name, shape)
        jobs_and_runs.record_event(ctx.db, "target_index_created", default_actor(), job_id, host=created.host, **detail)
    else:  # restored
        counts = ctx.store(target).namespaces()
        assert index is not None
        run_ids = jobs_collection.collection_restored(ctx.db, job_id, counts, index=target_name, host=index.host)
        for run in jobs_and_runs.runs_of(ctx.db, job_id):
            if run.id in run_ids:
                namespace = display_namespace(run.source_namespace)
                ctx.dispatcher.verify_namespace(run.id, job_id=job_id, namespace=namespace)
        return "restored"
    ctx.dispatcher.collection_step(job_id, polls=again, countdown_s=poll_delay_s(again), chain=step_chain.current())
    return decided.action
