"""Every worker looks for work whose message was lost, and sends it again (``launch.resend_stalled``).

Redis gives back the message of a killed worker's task after the visibility timeout, but not one it handed to a
worker's blocked BRPOP just before the kill (kombu records a message as unacknowledged only once it has read it),
nor the queues a Redis restart lost. The job table still says what is left to do, so every ``sweep_interval_s`` each
worker claims the runs that saw no change for the visibility timeout and sends their work again. Claiming is one
UPDATE, so however many workers sweep, a stalled run is sent once.
"""

from __future__ import annotations

import logging
import threading

from orchestrator import jobs, launch
from orchestrator.messaging.dispatch import Dispatcher
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def sweep_interval_s(visibility_timeout_s: float) -> float:
    """A fifth of the visibility timeout, between 1 s and a minute: a stalled run waits at most that much longer."""
    return max(1.0, min(60.0, visibility_timeout_s / 5))


def start_sweeping(settings: Settings) -> threading.Event:
    """Sweep in a daemon thread of this process, with connections of its own; set the returned event to stop."""
    stop = threading.Event()
    threading.Thread(target=_sweep_until, args=(settings, stop), name="nsmigrate-stalled-runs", daemon=True).start()
    return stop


def _sweep_until(settings: Settings, stop: threading.Event) -> None:
    db = jobs.Database(settings.database_url, pool_size=1, create=False)
    dispatcher = Dispatcher(settings, producers=1)
    try:
        while not stop.wait(sweep_interval_s(settings.visibility_timeout_s)):
            try:
                resent = launch.resend_stalled(db, dispatcher, settings.visibility_timeout_s)
            except Exception as e:  # the job table or Redis is away: the next sweep tries again
                log.warning("could not look for stalled runs: %s: %s", type(e).__name__, e)
                continue
            for job_id, counts in resent.items():
                log.warning("job %s: sent the work of stalled runs again (a message was lost): %s", job_id, counts)
    finally:
        dispatcher.close()
        db.dispose()
