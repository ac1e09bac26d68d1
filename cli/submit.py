"""Handing a spec to the fleet's planner (``workers.fleet.plan_server``) instead of planning in the command.

``nsmigrate run`` and ``nsmigrate plan`` call ``to_fleet`` first: when a planner of the same job table is up, it plans
(and starts) the job with everything already loaded, and the command only shows its answer, so the job exists a
fraction of a second after the command starts. ``to_fleet`` returns None whenever the command should plan by itself
(no planner, none took the spec in time, or the planner says the spec needs the command): planning here is always
correct, only slower. The protocol is in ``orchestrator.messaging.submissions``; sending is ``cli.handoff``'s, which
the entry point may have done before the command line loaded.

Imports nothing of redis-py (``orchestrator.messaging.resp`` sends its few commands), the planner, the job table's
models, Celery or the store SDKs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from nsmigrate.cli import handoff
from nsmigrate.cli.console import err_console
from nsmigrate.cli.handoff import POLL_S, Urls
from nsmigrate.cli.options import fail
from nsmigrate.orchestrator.messaging import resp, submissions
from nsmigrate.orchestrator.messaging.submissions import Kind
from nsmigrate.orchestrator.messaging.task_names import (
    SUBMISSIONS_KEY,
    submission_reply_key,
    submission_taken_key,
)


def to_fleet(
    urls: Urls, spec_path: Path, kind: Kind, *, new: bool = False, resume: bool = False
) -> dict[str, Any] | None:
    """The fleet planner's answer to ``spec_path`` (``submissions.OUTCOMES``), or None: plan in this command."""
    sent = handoff.take(urls, spec_path, kind, new=new, resume=resume)
    try:
        sent = sent or handoff.send(urls, spec_path, kind, new=new, resume=resume)
        if sent is None:
            return None
        answer = _await(sent.client, sent.submission.token, sent.encoded, sent.beat.planner)
    except KeyboardInterrupt:
        if sent is None or sent.withdraw():
            raise
        err_console.print(
            f"[yellow]the fleet's planner ({sent.beat.planner}) already has the spec: its job may start; see "
            "`nsmigrate jobs`[/]"
        )
        raise
    except resp.RedisFailed as e:
        planner = "" if sent is None else f" ({sent.beat.planner})"
        raise fail(
            f"lost Redis while the fleet's planner{planner} had the spec: {type(e).__name__} — its job may "
            "have started: see `nsmigrate jobs`",
            code=1,
        ) from e
    if answer is not None and answer.get("outcome") == submissions.LOCAL:
        err_console.print(f"[dim]planning in this command: {escape(str(answer.get('reason', '')))}[/]", highlight=False)
        return None
    return answer


def _await(client: resp.Connection, token: str, encoded: str, planner: str) -> dict[str, Any] | None:
    """The answer to submission ``token``; None when no planner took it in time (it is taken back first)."""
    reply, taken = submission_reply_key(token), submission_taken_key(token)
    take_deadline = time.monotonic() + submissions.TAKE_TIMEOUT_S
    unmarked_since: float | None = None
    while True:
        item = client.blpop([reply], timeout=POLL_S)
        if item is not None:
            answer: dict[str, Any] = json.loads(item[1])
            return answer
        if client.exists(taken):
            unmarked_since = None
            continue
        if time.monotonic() < take_deadline:
            continue
        if client.lrem(SUBMISSIONS_KEY, 1, encoded):
            return None  # still waiting in the list: nobody will answer it now
        # Taken, yet neither marked nor answered: the mark is on its way, or the planner died with the spec.
        unmarked_since = unmarked_since or time.monotonic()
        if time.monotonic() - unmarked_since > submissions.TAKEN_TTL_S:
            raise fail(
                f"the fleet's planner ({planner}) took the spec and stopped answering; its job may have started: "
                "see `nsmigrate jobs`, then run again (an unfinished job of the same name is resumed)",
                code=1,
            )
