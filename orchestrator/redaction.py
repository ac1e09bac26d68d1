"""The one way nsmigrate shows a connection URL (job table, Redis, pgvector, catalogues): without its secrets.

Every message, log line and status that names a database, broker or store goes through ``redact_url`` (a Pinecone
store's label too), the text of an error a driver raised about that URL through ``scrub``, and every nsmigrate error
through ``redact_text``. SQLAlchemy's ``render_as_string(hide_password=True)`` is not
enough: it keeps query-string passwords (``?password=``, Redis's too) and, for a raw ``@`` in a password, shows the
part after it as the host. A URL whose password its clients would cut short at a raw character, and then show a
piece of as a host or a port, is refused (``password_problem``) by the settings and the spec's database URLs.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

HIDDEN = "***"

#: Parameter names whose values are secrets: password, passwd, pwd, sslpassword, token, access_token, secret, api_key…
_SECRET_NAME = r"[\w.-]*(?:pass|pwd|token|secret|key|auth|credential)[\w.-]*"
_QUERY_SECRET = re.compile(rf"([?&;]{_SECRET_NAME}=)([^&#;]*)", re.IGNORECASE)
#: A URL inside free text, up to the next blank or quote.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
#: A secret query parameter inside free text: its value ends at a blank, a quote or a bracket too.
_QUERY_SECRET_IN_TEXT = re.compile(rf"([?&;]{_SECRET_NAME}=)([^&#;\s'\"\])]*)", re.IGNORECASE)
#: libpq's keyword form: ``host=db password=s3cret`` or ``password='a b'``.
_KEYWORD_SECRET = re.compile(rf"(\b{_SECRET_NAME}\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_SECRET_NAME_ONLY = re.compile(_SECRET_NAME, re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``: the password of its user info, secret query parameters, and
    secret keywords of a libpq ``key=value`` string. The user name, host, port and database stay readable.

    The user info ends at the URL's *last* ``@``: a password may hold a raw ``@`` (or ``/``, ``?``, ``#``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _KEYWORD_SECRET.sub(_hide_value, url)
    userinfo, at, address = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{HIDDEN}@{address}" if colon else f"{userinfo}@{address}"
    return f"{scheme}://{_QUERY_SECRET.sub(_hide_value, rest)}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (``redact_url``), and every secret query parameter outside one (a store
    label is a host without its scheme: ``h:5081/?api_key=…``): what an error shows, whatever put a URL in it."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _QUERY_SECRET_IN_TEXT.sub(_hide_value, text)


def secret_parameters(url: str) -> list[str]:
    """The names of the query parameters of ``url`` that hold secrets (``password``, ``api_key``, ``token``…)."""
    query = url.partition("?")[2].partition("#")[0]
    return [m.group(1).strip("?&;=") for m in _QUERY_SECRET.finditer(f"?{query}")] if query else []


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error about ``url``) with ``url`` shown redacted and each of its secrets hidden,
    including what a parser that split the user info at a password's first ``@`` would show as the host."""
    text = text.replace(url, redact_url(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    # A piece is hidden only as a whole word: a short one must not mangle the words around it ("p" in "postgresql").
    for piece in sorted(_password_pieces(url), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])", HIDDEN, text)
    return text


def is_secret_name(name: str) -> bool:
    """Whether a field or parameter called ``name`` holds a secret by its name (password, token, api_key…)."""
    return _SECRET_NAME_ONLY.fullmatch(name) is not None


def _hide_value(match: re.Match[str]) -> str:
    return match.group(1) + HIDDEN


#: Where a parser may cut a password that holds them raw: libpq and SQLAlchemy at its first ``@``; urllib, so
#: redis-py, also at ``/``, ``?`` and ``#``.
_POSTGRES_CUTS = re.compile(r"@")
_URLLIB_CUTS = re.compile(r"[@/?#]")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
#: SQLAlchemy's reading of a URL up to its host and port (``sqlalchemy.engine.url._parse_url``).
_SQLALCHEMY_ADDRESS = re.compile(r"[\w+]+://[^:/]*(?::[^@]*)?@([^/?]*)")
#: How to write a password with such characters, for every message that refuses one.
PERCENT_ENCODE = "percent-encode its special characters in the URL (@ as %40, / as %2F, ? as %3F, # as %23)"


def password_problem(url: str) -> str | None:
    """Why the clients of ``url`` would cut its password short, and then show a piece of it as a host or a port in
    their errors; None when they read it as meant. Names the character, never the URL nor a piece of it.

    SQLAlchemy and libpq end a password at its first ``@``. urllib (redis-py, kombu) ends the host part at the first
    ``/``, ``?`` or ``#``: the rest of the password, its ``@`` and the host land in the path, query or fragment,
    where no Redis URL has an ``@`` (but in ``?password=``); a raw ``@`` it reads right (up to the last one)."""
    if url.partition("://")[0].lower() in _REDIS_SCHEMES:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        in_query = any("@" in name + value for name, value in query if name not in ("username", "password"))
        if "@" in parts.path or "@" in parts.fragment or in_query:
            return f"its password holds a raw '/', '?' or '#', which ends the host part there — {PERCENT_ENCODE}"
        return None
    address = _SQLALCHEMY_ADDRESS.match(url)
    if address is not None and "@" in address.group(1):
        return f"its password holds a raw '@', which ends the password there — {PERCENT_ENCODE}"
    return None


def _password_pieces(url: str) -> list[str]:
    """The pieces of the user info's password of ``url`` (up to its last ``@``) between the characters a parser may
    cut it at, each of which such a parser shows as a user, host, port or path: none when it holds none of them."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    password = userinfo.partition(":")[2] if sep and at else ""
    cuts = _URLLIB_CUTS if scheme.lower() in _REDIS_SCHEMES else _POSTGRES_CUTS
    pieces = cuts.split(password)
    return [p for p in pieces if p] if len(pieces) > 1 else []


def _secrets(url: str) -> list[str]:
    _, sep, rest = url.partition("://")
    if not sep:
        return [m.group(2).strip("'") for m in _KEYWORD_SECRET.finditer(url) if m.group(2).strip("'")]
    found = [m.group(2) for m in _QUERY_SECRET.finditer(rest)]
    userinfo, at, address = rest.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    if password:
        found.append(password)
        host = re.split(r"[:/?#]", address, maxsplit=1)[0]
        # "u:p@ss@host" read up to its first "@" has the host "ss@host": hide that tail together with the host.
        tails = password.split("@")[1:]
        found += ["@".join([*tails[i:], host]) for i in range(len(tails))]
    return [s for s in found if s]
