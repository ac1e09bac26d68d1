"""One error hierarchy. Every error carries the identifiers it is about and a sentence saying what to do next.

``RetryableError`` means "the same call may succeed later" (rate limits, 5xx, a lost connection): tenacity retries it
inside a task. ``PermanentError`` means retrying cannot help (bad spec, dimension mismatch, a refused request): the
batch is marked failed with the message and ``nsmigrate retry`` re-runs it once the cause is fixed.
"""

from __future__ import annotations

from nsmigrate.orchestrator.redaction import redact_text


class NsmigrateError(Exception):
    """Root of every error nsmigrate raises on purpose."""

    #: A command's exit code when this error stops it (README: 2 bad input, 1 refused or failed, 3 a newer job table).
    exit_code = 2

    def __init__(self, message: str, *, hint: str = "", **ids: object) -> None:
        # Whatever put a URL or a store's address in it, an error never shows a secret (``redaction``).
        self.message = redact_text(message)
        self.hint = redact_text(hint)
        self.ids = {k: redact_text(v) if isinstance(v, str) else v for k, v in ids.items() if v is not None}
        super().__init__(str(self))

    def __str__(self) -> str:
        where = " ".join(f"{k}={v}" for k, v in self.ids.items())
        text = f"{self.message} [{where}]" if where else self.message
        return f"{text} — {self.hint}" if self.hint else text


class PermanentError(NsmigrateError):
    """Retrying the same call cannot help."""


class RetryableError(NsmigrateError):
    """The same call may succeed later (429, 5xx, connection reset)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = None,
        hint: str = "",
        **ids: object,
    ) -> None:
        self.retry_after_s = retry_after_s
        self.status = status
        super().__init__(message, hint=hint, **ids)


class SpecError(PermanentError):
    """The job spec is invalid; the message names the field path."""


class PlanError(PermanentError):
    """The spec is valid but the plan it leads to is unsafe (collisions, bad target names, dimension mismatch)."""


class SpecChanged(PermanentError):
    """A spec given for an unfinished job differs from the one the job was started with; the message lists how."""


class StoreError(PermanentError):
    """A store refused a request for a reason retrying cannot fix."""


class StateError(PermanentError):
    """A state transition was asked for that the current state does not allow (e.g. cleanup before verification).
    The input was fine and the command refused it: exit code 1."""

    exit_code = 1


class WrongJobKind(StateError):
    """A command was given a job of a kind it does not act on (a rollback of an erase job): bad input, exit code 2."""

    exit_code = 2


class JobStopped(StateError):
    """The job was cancelled or rolled back: nothing more is done for it (retry, resume, sync, cleanup)."""


class NotFound(PermanentError):
    """A job, namespace run or batch does not exist."""


class BackupError(PermanentError):
    """An export or import was refused or failed: not an nsmigrate export, a dimension mismatch, a non-empty target,
    a damaged file. The message names the file."""


def failure_text(error: NsmigrateError) -> str:
    """How a step's failure is recorded and shown: a request whose retries ran out leads with what an operator needs
    (``upsert to HOST/INDEX answered 503 after 8 attempts: …``), anything else with its type."""
    attempts = error.ids.get("attempts")
    if isinstance(error, RetryableError) and attempts is not None:
        answered = f"answered {error.status}" if error.status is not None else "got no answer"
        where = f"{error.ids.get('op', 'a request')} to {error.ids.get('store', 'the store')}"
        return f"{where} {answered} after {attempts} attempts: {error.message}"
    return f"{type(error).__name__}: {error}"


class StopAsked(NsmigrateError):
    """An operator asked a step to stop (Ctrl-C): it stopped between two chunks, with what it did so far complete."""


class Superseded(NsmigrateError):
    """A copy's delivery may no longer write (``workers.transfer.write_fence``): its batch was started again or ended
    by another delivery, or (``expired``) it outlived the time an erasure waits for a running batch. It stops,
    neither finishing nor failing the batch: the other delivery's, or, expired, one it sends to start it afresh."""

    def __init__(self, message: str, *, expired: bool = False, hint: str = "", **ids: object) -> None:
        self.expired = expired
        super().__init__(message, hint=hint, **ids)


class TaskFailed(NsmigrateError):
    """A task's work failed for good and the failure is recorded in the job table (`nsmigrate status` shows it,
    `nsmigrate retry` re-runs it). Raised last, after what follows the task was sent, so that Celery marks the task
    FAILURE and Flower shows it with this text: neither tenacity (not a ``RetryableError``) nor the tasks' outage
    retry (not an infrastructure error) catches it, and under ``acks_late`` the message is acknowledged, not
    redelivered. The text reads ``what went wrong (job 1, namespace ns, batch 7)``."""

    def __str__(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in self.ids.items())
        return f"{self.message} ({where})" if where else self.message


class BatchFailed(TaskFailed):
    """A copy batch gave up (retries used up, a refusal, an unforeseen error)."""


class ListingFailed(TaskFailed):
    """A lister failed for good: its run is ``list_failed``."""


class GroupFailed(TaskFailed):
    """Some namespaces of a group task (small namespaces copied or verified together) failed; the text names them."""


class VerificationFailed(TaskFailed):
    """A namespace's verification did not pass (its report says why)."""


class CleanupFailed(TaskFailed):
    """A cleanup was refused or interrupted; nothing it should not delete was deleted."""


class CollectionFailed(TaskFailed):
    """A step of a ``strategy: collection`` job failed for good: its runs are ``list_failed`` with the reason."""


class ConversionFailed(TaskFailed):
    """A step of a ``strategy: convert`` job failed for good: its runs are ``list_failed`` with the reason."""


class ImportFailed(TaskFailed):
    """A step of a ``strategy: import`` job failed for good: its runs are ``list_failed`` with the reason."""


class ErasureFailed(TaskFailed):
    """An erasure place could not be erased or checked empty."""
