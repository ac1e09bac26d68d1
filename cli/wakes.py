"""The wake-ups a waiting command (`run --wait`, `watch`, `retry --wait`, `verify`…) takes between two readings of
its job: a worker pushes a run's id onto the job's list (``task_names.job_wake_key``) when the run settles, copied
(its spec does not verify) or judged (``workers.steps.next_steps.run_settled``).

Why: between readings the command pauses for up to its poll interval (``cli.waits.Pace``), so on a job of a
fraction of a second it exited up to a poll after the last run settled. It now waits on that list (BLPOP) for as
long as it would have paused, and reads the job at once when as many runs settled as it still waited for, none
sooner: a long job is read as often as before. The job table stays the truth: a wake-up lost (Redis down, another
command waiting on the job took it) leaves the command to its next poll, as before.

Uses ``orchestrator.messaging.resp``, like the hand-off of a spec: no redis-py to import.
"""

from __future__ import annotations

import time

from nsmigrate.orchestrator.messaging import resp
from nsmigrate.orchestrator.messaging.task_names import job_wake_key

#: The shortest BLPOP this sends: Redis reads a timeout of 0 as "for ever".
_SHORTEST_S = 0.001


class Wakes:
    """The wake-ups of job ``job_id`` on the Redis of ``redis_url``. Every Redis failure turns it into a plain
    sleep for the rest of the command."""

    def __init__(self, redis_url: str, job_id: int, *, longest_pause_s: float = 60.0) -> None:
        self.key = job_wake_key(job_id)
        self.taken = 0  # wake-ups taken, all told (tests look at it)
        try:
            self._client: resp.Connection | None = resp.Connection(
                redis_url, connect_timeout_s=2, timeout_s=longest_pause_s + 10
            )
        except ValueError:  # a URL the RESP client does not read: poll only
            self._client = None

    def forget_earlier(self) -> None:
        """Drop the wake-ups of runs settled before now (an earlier command's, or before this one started): call it
        before the first reading, which sees those runs settled."""
        self._send("DEL", self.key)

    def pause(self, pause_s: float, enough: int) -> bool:
        """Wait ``pause_s`` seconds, or less: until ``enough`` runs woke it. True when woken."""
        deadline = time.monotonic() + pause_s
        woken = 0
        while self._client is not None:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return False
            item = self._send("BLPOP", self.key, f"{max(left_s, _SHORTEST_S):.3f}")
            if item is None:
                continue  # timed out (or lost Redis: then the client is gone and the loop sleeps below)
            self.taken += 1
            woken += 1
            if woken >= enough:
                return True
        time.sleep(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _send(self, *args: resp.Arg) -> object:
        if self._client is None:
            return None
        try:
            return self._client.command(*args)
        except resp.RedisFailed:
            self._client.close()
            self._client = None
            return None
