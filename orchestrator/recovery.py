"""Recovery: how work that stopped half-way is taken up again. One story, three ways in.

The job table is the truth; Redis only carries messages, and every step is safe to do twice (a page is recorded only
from its saved token, a batch is copied by id, a verdict already recorded is kept). So recovering never repairs
anything: it sends again, as a task, whatever the job table says is still to do. What differs is who notices.

1. **A worker died in a task, or the job table or Redis was away** (redelivery). Tasks are ``acks_late`` with
   ``reject_on_worker_lost``: Redis hands a killed worker's message out again after the visibility timeout, and a
   task that met an outage is retried by Celery. Such a delivery runs with ``again=True`` (``workers.fleet.tasks``
   ``_ran_before``), the one flag recovery threads through the steps, because the first delivery may have died
   *between* a change it recorded and the message that should follow it. So a step run ``again`` first sends what
   its first delivery may have owed: a lister sends the copy tasks of the batches it had recorded and waits out the
   dead lister's lock (``workers.steps.listing``); a batch clears the lister's wake-up flag it may have set without
   sending the wake-up, and sends its run's verification if the run is ``copied``
   (``workers.steps.next_steps.advance``); a group of small runs does both (``workers.steps.small_group``). A first
   delivery skips that: it can owe nothing yet. A cleanup, whatever its delivery, that finds its run ``cleaning``
   waits out the dead cleanup's lock and takes the run up (``workers.steps.cleaning``).
2. **A message was lost where Redis cannot give it back** (stalled runs). kombu takes a message off its queue (BRPOP)
   before it records it as unacknowledged, so a worker killed in between takes it along; a Redis restart loses every
   queue. Nothing else would send that work again: a batch stays ``queued``, a run ``pending`` or ``listing`` (or,
   under ``cleanup.mode: auto``, ``verified`` and never cleaned up), for ever. So every worker sweeps
   (``start_sweeping``, every ``sweep_interval_s``): a run that has work to come and saw no change for the visibility
   timeout is claimed (``claim_stalled_runs``, one UPDATE, so however many workers sweep a stalled run is claimed
   once per timeout; a row another session holds locked is skipped and swept next time) and its work is sent again
   (``resend_stalled`` → ``resume``). A job whose strategy Pinecone carries out (collection, import, convert) polls
   it for hours with no change to its runs: the step sent again then takes the job's chain of steps over, or does
   nothing while a step runs (``workers.steps.step_chain``). An erasure's places are swept the same way
   (``resend_stalled_places``): those still to do of an erasure none of whose places changed for the timeout.
3. **An operator asks** (``nsmigrate resume JOB``, or ``nsmigrate run`` of a spec whose job is unfinished, through
   ``launch.start_or_resume``): ``resume`` sends everything the job still has to do at once, without waiting for a
   timeout. A job that was cancelled or rolled back is never taken up again (``jobs_and_runs.refuse_stopped``).

``resume`` is the one place that turns "what the job table says is left" into messages; 2 and 3 both go through it.
A namespace still ``checking`` (its own checks under way in the process that plans the job, ``launch.start_or_resume``)
has nothing recorded to send again and must not be copied unchecked. While that process lives (it holds its job's
``planning`` lock) the namespace is left to it: it sends or refuses it as its check ends. Once it is gone, an
operator's ``resume`` refuses the namespace, saying to copy it with a new job; a process that was only cut off from
the job table and checks it afterwards says so too (``refused_meanwhile``). Either way the job is judged again after
(``maybe_finish_job``): refusing its last open runs may finish it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Collection, Iterator
from datetime import timedelta
from typing import Any

import redis as redis_lib
import sqlalchemy as sa

from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.cutover import published
from nsmigrate.orchestrator.errors import JobStopped
from nsmigrate.orchestrator.jobs import batches as jobs_batches
from nsmigrate.orchestrator.jobs import collection as jobs_collection
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import verdicts as jobs_verdicts
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher, send_strategy_step
from nsmigrate.orchestrator.models import (
    Batch,
    BatchState,
    ConvertPhase,
    Job,
    JobKind,
    JobState,
    NamespaceRun,
    RunState,
    utcnow,
)
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.states import ACTIVE_BATCH_STATES, AWAITING_VERDICT_RUN_STATES, LISTABLE_RUN_STATES

log = logging.getLogger(__name__)

#: The advisory lock a process planning a job holds, shared, from before it writes the job until the job's own
#: namespace checks ended (``planning``): its first key; the second is the job name's ``hashtext``.
PLANNING_LOCK = 7316003
# The lock's session asks Postgres to end it, and the lock, within a minute of its client's host going away without
# a word (a killed process's socket is closed at once); the system's default waits two hours.
_HOLD_PLANNING = sa.text(
    "SELECT set_config('tcp_keepalives_idle', '30', false), set_config('tcp_keepalives_interval', '10', false), "
    f"set_config('tcp_keepalives_count', '3', false), pg_advisory_lock_shared({PLANNING_LOCK}, hashtext(:name))"
)
_NAME_OF_JOB = "(SELECT hashtext(name) FROM jobs WHERE id = :job_id)"
_TRY_PLANNING = sa.text(f"SELECT pg_try_advisory_lock({PLANNING_LOCK}, {_NAME_OF_JOB})")
_END_TRY = sa.text(f"SELECT pg_advisory_unlock({PLANNING_LOCK}, {_NAME_OF_JOB})")
#: Why ``resume`` refuses a namespace whose checks the process planning its job did not end.
PLANNING_STOPPED = (
    "its own checks did not end (the process planning the job stopped first); copy it with a new job: "
    "`nsmigrate run SPEC --new`"
)


@contextlib.contextmanager
def planning(db: jobs_database.Database, job_name: str) -> Iterator[None]:
    """Held by a process that plans a job named ``job_name`` and checks its namespaces (``launch.start_or_resume``):
    while it is, ``resume`` leaves the job's ``checking`` runs to it. A lock of the process's own session, on a
    connection of its own: it needs no refreshing, and it ends with the process (with its session)."""
    conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")  # not idle in a transaction
    try:
        conn.execute(_HOLD_PLANNING, {"name": job_name})
        yield
    finally:
        conn.invalidate()  # its session ends, and the lock with it, whatever became of the connection
        conn.close()


def refused_meanwhile(db: jobs_database.Database, job_id: int, passed: Collection[str]) -> dict[str, str]:
    """Of ``passed``, the source namespaces whose checks just passed, those a ``resume`` refused meanwhile, finding
    the process planning them gone (it had lost its job-table session: ``planning`` with it), and why: that process
    says so (``launch.Starting.checked``) instead of dropping them without a word."""
    if not passed:
        return {}
    refused = sa.select(NamespaceRun.source_namespace).where(
        NamespaceRun.job_id == job_id,
        NamespaceRun.source_namespace.in_(list(passed)),
        NamespaceRun.state == RunState.CANCELLED,
        NamespaceRun.last_error == PLANNING_STOPPED,
    )
    why = "its checks passed, but `nsmigrate resume` had refused it meanwhile (this process had lost its job-table "
    why += "session, so it took it for stopped); copy it with a new job: `nsmigrate run SPEC --new`"
    with db.transaction() as s:
        return dict.fromkeys(s.scalars(refused), why)


def resume(
    db: jobs_database.Database,
    dispatcher: Dispatcher,
    job_id: int,
    *,
    only_runs: Collection[int] | None = None,
    together: bool = True,
    action: str = "job_resumed",
    actor: str | None = None,
) -> dict[str, int]:
    """Re-enqueue everything a job still has to do: unfinished listers, queued/running batches, verifications of
    copied runs. Safe to repeat: batches are idempotent and listers take a lock and resume from their saved token.
    A resumed lister waits out the lock of a lister that was killed (it expires within ``lister_lock_ttl_s``).
    Runs still ``checking`` are left to the process planning the job while it lives, else refused (``_settle_checks``;
    counted as ``checking`` or ``refused``); the job is then judged again (``maybe_finish_job``).

    ``only_runs``: just these namespace runs. ``together``: send the tasks in one round trip (``Dispatcher.together``;
    a worker, whose pooled broker connections may predate a Redis restart, sends them one by one). ``action``: the
    audit event recorded, ``actor`` who asked (default: this process's user@host).

    Raises:
        JobStopped: the job was cancelled or rolled back; nothing is sent.
    """
    jobs_and_runs.refuse_stopped(db, job_id, "resume")
    strategy = jobs_and_runs.stepped_strategy(db, job_id)
    if strategy == "convert" and jobs_collection.job_phase(db, job_id) == ConvertPhase.CONVERTED:
        # Converted: its runs go the fleet's way now (a sync's copy batches, verification), but a ``copied`` run
        # may still owe its sync (the step stopped before it): the step syncs those, then sends their verification.
        runs_now = [r for r in jobs_and_runs.runs_of(db, job_id) if only_runs is None or r.id in only_runs]
        if any(r.state == RunState.COPIED for r in runs_now):
            dispatcher.convert_step(job_id)
        only_runs = {r.id for r in runs_now if r.state != RunState.COPIED}
    elif strategy is not None:
        return _resume_collection(db, dispatcher, job_id, strategy, action, actor)
    listing, batches = jobs_batches.unfinished_work(db, job_id)
    runs = {r.id: r for r in jobs_and_runs.runs_of(db, job_id)}
    checking = sum(r.state == RunState.CHECKING for r in runs.values())
    checks = _settle_checks(db, job_id, checking, actor) if checking and only_runs is None else {}
    to_verify = jobs_and_runs.runs_in_state(db, job_id, *AWAITING_VERDICT_RUN_STATES)
    copying = jobs_and_runs.runs_in_state(db, job_id, RunState.COPYING)
    to_clean = jobs_verdicts.auto_cleanups_owed(db, job_id)
    if only_runs is not None:
        listing, to_verify, copying, to_clean = (
            [r for r in ids if r in only_runs] for ids in (listing, to_verify, copying, to_clean)
        )
        batches = [(r, b) for r, b in batches if r in only_runs]
    with dispatcher.together() if together else contextlib.nullcontext():
        for run_id in listing:
            dispatcher.list_namespace(
                run_id, job_id=job_id, namespace=display_namespace(runs[run_id].source_namespace), wait_for_lock=True
            )
        for run_id, batch_id in batches:
            dispatcher.copy_batch(
                batch_id, job_id=job_id, run_id=run_id, namespace=display_namespace(runs[run_id].source_namespace)
            )
        for run_id in to_verify:
            namespace = display_namespace(runs[run_id].source_namespace)
            dispatcher.verify_namespace(run_id, job_id=job_id, namespace=namespace)
        for run_id in to_clean:
            dispatcher.cleanup_namespace(
                run_id, job_id=job_id, namespace=display_namespace(runs[run_id].source_namespace)
            )
    # Runs whose batches are all done but were never marked copied (a worker died right after its last batch).
    for run_id in copying:
        if jobs_batches.maybe_mark_copied(db, run_id):
            dispatcher.verify_namespace(
                run_id, job_id=job_id, namespace=display_namespace(runs[run_id].source_namespace)
            )
    sent = {"listers": len(listing), "batches": len(batches), "verifications": len(to_verify), **checks}
    if to_clean:
        sent["cleanups"] = len(to_clean)
    jobs_and_runs.record_event(db, action, actor or default_actor(), job_id, **sent)
    jobs_and_runs.maybe_finish_job(db, job_id)  # runs refused here, or ended before a death that skipped this
    return sent


def _settle_checks(db: jobs_database.Database, job_id: int, checking: int, actor: str | None) -> dict[str, int]:
    """The job's ``checking`` runs: left to the process planning it while it holds ``planning`` ({"checking": n}),
    else refused ({"refused": n}), under that lock taken alone so that no process starts planning the job meanwhile."""
    with db.single_statement() as conn:
        if not conn.execute(_TRY_PLANNING, {"job_id": job_id}).scalar():
            return {"checking": checking}
        try:
            unchecked = [r.source_namespace for r in jobs_and_runs.runs_of(db, job_id) if r.state == RunState.CHECKING]
            refused = dict.fromkeys(unchecked, PLANNING_STOPPED)
            jobs_and_runs.finish_namespace_checks(db, job_id, (), refused, actor)
        finally:
            conn.execute(_END_TRY, {"job_id": job_id})
    return {"refused": len(unchecked)}


def _resume_collection(
    db: jobs_database.Database, dispatcher: Dispatcher, job_id: int, strategy: str, action: str, actor: str | None
) -> dict[str, int]:
    """A collection or import job, or a convert job before it converted: its next step while Pinecone's part is
    unfinished, verifications of copied runs after."""
    runs = jobs_and_runs.runs_of(db, job_id)
    waiting = [r for r in runs if r.state in LISTABLE_RUN_STATES]
    to_verify = [r for r in runs if r.state in AWAITING_VERDICT_RUN_STATES]
    owed = set(jobs_verdicts.auto_cleanups_owed(db, job_id))
    with dispatcher.together():
        if waiting:
            send_strategy_step(dispatcher, strategy, job_id)
        for run in to_verify:
            dispatcher.verify_namespace(run.id, job_id=job_id, namespace=display_namespace(run.source_namespace))
        for run in runs:
            if run.id in owed:
                dispatcher.cleanup_namespace(run.id, job_id=job_id, namespace=display_namespace(run.source_namespace))
    cleanups = {"cleanups": len(owed)} if owed else {}
    jobs_and_runs.record_event(db, action, actor or default_actor(), job_id, collection_step=bool(waiting), **cleanups)
    return {"listers": int(bool(waiting)), "batches": 0, "verifications": len(to_verify), **cleanups}


def claim_stalled_runs(db: jobs_database.Database, idle_s: float) -> dict[int, list[int]]:
    """Runs of running copy jobs that have work to come, or of copy jobs whose automatic cleanup is owed, that saw no
    change for ``idle_s`` (the visibility timeout: the time after which Redis redelivers a message whose worker died):
    their row unchanged and none of their batches created, started or finished since. {job id: run ids}. Each is
    touched (``updated_at``), so it is claimed again only after another ``idle_s`` without progress."""
    now = utcnow()
    since = now - timedelta(seconds=idle_s)
    batches_of_run = Batch.run_id == NamespaceRun.id
    recent_batch = sa.exists().where(
        batches_of_run,
        sa.or_(Batch.created_at >= since, Batch.started_at >= since, Batch.finished_at >= since),
    )
    active_batch = sa.exists().where(batches_of_run, Batch.state.in_(ACTIVE_BATCH_STATES))
    unfinished_batch = sa.exists().where(batches_of_run, Batch.state != BatchState.DONE)
    work_to_come = sa.or_(
        NamespaceRun.state.in_(LISTABLE_RUN_STATES) & ~NamespaceRun.listing_done,  # a lister
        NamespaceRun.state.in_(LISTABLE_RUN_STATES) & active_batch,  # copies
        (NamespaceRun.state == RunState.COPYING) & NamespaceRun.listing_done & ~unfinished_batch,  # marking it copied
        # verification, when the spec asks for it after the copy (or somebody asked for it)
        (NamespaceRun.state == RunState.COPIED) & sa.func.coalesce(Job.spec["auto_verify"].as_boolean(), True),
        NamespaceRun.state == RunState.VERIFYING,
    )
    # The cleanup `cleanup.mode: auto` sends after a verdict: a job whose runs all have verdicts finished meanwhile.
    cleanup_to_come = jobs_verdicts.auto_cleanup_owed()
    # Only rows it can lock now: a run whose row another session holds (a worker host cut off mid-transaction keeps
    # it until Postgres ends that session, a minute) is left to the next sweep instead of holding up every other
    # run. A row another sweep claimed meanwhile is re-checked on its new version (updated_at), so it is skipped.
    stalled = (
        sa.select(NamespaceRun.id)
        .join(Job, NamespaceRun.job_id == Job.id)
        .where(
            sa.or_(
                (Job.state == JobState.RUNNING) & sa.or_(work_to_come, cleanup_to_come),
                (Job.state == JobState.FINISHED) & cleanup_to_come,
            ),
            Job.kind == JobKind.MIGRATE,
            NamespaceRun.updated_at < since,
            ~recent_batch,
        )
        .with_for_update(of=NamespaceRun, skip_locked=True)
        .cte("stalled")
    )
    with db.single_statement() as conn:
        claimed = conn.execute(
            sa.update(NamespaceRun)
            .where(NamespaceRun.id == stalled.c.id)
            .values(updated_at=now)
            .returning(NamespaceRun.job_id, NamespaceRun.id)
        ).all()
    out: dict[int, list[int]] = {}
    for job_id, run_id in claimed:
        out.setdefault(int(job_id), []).append(int(run_id))
    return out


def resend_stalled(db: jobs_database.Database, dispatcher: Dispatcher, idle_s: float) -> dict[int, dict[str, int]]:
    """Send again, as ``resume`` would, the work of every run that stalled on a lost message (``claim_stalled_runs``).
    Returns {job id: what was sent}."""
    resent: dict[int, dict[str, int]] = {}
    for job_id, run_ids in claim_stalled_runs(db, idle_s).items():
        with contextlib.suppress(JobStopped):  # cancelled since it was claimed: nothing to send
            resent[job_id] = resume(
                db, dispatcher, job_id, only_runs=set(run_ids), together=False, action="stalled_runs_resent"
            )
    return resent


def resend_stalled_places(
    db: jobs_database.Database, dispatcher: Dispatcher, redis: Any, idle_s: float
) -> dict[int, list[int]]:
    """Send again the places of erasure jobs that stalled on a lost message (``claim_stalled_places``), after
    publishing the erasure ledger again (the applications' dual writes must hold the subject back before anything of
    theirs is deleted, and the command that published it may have failed to). Returns {job id: place ids}."""
    places = jobs_erasure.claim_stalled_places(db, idle_s)
    if not places:
        return {}
    published.publish_ledger(db, redis)
    resent: dict[int, list[int]] = {}
    for place in places:
        where = f"{place.store}/{display_namespace(place.namespace or '')}"
        dispatcher.erase_place(place.id, job_id=place.job_id, place=f"{place.kind} {where}")
        resent.setdefault(place.job_id, []).append(place.id)
    for job_id, place_ids in resent.items():
        jobs_and_runs.record_event(db, "stalled_places_resent", default_actor(), job_id, places=place_ids)
    return resent


def sweep_interval_s(visibility_timeout_s: float) -> float:
    """A fifth of the visibility timeout, between 1 s and a minute: a stalled run waits at most that much longer."""
    return max(1.0, min(60.0, visibility_timeout_s / 5))


def start_sweeping(settings: Settings) -> threading.Event:
    """Sweep for stalled runs in a daemon thread of this process (every worker's main process), with connections of
    its own; set the returned event to stop."""
    stop = threading.Event()
    threading.Thread(target=_sweep_until, args=(settings, stop), name="nsmigrate-stalled-runs", daemon=True).start()
    return stop


def _sweep_until(settings: Settings, stop: threading.Event) -> None:
    db = jobs_database.Database(settings.database_url, pool_size=1, create=False)
    dispatcher = Dispatcher(settings)
    redis = redis_lib.Redis.from_url(settings.redis_url)
    try:
        while not stop.wait(sweep_interval_s(settings.visibility_timeout_s)):
            try:
                resent = resend_stalled(db, dispatcher, settings.visibility_timeout_s)
                places = resend_stalled_places(db, dispatcher, redis, settings.visibility_timeout_s)
            except Exception as e:  # the job table or Redis is away: the next sweep tries again
                log.warning("could not look for stalled work: %s: %s", type(e).__name__, e)
                continue
            for job_id, counts in resent.items():
                log.warning("job %s: sent the work of stalled runs again (a message was lost): %s", job_id, counts)
            for job_id, place_ids in places.items():
                log.warning("erasure job %s: sent stalled places %s again (a message was lost)", job_id, place_ids)
    finally:
        dispatcher.close()
        redis.close()
        db.dispose()
