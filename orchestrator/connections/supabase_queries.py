"""One PostgREST query through the real ``supabase`` client, run once: the client's own retries are off.

The client retries a GET itself on 503/520 and on network errors (three times, sleeping 1, 2 and 4 s) before its
caller hears of it; under our retry policy (``orchestrator.retry_policy``) those hidden sleeps multiply the attempts
and make a wrong URL take 7 s to report. Here a query is sent once and what it met is said plainly:

- the rows the server answered;
- ``RetryableError``: the server was not reached (refused, reset, timed out: ``status`` None), or it answered that
  it is unavailable for now — an HTTP 5xx from a proxy, PostgREST's ``PGRST000``–``PGRST003`` (its database
  unreachable, its pool exhausted), a Postgres error of class 08 (connection), 53 (resources) or 57 (shutdown);
- anything else the server refused: the caller's own permanent error, made by ``refused``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nsmigrate.orchestrator.errors import RetryableError

if TYPE_CHECKING:
    from postgrest.exceptions import APIError

#: PostgREST's own codes for "the database cannot be reached now" (its documented PGRST0xx connection group).
_POSTGREST_UNAVAILABLE = frozenset({"PGRST000", "PGRST001", "PGRST002", "PGRST003"})
#: SQLSTATE classes that say the database is unavailable, not that the query is wrong.
_SQLSTATE_UNAVAILABLE = ("08", "53", "57")


def rows(query: Any, url_env: str, refused: Callable[[APIError], Exception]) -> list[dict[str, Any]]:
    """Send ``query`` (a supabase request builder, not yet executed) once and return its rows.

    Raises:
        RetryableError: the server was not reached or is unavailable for now (the message names ``url_env``).
        Exception: ``refused(error)`` for any other refusal; a ``SpecError`` for an answer that is not rows.
    """
    import httpx
    from postgrest.exceptions import APIError

    from nsmigrate.orchestrator.errors import SpecError

    try:
        response = query.retry(False).execute()
    except APIError as e:
        status = unavailable_status(e)
        if status is None:
            raise refused(e) from e
        raise RetryableError(
            f"Supabase at the URL in {url_env} is unavailable for now: {e.message} (code {e.code})", status=status
        ) from e
    except httpx.HTTPError as e:
        raise RetryableError(f"cannot reach Supabase at the URL in {url_env}: {type(e).__name__}: {e}") from e
    if not isinstance(response.data, list):
        raise SpecError(f"Supabase answered with {type(response.data).__name__}, not a list of rows")
    return response.data


def unavailable_status(error: APIError) -> int | None:
    """The HTTP status to record when ``error`` says the service is unavailable for now, else None."""
    code = str(error.code or "")
    if code in _POSTGREST_UNAVAILABLE or code.startswith(_SQLSTATE_UNAVAILABLE):
        return 503
    if code.isdigit() and len(code) == 3 and int(code) >= 500:  # a proxy's error page: the client read its status
        return int(code)
    return None
