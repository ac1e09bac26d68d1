"""The steps of a ``strategy: convert`` job (see ``orchestrator.planning.convert_strategy``): one task asks the control
plane where Pinecone's conversion is, takes the next step, records it in the job table and sends itself again later
while Pinecone converts (the share converted shown on the runs). When the new document index is ready, its
namespaces' runs become ``copied`` and each is synced (``workers.steps.syncing``: what was written to the source after
the snapshot, and what changed since, is copied by the fleet's own batches), then verified like any run: every id and
field against the source (``workers.steps.verifying``, which waits for the target's lagging reads)."""

from __future__ import annotations

import logging
from typing import NoReturn

from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.errors import ConversionFailed, RetryableError
from nsmigrate.orchestrator.jobs import collection as jobs_collection
from nsmigrate.orchestrator.jobs import conversion as jobs_conversion
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import ConvertPhase, RunState
from nsmigrate.orchestrator.planning.collection_strategy import poll_delay_s
from nsmigrate.orchestrator.planning.convert_strategy import next_step
from nsmigrate.orchestrator.planning.target_indexes import wanted_shape
from nsmigrate.orchestrator.redaction import redact_url
from nsmigrate.orchestrator.spec.convert import create_of
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.orchestrator.states import LISTABLE_RUN_STATES, phase_name
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.steps import step_chain
from nsmigrate.workers.steps.collection import Driven
from nsmigrate.workers.steps.syncing import sync_runs
from nsmigrate.workers.stores.pinecone.control import PineconeControl

log = logging.getLogger(__name__)


def step(ctx: WorkerContext, job_id: int, polls: int = 0, failing_since: float | None = None) -> str:
    """Take the next step of convert job ``job_id``; returns what it did (for logs and tests).

    A step that failed for good — Pinecone refused (a plan below Standard, a pod source), the conversion failed, the
    control plane failed for longer than ``collection_control_plane_outage_s`` on end (``failing_since``), or anything
    unforeseen — is recorded (its runs ``list_failed`` with the error, `nsmigrate retry` goes on from the phase) and
    raised as ``ConversionFailed``, so that the task is a FAILURE in Flower with the reason. An outage of the job
    table or Redis propagates: Celery sends the task again."""
    spec = jobs_and_runs.job_spec(ctx.db, job_id)
    phase = jobs_collection.job_phase(ctx.db, job_id)
    if phase_name(phase) == ConvertPhase.CONVERTED:
        return _sync(ctx, job_id)  # a redelivered step, or `resume`: runs still owing their sync
    if not any(r.state in LISTABLE_RUN_STATES for r in jobs_and_runs.runs_of(ctx.db, job_id)):
        return "stopped"  # cancelled, or failed and not retried
    source, target = spec.source, spec.target
    assert isinstance(source, PineconeStoreSpec) and isinstance(target, PineconeStoreSpec)  # the spec made sure
    control = PineconeControl(target, allowed_key_vars=ctx.settings.allowed_key_vars)
    driven = Driven(
        ctx,
        job_id,
        control,
        what=f"a step of the conversion of {source.label} into {target.label}",
        fail=lambda reason: _fail(ctx, job_id, reason),
        again=lambda polls, delay_s, since: ctx.dispatcher.convert_step(
            job_id, polls=polls, countdown_s=delay_s, failing_since=since, chain=step_chain.current()
        ),
        outage=lambda failing_s, e: _outage_text(control, spec, failing_s, e, job_id),
    )
    return driven.take(lambda: _take_step(ctx, control, spec, job_id, phase, polls), polls, failing_since)


def _outage_text(control: PineconeControl, spec: JobSpec, failing_s: float, error: RetryableError, job_id: int) -> str:
    return (
        f"the Pinecone control plane {redact_url(control.host)} failed for {failing_s:.0f} s on end while index "
        f"{spec.source.label} was converted into {spec.target.label}; last answer: {error} — check Pinecone's status "
        f"and the key's project, then run `nsmigrate retry {job_id}` (setting "
        "NSMIGRATE_COLLECTION_CONTROL_PLANE_OUTAGE_S bounds this wait)"
    )


