"""The one way nsmigrate shows a connection URL (job table, Redis, pgvector, catalogues): without its secrets.

Every message, log line and status that names a database, broker or store goes through ``redact_url`` (a Pinecone
store's label too), the text of an error a driver raised about that URL through ``scrub``, and every nsmigrate error
through ``redact_text``. SQLAlchemy's ``render_as_string(hide_password=True)`` is not
enough: it keeps query-string passwords (``?password=``, Redis's too) and, for a raw ``@`` in a password, shows the
part after it as the host.
"""

from __future__ import annotations

import re

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
    return text


def is_secret_name(name: str) -> bool:
    """Whether a field or parameter called ``name`` holds a secret by its name (password, token, api_key…)."""
    return _SECRET_NAME_ONLY.fullmatch(name) is not None


def _hide_value(match: re.Match[str]) -> str:
    return match.group(1) + HIDDEN


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
