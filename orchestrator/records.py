"""The plain data a migration moves: a vector record and a page of ids. No I/O, shared by both halves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_NAMESPACE = ""  # Pinecone reports it as "__default__"; nsmigrate always uses ""


@dataclass(frozen=True)
class Record:
    """One vector: its id, its values and its metadata."""

    id: str
    values: list[float]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IdPage:
    """One page of ids from ``list_ids``; ``next_token`` is None on the last page."""

    ids: list[str]
    next_token: str | None


def display_namespace(namespace: str) -> str:
    """How a namespace is shown to people: the default one as ``__default__``."""
    return namespace or "__default__"


def parse_namespace_arg(value: str) -> str:
    """The inverse of display_namespace for CLI/spec input."""
    return "" if value == "__default__" else value
