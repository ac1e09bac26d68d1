"""The fleet's planner: an RPC server, a thread of a worker that plans and starts the jobs commands hand it.

A command that plans by itself pays about a second of imports and new connections first
(``orchestrator.messaging.submissions`` says why and describes the protocol). This thread has them loaded and open: it
takes a submitted spec, validates it, and plans it (``launch.prepare``) or, for ``run``, starts or resumes its job
(``launch.start_or_resume``), the same function and the same checks as a command planning by itself, with reads under
the spec's rate budget as a command's would; then answers.

A spec it cannot plan as well as the command is answered ``local``, and the command plans it itself:
- one that needs the command's side: a Parquet backup first (``backup.enabled``, written where the command runs) or a
  target index to create and wait for (``target.create``: minutes, with progress the user should see);
- one that reads a file (a creators CSV, a catalogue): the file is where the command runs, maybe not here;
- one whose store needs an environment variable this worker lacks (an API key the user exported in their shell).

Runs in the main process of every worker that consumes the ``list`` queue (``nsmigrate worker --planner`` to choose),
one submission at a time; several planners share the work, as BLPOP gives each submission to one of them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from pydantic import BaseModel

from nsmigrate.orchestrator import launch
from nsmigrate.orchestrator.connections.database_urls import KeptEngines
from nsmigrate.orchestrator.errors import NsmigrateError
from nsmigrate.orchestrator.jobs import crossing_jobs
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.messaging import submissions
from nsmigrate.orchestrator.messaging.dispatch import Dispatcher
from nsmigrate.orchestrator.messaging.submissions import Heartbeat, Submission
from nsmigrate.orchestrator.messaging.task_names import (
    PLANNER_KEY,
    SUBMISSIONS_KEY,
    submission_reply_key,
    submission_taken_key,
)
from nsmigrate.orchestrator.models import Job, ensure_schema
from nsmigrate.orchestrator.planning.summary import summarize
from nsmigrate.orchestrator.planning.target_indexes import command_creates_target
from nsmigrate.orchestrator.redaction import redact_url
from nsmigrate.orchestrator.settings import Settings
from nsmigrate.orchestrator.spec.jobspec import JobSpec, spec_from_text
from nsmigrate.workers.stores import open_retrying_store

log = logging.getLogger(__name__)


def start_planning(settings: Settings, name: str) -> threading.Event:
    """Serve submissions in a daemon thread of this process, with connections of its own; set the event to stop."""
    stop = threading.Event()
    server = PlanServer(settings, name)
    threading.Thread(target=server.serve, args=(stop,), name="nsmigrate-planner", daemon=True).start()
    return stop


def needs_the_command(spec: JobSpec) -> str | None:
    """Why ``spec`` must be planned by the command itself, or None when the fleet can plan it: among them every spec
    for which the command has something to do between the plan and the job (``cli.run.before_the_job``), which
    this server, passing no ``before_write`` to ``launch.start_or_resume``, would skip."""
    if spec.backup.enabled:
        return "the spec asks for a backup first (backup.enabled), written where the command runs"
    if command_creates_target(spec):
        return "the spec creates its target index (target.create); the command waits for it and shows its progress"
    files = sorted(_files_named(spec))
    if files:
        return f"the spec reads {', '.join(files)} from a file, which is where the command runs"
    return None


def _files_named(model: BaseModel, path: str = "") -> Iterator[str]:
    """The field paths of the spec's parts that read a local file (``source: file``)."""
    if getattr(model, "source", None) == "file" and getattr(model, "path", None):
        yield path or "spec"
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _files_named(value, f"{path}.{name}" if path else name)


