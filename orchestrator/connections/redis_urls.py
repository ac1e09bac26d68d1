"""A Redis URL as all of its clients read it: Celery's kombu (the broker), redis-py (locks, rate budgets, the
planner) and ``orchestrator.messaging.resp`` (a command's hand-off to the planner).

redis-py also takes the user name and password from the query string (``redis://host:6379/0?password=…``); kombu
does not (it fails with a TypeError as a worker or ``run`` starts) and neither does ``resp``. So the settings move
them into the URL's user info, which all three read, before any client sees the URL. Pure: urllib only, so the
hand-off can use it without loading the settings.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

#: The query parameters redis-py reads as credentials.
CREDENTIALS = ("username", "password")


def credentials_in_userinfo(url: str) -> str:
    """``url`` with a ``username`` or ``password`` of its query string moved into its user info (the other query
    parameters kept); any other URL unchanged.

    Raises:
        ValueError: a credential given twice with two values (in the user info and the query, or twice in the
            query): clients would disagree on which one counts. The message names the parameter, never a value.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name in CREDENTIALS for name, _ in query):
        return url
    given = {
        "username": None if parts.username is None else unquote(parts.username),
        "password": None if parts.password is None else unquote(parts.password),
    }
    for name, value in query:
        if name in CREDENTIALS:
            if given[name] not in (None, value):
                raise ValueError(
                    f"the Redis URL gives its {name} twice, with two values (in the user info and as ?{name}=, or "
                    f"?{name}= twice); give it once, e.g. redis://[user]:password@host:6379/0"
                )
            given[name] = value
    user, password = (quote(given[n] or "", safe="") for n in CREDENTIALS)
    userinfo = f"{user}:{password}" if given["password"] is not None else user
    address = parts.netloc.rpartition("@")[2]
    rest = urlencode([(name, value) for name, value in query if name not in CREDENTIALS])
    return urlunsplit((parts.scheme, f"{userinfo}@{address}", parts.path, rest, parts.fragment))
