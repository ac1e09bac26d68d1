"""How a verification report speaks of a record's metadata: numbers, booleans and nsmigrate's own identifiers as
they are; text, lists and objects only by their size. Reports live in the job table, in Flower's task results and in
logs, which an erasure does not rewrite: none may hold a person's words. Pure."""

from __future__ import annotations

import ast
import re
from typing import Any

#: Metadata keys whose text a report may show: the identifiers nsmigrate's own enrichment writes, never content.
SHOWN_TEXT_KEYS = frozenset({"creator_id", "twin_id", "migrated_from"})


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(key: str, value: Any) -> str:
    """Metadata ``value`` of ``key`` as a report says it (see the module docstring)."""
    if value is None or isinstance(value, bool | int | float) or (key in SHOWN_TEXT_KEYS and isinstance(value, str)):
        return _short(value)
    if isinstance(value, str):
        return f"a text of {_counted(len(value), 'character')}"
    if isinstance(value, list):
        return f"a list of {_counted(len(value), 'item')}"
    if isinstance(value, dict):
        return f"an object of {_counted(len(value), 'key')}"
    return f"a {type(value).__name__}"


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ------------------------------------------------------------------------- what older reports quoted, described


#: What reports said of a differing metadata value before ``shown``: ``metadata key 'K': expected <repr>, got <repr>``
#: (or ``not expected, got <repr>``), each repr cut to 60 characters, the last of a cut one "…".
_OLD_REASON = re.compile(
    r"metadata key (?P<key>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"): (?P<lead>expected |not expected, got )"
)
_OLD_CUT = 60
#: A value that is not a repr (a number, None, a bool, a size): it runs to the end of its reason.
_PLAIN = re.compile(r"[^)\n;]*")
_LONG = {"'": "a long text", '"': "a long text", "[": "a long list", "{": "an object of many keys"}


def _old_value(text: str, start: int, key: str, follows: str) -> tuple[int, str]:
    """The end of the value an older report wrote at ``start`` (followed by ``follows``, or the text's end when
    empty) and how a report says it now."""
    if start >= len(text) or text[start] not in _LONG:  # a number, None, a bool, or already described
        end = text.find(follows, start) if follows else -1
        if end < 0:
            plain = _PLAIN.match(text, start)
            end = plain.end() if plain else start
        return end, text[start:end]
    for end in range(start + 2, min(len(text), start + _OLD_CUT) + 1):
        candidate = text[start:end]
        if end - start == _OLD_CUT and candidate.endswith("…"):
            return end, _LONG[text[start]] if key not in SHOWN_TEXT_KEYS else candidate
        if follows and not text.startswith(follows, end):
            continue
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, TypeError):  # not a literal (yet): a longer candidate may be
            continue
        return end, shown(key, value)
    return start, ""  # not a value an older report wrote: left as it is


def described(text: str) -> str:
    """``text`` with every metadata value an older report quoted (a person's words, in the job table since) said as
    reports say it now (``shown``): the job table's upgrade rewrites each stored report with it. Text written by
    this version comes back unchanged."""
    out: list[str] = []
    at = 0
    for match in _OLD_REASON.finditer(text):
        if match.start() < at:
            continue
        try:
            key = ast.literal_eval(match.group("key"))
        except (ValueError, SyntaxError):
            continue
        if match.group("lead") == "expected ":
            end, first = _old_value(text, match.end(), key, ", got ")
            if not first:
                continue
            end, second = _old_value(text, end + len(", got "), key, "")
            said = f"expected {first}, got {second}"
        else:
            end, second = _old_value(text, match.end(), key, "")
            said = f"not expected, got {second}"
        if not second:
            continue
        out.append(text[at : match.end("key")] + ": " + said)
        at = end
    return "".join(out) + text[at:] if out else text
