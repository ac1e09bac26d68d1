"""What differs between the spec a job was started with and a spec given again for it (`nsmigrate run` of an
unfinished job), as field paths with the old and the new value. Pure.

A job keeps the spec it was started with; a file edited since (another target, ``cleanup.mode`` no longer ``auto``)
would otherwise be ignored without a word. Values are shown through the one redaction: a spec holds variable names,
not secrets, but a URL or a free-form value (``enrich.constants``) may still carry one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from nsmigrate.orchestrator.redaction import HIDDEN, is_secret_name, redact_url

#: A value longer than this is cut when shown.
VALUE_CHARS = 80
#: Where a field is missing on one side.
ABSENT = "(absent)"
#: Fields that name a variable, a metadata key or a column: their values are names, shown as they are.
_NAMES = ("_env", "_field", "_column")


def spec_differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Each field whose value differs, as ``path: old → new`` (``cleanup.mode: "auto" → "never"``), in field order;
    empty when the two specs are equal. Both are specs as the job table stores them (``jobspec.spec_to_json``)."""
    return [f"{path}: {old} → {new}" for path, old, new in _walk(stored, given, "")]


def _walk(old: Any, new: Any, path: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            yield from _walk(old.get(key, _MISSING), new.get(key, _MISSING), f"{path}.{key}" if path else str(key))
        return
    if old != new:
        hidden = _secret_field(path.rsplit(".", 1)[-1])
        yield path, _shown(old, hidden), _shown(new, hidden)


def _secret_field(name: str) -> bool:
    """Whether a string under the field or key ``name`` is hidden: its name says secret, and it names no variable,
    metadata key or column (``api_key_env`` holds a variable's name, ``key_field`` a metadata key's)."""
    return is_secret_name(name) and not name.endswith(_NAMES)


class _Missing:
    pass


_MISSING = _Missing()


def _shown(value: Any, hidden: bool) -> str:
    if value is _MISSING:
        return ABSENT
    if hidden and isinstance(value, str):
        return HIDDEN
    text = json.dumps(_redacted(value), ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _redacted(value: Any) -> Any:
    """``value`` with every string passed through the redaction, and the values of secret-named keys hidden."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Mapping):
        return {k: HIDDEN if isinstance(v, str) and _secret_field(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
