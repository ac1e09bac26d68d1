"""Sending a spec to the fleet's planner: the command's side of ``orchestrator.messaging.submissions``, light enough
to run before the command line's framework loads.

Why before: typer and rich take about a tenth of a second to import, and on a job of under a second that is a tenth
of the user's clock spent before the fleet hears of the job. So the ``nsmigrate`` entry point (``cli.entry``) calls
``send_early`` first: when the command line is ``run SPEC`` with only options that need nothing more than the spec's
file and the two URLs (``--wait``, ``--new``, ``--resume``, ``--json``, ``--database-url``, ``--redis-url``), and
a planner of the same job table is up, the spec is pushed at once; ``cli.submit.to_fleet`` then ``take``s it and
waits for the answer as it would have after pushing it itself. Any other command line, a planner that is not there,
or anything this module is unsure of, sends nothing: the command goes the usual way, which is always correct.

Imports only the standard library (not ``dataclasses`` nor ``uuid``: 17-22 ms before the spec was sent), the RESP
client, the submission protocol and the actor's name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

from nsmigrate.orchestrator.actor import default_actor
from nsmigrate.orchestrator.messaging import resp, submissions
from nsmigrate.orchestrator.messaging.submissions import Heartbeat, Kind, Submission
from nsmigrate.orchestrator.messaging.task_names import PLANNER_KEY, SUBMISSIONS_KEY

DATABASE_URL_ENV = "NSMIGRATE_DATABASE_URL"
REDIS_URL_ENV = "NSMIGRATE_REDIS_URL"
#: Not a setting: where a pgvector store's URL is read from unless its spec names another variable
#: (``PgvectorStoreSpec.database_url_env``). The settings ignore it, so set it leaves nothing of them to check.
PGVECTOR_URL_ENV = "NSMIGRATE_PGVECTOR_URL"
#: How long one wait for the answer blocks before the command looks at the submission's state again.
POLL_S = 1.0


class Urls(NamedTuple):
    """The job table's and Redis's URLs: all of the settings that handing a spec to the fleet reads."""

    database_url: str
    redis_url: str


def given_urls(database_url: str | None, redis_url: str | None) -> Urls | None:
    """Both URLs from the options or the environment when they are all of the settings there are: no other
    ``NSMIGRATE_`` variable (but a pgvector store's URL) and no ``.env`` file, so every other setting is its default
    and nothing is left to check. None: the settings must be loaded (``cli.options.fleet_urls``)."""
    database_url = database_url or os.environ.get(DATABASE_URL_ENV)
    redis_url = redis_url or os.environ.get(REDIS_URL_ENV)
    others = {k for k in os.environ if k.upper().startswith("NSMIGRATE_")} - {
        DATABASE_URL_ENV,
        REDIS_URL_ENV,
        PGVECTOR_URL_ENV,
    }
    if database_url is None or redis_url is None or others or Path(".env").exists():
        return None
    return Urls(database_url, redis_url)


class Sent(NamedTuple):
    """A submission on the planners' list: what the command waits on, and what identifies it."""

    client: resp.Connection
    beat: Heartbeat
    submission: Submission
    encoded: str
    urls: Urls

    def is_for(self, urls: Urls, kind: Kind, spec_path: Path, new: bool, resume: bool) -> bool:
        s = self.submission
        return (self.urls, s.kind, s.spec_path, s.new, s.resume) == (
            urls,
            kind,
            str(spec_path.resolve()),
            new,
            resume,
        )

    def withdraw(self) -> bool:
        """Take the submission back; False when a planner has it already (its job may start)."""
        try:
            return bool(self.client.lrem(SUBMISSIONS_KEY, 1, self.encoded))
        except resp.RedisFailed:
            return False


def send(urls: Urls, spec_path: Path, kind: Kind, *, new: bool, resume: bool) -> Sent | None:
    """Push ``spec_path`` to a planner of ``urls``'s job table; None when there is none to push it to (no Redis, no
    planner, another job table, no such file): the command plans by itself.

    Raises:
        resp.RedisFailed: Redis was lost while pushing.
    """
    database = submissions.database_fingerprint(urls.database_url)
    try:
        client = resp.Connection(urls.redis_url, connect_timeout_s=2, timeout_s=POLL_S + 10)
        raw = client.get(PLANNER_KEY)
    except (resp.RedisFailed, ValueError):
        return None  # planning here reports an unreachable Redis clearly
    beat = Heartbeat.decode(raw) if raw else None
    if beat is None or beat.database != database or not spec_path.is_file():
        return None
    submission = Submission(
        token=os.urandom(16).hex(),  # as random as uuid4's 122 bits, without importing uuid (platform, …)
        kind=kind,
        spec_text=spec_path.read_text(),
        spec_path=str(spec_path.resolve()),
        new=new,
        actor=default_actor(),
        database=database,
        submitted_at=time.time(),
        resume=resume,
    )
    encoded = submission.encode()
    client.rpush(SUBMISSIONS_KEY, encoded)
    return Sent(client, beat, submission, encoded, urls)


# ---- before the command line loads --------------------------------------------------------------------------------

_FLAGS = {"--wait": "wait", "--new": "new", "--resume": "resume", "--json": "json"}
_URL_OPTIONS = ("--database-url", "--redis-url")
_early: Sent | None = None


def read_run(argv: list[str]) -> tuple[Path, dict[str, bool], dict[str, str]] | None:
    """``(spec, flags, urls)`` of a ``run SPEC`` command line that typer would accept as it is, else None."""
    if not argv or argv[0] != "run":
        return None
    spec: Path | None = None
    flags: dict[str, bool] = {}
    urls: dict[str, str] = {}
    rest = iter(argv[1:])
    for arg in rest:
        name, eq, value = arg.partition("=")
        if arg in _FLAGS:
            flags[_FLAGS[arg]] = True
        elif name in _URL_OPTIONS:
            value = value if eq else next(rest, "")
            if not value or value.startswith("-"):
                return None
            urls[name] = value
        elif arg.startswith("-") or spec is not None:
            return None  # help, another option, `--`, a second argument: typer decides
        else:
            spec = Path(arg)
    if spec is None or (flags.get("new") and flags.get("resume")):
        return None
    return spec, flags, urls


def send_early(argv: list[str]) -> None:
    """Push the spec of a plain ``run SPEC`` command line now (see the module's docstring). Never raises: whatever
    goes wrong here, the usual path does again and reports it."""
    global _early
    read = read_run(argv)
    if read is None:
        return
    spec, flags, options = read
    urls = given_urls(options.get("--database-url"), options.get("--redis-url"))
    if urls is None:
        return
    try:
        _early = send(urls, spec, "run", new=flags.get("new", False), resume=flags.get("resume", False))
    except (resp.RedisFailed, OSError, ValueError):
        _early = None


def take(urls: Urls, spec_path: Path, kind: Kind, *, new: bool, resume: bool) -> Sent | None:
    """The submission ``send_early`` pushed for this very command, if it did (it is then the caller's)."""
    global _early
    early, _early = _early, None
    if early is not None and early.is_for(urls, kind, spec_path, new, resume):
        return early
    if early is not None:
        early.withdraw()  # not what the command turned out to be: nobody must plan it
    return None


def withdraw_untaken() -> bool:
    """On the way out of a command that never took its early submission: take it back. False when a planner has it
    already (its job may start)."""
    global _early
    early, _early = _early, None
    return early is None or early.withdraw()
