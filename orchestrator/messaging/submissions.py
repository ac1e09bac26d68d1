"""How a command hands a spec to the fleet's planner, and how the answer comes back: keys and messages in Redis.

Why: a command that plans by itself first imports the planner, the job table (SQLAlchemy), Celery and the store SDKs,
about a second of CPU on a small machine before the job exists. A running fleet has all of that loaded and its
connections open. So ``nsmigrate run`` and ``nsmigrate plan`` (``cli.submit``) send the spec's text to a planner
thread of a worker (``workers.fleet.plan_server``) and wait for its answer, and plan by themselves whenever no planner
is there, none takes the spec within ``TAKE_TIMEOUT_S``, or the planner says the spec needs the command (``LOCAL``).

The protocol, on the fleet's Redis:

1. Every planner refreshes ``PLANNER_KEY`` (expiring after ``HEARTBEAT_TTL_S``) with the fingerprint of its job
   table's URL. A command whose job table is another plans by itself.
2. The command pushes a ``Submission`` onto ``SUBMISSIONS_KEY``; one planner pops it (BLPOP hands each to one) and
   keeps ``submission_taken_key(token)`` alive while it works.
3. The planner pushes its answer (a dict, ``outcome`` one of ``OUTCOMES``) onto ``submission_reply_key(token)``.
4. A command whose submission no planner took in time takes it back (LREM): if that succeeds nobody will answer, and
   it plans by itself; if not, a planner has it and the answer will come.

Light on purpose (the command imports it before anything else): json, hashlib and the redaction; its messages are
NamedTuples, not dataclasses, whose module (with ``inspect``) took a third of the command's imports before its spec
was sent. The keys are built in ``orchestrator.messaging.task_names`` with every other Redis key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, NamedTuple

from nsmigrate.orchestrator.redaction import redact_url

#: A planner refreshes its heartbeat at least this often (its BLPOP's timeout) …
HEARTBEAT_EVERY_S = 2.0
#: … and the heartbeat expires after this long: a planner gone for that long is not waited for.
HEARTBEAT_TTL_S = 10
#: A submission no planner has taken after this long is taken back and planned by the command itself.
TAKE_TIMEOUT_S = 2.0
#: A planner refreshes the mark of the submission it works on this often; the mark expires after ``TAKEN_TTL_S``.
TAKEN_REFRESH_S = 2.0
TAKEN_TTL_S = 10
#: An answer nobody read (its command was interrupted) expires after this long.
REPLY_TTL_S = 300

#: planned: a dry run's plan; started: a job written and enqueued; resumed: an unfinished job of the spec's name
#: re-enqueued; local: the command must plan by itself (``reason`` says why); error: the spec or the plan was refused
#: (``message``; ``exit_code`` 2 for bad input, 1 for a failure).
OUTCOMES = ("planned", "started", "resumed", "local", "error")
LOCAL = "local"

Kind = Literal["plan", "run"]


def database_fingerprint(url: str) -> str:
    """Names a job table without showing its URL: the command and the planner compare these before the command hands
    its spec over. Hashed from the URL with its secrets removed: a hash of the password (in Redis, which anyone on
    the fleet's network may read) could be tried against guesses offline, and a keyed hash would need a key both
    sides share, which they do not have. Two URLs that differ only by a password name the same job table anyway."""
    return hashlib.sha256(redact_url(url).encode()).hexdigest()[:16]


class Heartbeat(NamedTuple):
    planner: str  # the worker's name, for messages
    database: str  # ``database_fingerprint`` of its job table

    def encode(self) -> str:
        return json.dumps(self._asdict())

    @classmethod
    def decode(cls, raw: bytes | str) -> Heartbeat | None:
        try:
            data = json.loads(raw)
            return cls(planner=str(data["planner"]), database=str(data["database"]))
        except (ValueError, KeyError, TypeError):
            return None


class Submission(NamedTuple):
    token: str
    kind: Kind
    #: The spec file's text and its absolute path (for messages; the planner never reads the file).
    spec_text: str
    spec_path: str
    #: run: start a new job even if an unfinished one of the spec's name exists.
    new: bool
    #: Who submitted it (user@host), for the audit log.
    actor: str
    database: str
    #: When the command sent it (epoch seconds), the first of planning's marks (``planning.prepared.PLANNING_MARKS``).
    submitted_at: float = 0.0
    #: run: go on with the unfinished job of the spec's name with the spec it was started with, even when this one
    #: differs (without it, a different spec is refused).
    resume: bool = False

    def encode(self) -> str:
        return json.dumps(self._asdict())

    @classmethod
    def decode(cls, raw: bytes | str) -> Submission:
        data: dict[str, Any] = json.loads(raw)
        kind = data["kind"]
        if kind not in ("plan", "run"):
            raise ValueError(f"unknown submission kind {kind!r}")
        return cls(
            token=str(data["token"]),
            kind=kind,
            spec_text=str(data["spec_text"]),
            spec_path=str(data["spec_path"]),
            new=bool(data["new"]),
            actor=str(data["actor"]),
            database=str(data["database"]),
            submitted_at=float(data.get("submitted_at", 0.0)),
            resume=bool(data.get("resume", False)),
        )
