"""How a verification report speaks of a record's metadata: numbers, booleans and nsmigrate's own identifiers as
they are; text, lists and objects only by their size. Reports live in the job table, in Flower's task results and in
logs, which an erasure does not rewrite: none may hold a person's words. Pure."""

from __future__ import annotations

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
        return f"a text of {len(value)} characters"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    return f"a {type(value).__name__}"
