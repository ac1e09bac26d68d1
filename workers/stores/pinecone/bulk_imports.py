"""Bulk imports of one Pinecone index (API 2026-07, ``/bulk/imports`` on the index host): start one, find one
already started, describe it, cancel it. Through the store's own data-plane client (``workers.stores.pinecone.rest``),
as the namespace aliases are; errors as every Pinecone call's (``access.pinecone_errors``: 429/5xx retryable, other
refusals ``StoreError``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.workers.stores.pinecone.rest import DataPlane, path_segment
from nsmigrate.workers.stores.pinecone.wire import Pagination


class _Started(msgspec.Struct):
    id: str


class _Model(msgspec.Struct, rename="camel"):
    id: str
    uri: str = ""
    status: str = ""
    percent_complete: float | None = None
    records_imported: int | None = None
    error: str | None = None
    created_at: str = ""


class _Listed(msgspec.Struct):
    data: list[_Model] = []
    pagination: Pagination | None = None


_STARTED = msgspec.json.Decoder(_Started)
_MODEL = msgspec.json.Decoder(_Model)
_LISTED = msgspec.json.Decoder(_Listed)


@dataclass(frozen=True)
class ImportStatus:
    """One import as Pinecone describes it: ``status`` ``Pending``, ``InProgress``, ``Completed``, ``Failed`` or
    ``Cancelled``; ``percent`` and ``records`` how far it went; ``error`` why it failed."""

    id: str
    uri: str
    status: str
    percent: float
    records: int
    error: str | None


class BulkImports:
    """The bulk import operations on one index (``plane``: gives its data-plane client; ``label``: for messages)."""

    def __init__(self, plane: Callable[[], DataPlane], label: str) -> None:
        self._plane = plane
        self.label = label

    def start(self, uri: str, *, integration_id: str | None, error_mode: str) -> str:
        """Start importing the directory ``uri``; returns the import's id."""
        body: dict[str, object] = {"uri": uri, "errorMode": {"onError": error_mode}}
        if integration_id is not None:
            body["integrationId"] = integration_id
        with self._errors("start_import"):
            return _STARTED.decode(self._plane().post("/bulk/imports", body)).id

    def describe(self, import_id: str) -> ImportStatus:
        with self._errors("describe_import"):
            model = _MODEL.decode(self._plane().get(f"/bulk/imports/{path_segment(import_id)}"))
        return _status(model)

    def live(self, uri: str) -> ImportStatus | None:
        """The newest import of ``uri`` that neither failed nor was cancelled (GET /bulk/imports, every page), or
        None: one started by a request whose answer never came back."""
        found: list[_Model] = []
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100, **({"paginationToken": token} if token else {})}
            with self._errors("list_imports"):
                page = _LISTED.decode(self._plane().get("/bulk/imports", params))
            found += [m for m in page.data if m.uri == uri and m.status not in ("Failed", "Cancelled")]
            token = page.pagination.next if page.pagination else None
            if not token:
                break
        return _status(max(found, key=lambda m: m.created_at)) if found else None

    def cancel(self, import_id: str) -> None:
        with self._errors("cancel_import"):
            self._plane().delete(f"/bulk/imports/{path_segment(import_id)}")

    @contextlib.contextmanager
    def _errors(self, op: str) -> Iterator[None]:
        from nsmigrate.workers.stores.pinecone.access import pinecone_errors  # that module builds on this one

        with pinecone_errors(op, store=self.label):
            try:
                yield
            except msgspec.MsgspecError as e:
                raise StoreError(
                    f"Pinecone {op} answered something that is not its response: {e}", store=self.label
                ) from e


def _status(model: _Model) -> ImportStatus:
    return ImportStatus(
        model.id, model.uri, model.status, model.percent_complete or 0.0, model.records_imported or 0, model.error
    )