def _fail(ctx: WorkerContext, job_id: int, reason: str) -> NoReturn:
    jobs_conversion.conversion_failed(ctx.db, job_id, reason)
    raise ConversionFailed(f"strategy convert: {reason}", job=job_id)


def _take_step(
    ctx: WorkerContext, control: PineconeControl, spec: JobSpec, job_id: int, phase: str | None, polls: int
) -> str:
    source, target = spec.source, spec.target
    assert isinstance(source, PineconeStoreSpec) and isinstance(target, PineconeStoreSpec)
    source_name, target_name = str(source.index), str(target.index)
    index = control.describe_index(target_name)
    conversion = control.newest_conversion(source_name, target_name) if index is not None else None
    decided = next_step(phase, conversion, index, target_name)
    again = 0  # polls of the next step: reset by progress, counted while Pinecone is busy
    if decided.action == "fail":
        _fail(ctx, job_id, decided.reason)
    if decided.action == "start":
        described = control.describe_index(source_name)
        dimension = described.dimension if described is not None else None
        metric = described.metric if described is not None else None
        shape = wanted_shape(create_of(target), dimension or 0, metric, documents=target.documents)
        # Recorded before asking: a step that stops after Pinecone started the conversion (a worker killed, an
        # answer lost) is taken up again as converting, where the index is the job's own, not one that "appeared".
        jobs_conversion.converting(ctx.db, job_id, source=source_name, index=target_name, shape=shape.as_json())
        started = control.start_conversion(source_name, target_name, shape)
        jobs_and_runs.record_event(
            ctx.db, "conversion_started", default_actor(), job_id, conversion_job=started.job_id, index=target_name
        )
    elif decided.action == "wait":
        percent = 100 * decided.share if decided.share is not None else None
        # Also where a retried job's runs wait again; the phase shows Pinecone's progress, the runs their share.
        jobs_conversion.converting(ctx.db, job_id, percent, source=source_name, index=target_name)
        if decided.share is not None:
            jobs_conversion.conversion_progress(ctx.db, job_id, decided.share)
        again = polls + 1
    else:  # converted
        assert index is not None and conversion is not None
        counts = ctx.store(target).namespaces()
        planned = {r.source_namespace: r.source_count for r in jobs_and_runs.runs_of(ctx.db, job_id)}
        jobs_conversion.converted(
            ctx.db,
            job_id,
            {ns: counts.get(ns) or planned[ns] for ns in planned},  # counts lag writes: the planned ones until then
            index=target_name,
            host=redact_url(index.host) if index.host else index.host,
            conversion_job=conversion.job_id,
            records_converted=conversion.records_converted,
            records_skipped=conversion.records_skipped,
        )
        return _sync(ctx, job_id)
    ctx.dispatcher.convert_step(job_id, polls=again, countdown_s=poll_delay_s(again), chain=step_chain.current())
    return decided.action


def _sync(ctx: WorkerContext, job_id: int) -> str:
    """Sync every run of the converted job still ``copied`` (not synced yet): what the source holds now that the
    snapshot did not, or holds otherwise, is copied by copy batches; each run is then verified (``auto_verify``)."""
    runs = [r.id for r in jobs_and_runs.runs_of(ctx.db, job_id) if r.state == RunState.COPIED]
    synced = list(sync_runs(ctx, runs, threads=ctx.settings.sync_threads))
    refused = [r for r in synced if r["action"] == "refused"]
    for result in refused:
        log.warning("convert job %s: the sync of %s was refused: %s", job_id, result["namespace"], result["reason"])
    copied = sum(int(r.get("to_copy") or 0) for r in synced)
    log.info("convert job %s: %d namespaces synced, %d records copied after the snapshot", job_id, len(synced), copied)
    return "converted"