class PlanServer:
    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.database = submissions.database_fingerprint(settings.database_url)
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=submissions.HEARTBEAT_EVERY_S + 10)
        # The job table and broker connections are its own, kept open. Stores are opened anew for each plan and
        # closed after it, as a command's are (what they learn of an index, e.g. its host, must not outlive a
        # recreated index); with the SDK loaded that costs ~3 ms of CPU. A pgvector store's engine is kept: a new one
        # would connect again on every plan.
        self.db = jobs_database.Database(settings.database_url, pool_size=2, create=False)
        self.engines = KeptEngines()
        self.dispatcher = Dispatcher(settings)

    def serve(self, stop: threading.Event) -> None:
        heartbeat = Heartbeat(planner=self.name, database=self.database).encode()
        while not stop.is_set():
            try:
                self.redis.set(PLANNER_KEY, heartbeat, ex=submissions.HEARTBEAT_TTL_S)
                item = self.redis.blpop([SUBMISSIONS_KEY], timeout=submissions.HEARTBEAT_EVERY_S)
            except redis.RedisError as e:  # Redis away: commands plan by themselves meanwhile
                log.warning("planner: Redis: %s: %s", type(e).__name__, e)
                stop.wait(submissions.HEARTBEAT_EVERY_S)
                continue
            if item is not None:
                try:
                    self.handle(item[1])
                except Exception:  # e.g. Redis lost while answering: the command gives up and says so; serve on
                    log.exception("planner: a submission could not be answered")
            self.engines.prune()

    def handle(self, raw: bytes | str) -> None:
        try:
            submission = Submission.decode(raw)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("planner: dropped a malformed submission: %s", e)
            return
        # The answer is sent before the mark goes: a waiting command sees one or the other at every moment.
        with self._taken(submission.token):
            answer = self.answered(submission)
            key = submission_reply_key(submission.token)
            with self.redis.pipeline() as pipe:
                pipe.rpush(key, json.dumps(answer))
                pipe.expire(key, submissions.REPLY_TTL_S)
                pipe.execute()

    @contextmanager
    def _taken(self, token: str) -> Iterator[None]:
        """Marks the submission as being worked on, refreshed while it is, so its command keeps waiting."""
        key = submission_taken_key(token)
        done = threading.Event()

        def refresh() -> None:
            while True:
                try:
                    self.redis.set(key, self.name, ex=submissions.TAKEN_TTL_S)
                except redis.RedisError as e:
                    log.warning("planner: could not mark submission %s as taken: %s", token, e)
                if done.wait(submissions.TAKEN_REFRESH_S):
                    return

        marker = threading.Thread(target=refresh, name="nsmigrate-planner-taken", daemon=True)
        marker.start()
        try:
            yield
        finally:
            done.set()
            marker.join()
            with suppress(redis.RedisError):  # it expires
                self.redis.delete(key)

    def answered(self, submission: Submission) -> dict[str, Any]:
        """``answer``; when the job table lost its tables under the running fleet (its database made again, or
        restored empty), they are made again, the submission is answered on them, and the answer says so once."""
        try:
            return self.answer(submission)
        except _TablesGone:
            pass
        ensure_schema(self.db.engine)
        notice = (
            f"the job table at {redact_url(self.settings.database_url)} had lost its tables (its database was made "
            "again, or restored empty, while the fleet ran): they were made again, and nothing the fleet read of "
            "the jobs before is used"
        )
        log.warning("planner: %s", notice)
        try:
            answer = self.answer(submission)
        except _TablesGone:
            return {"outcome": "error", "message": f"{notice}, but they are gone again; run it again", "exit_code": 1}
        if "plan" in answer:
            answer["plan"]["warnings"] = [*answer["plan"].get("warnings", []), notice]
        elif answer["outcome"] == "error":
            answer["message"] = f"{notice}; {answer['message']}"
        return answer

    def _tables_gone(self) -> bool:
        """Whether the job table's database has no ``jobs`` table (a failure to ask says no: that error is shown)."""
        try:
            return not sa.inspect(self.db.engine).has_table(Job.__tablename__)
        except Exception:
            return False

    def answer(self, submission: Submission) -> dict[str, Any]:
        """Plan (and for ``run`` start) the submitted spec; what to send back (``submissions.OUTCOMES``)."""
        if submission.database != self.database:
            return _local("the fleet's job table is another database than the command's")
        try:
            spec = spec_from_text(submission.spec_text, origin=submission.spec_path)
            marks = {"spec_parsed": time.time()}
            if submission.submitted_at:  # a command older than the marks sends none
                marks["spec_submitted"] = submission.submitted_at
            reason = needs_the_command(spec)
            if reason is not None:
                return _local(reason)
            spec_dir = Path(submission.spec_path).parent
            with _clients_of_one_plan(self.settings, self.engines) as (open_store, open_control):
                if submission.kind == "plan":
                    prepared = launch.prepare(spec, open_store, spec_dir, open_control, settings=self.settings)
                    prepared.plan.warnings.extend(
                        crossing_jobs.crossings_of(self.db, prepared.spec, prepared.plan, resumed_by_run=True)
                    )
                    return {"outcome": "planned", "plan": summarize(prepared).as_json()}
                started = launch.start_or_resume(
                    self.db,
                    self.dispatcher,
                    spec,
                    open_store,
                    spec_dir,
                    open_control,
                    new=submission.new,
                    resume=submission.resume,
                    actor=submission.actor,
                    marks=marks,
                    settings=self.settings,
                )
        except NsmigrateError as e:
            missing = e.ids.get("env_var")
            if missing is not None:
                return _local(f"this worker's environment has no {missing}")
            return {"outcome": "error", "message": str(e), "exit_code": e.exit_code}
        except Exception as e:  # a bug or an outage: say where to look, keep serving
            if self._tables_gone():
                raise _TablesGone from e
            log.exception("planner: planning %s failed", submission.spec_path)
            return {
                "outcome": "error",
                "message": f"the fleet's planner {self.name} failed: {type(e).__name__}: {e} (see its log)",
                "exit_code": 1,
            }
        if started.resumed is not None:
            return {
                "outcome": "resumed",
                "job_id": started.job_id,
                "counts": started.resumed,
                "auto_verify": spec.auto_verify,
            }
        assert started.prepared is not None  # not resumed: planned
        log.info("planner: job %s (%s) started for %s", started.job_id, spec.name, submission.actor)
        return {
            "outcome": "started",
            "job_id": started.job_id,
            "plan": summarize(started.prepared).as_json(),
            "auto_verify": spec.auto_verify,
            "refused": started.refused,
        }


class _TablesGone(Exception):
    """Planning failed on a job table without its tables (``FleetPlanner.answered``)."""


@contextmanager
def _clients_of_one_plan(
    settings: Settings, engines: KeptEngines
) -> Iterator[tuple[Callable[[Any], Any], Callable[[Any], Any]]]:
    """Openers of stores and control planes for one plan, as a command opens them, reading only the keys this
    worker's ``settings.allowed_key_vars`` allow; what they opened is closed after it (a planner lives as long as its
    worker: it must not gather connection pools), but for pgvector engines, left in ``engines`` (``KeptEngines``
    disposes of those unused for a while)."""
    from nsmigrate.workers.stores.pinecone.control import PineconeControl

    opened: list[Any] = []

    def open_store(spec: Any) -> Any:
        opened.append(open_retrying_store(spec, settings, engines))
        return opened[-1]

    def open_control(spec: Any) -> Any:
        opened.append(PineconeControl(spec, allowed_key_vars=settings.allowed_key_vars))
        return opened[-1]

    try:
        yield open_store, open_control
    finally:
        for client in opened:
            with suppress(Exception):  # closing is best effort: the plan's answer is what matters
                client.close()


def _local(reason: str) -> dict[str, Any]:
    return {"outcome": submissions.LOCAL, "reason": reason}
