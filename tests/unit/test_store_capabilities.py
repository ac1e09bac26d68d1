"""One store protocol: every adapter is a ``Store`` and declares what it can do (``Capabilities``), and the wrapper
every call goes through answers from that declaration instead of probing the adapter for methods. Nothing here
connects: adapters connect on first use, and the one fake is pure."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.limits import LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.records.vectors import IdPage, Record
from nsmigrate.orchestrator.spec.stores import (
    Enumeration,
    IdCatalogue,
    PgvectorStoreSpec,
    PineconeStoreSpec,
    TextRecords,
)
from nsmigrate.orchestrator.store import Capabilities, Store, StoreDefaults
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore
from nsmigrate.workers.stores.pgvector.store import PgvectorStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore

HOST = "http://127.0.0.1:9"  # never contacted


def pinecone(tmp_path: Path, mode: str, *, records: bool = False) -> PineconeStore:
    catalogue = None
    if mode == "catalogue":
        (tmp_path / "ids.csv").write_text("namespace,id\n")
        catalogue = IdCatalogue(source="file", path=str(tmp_path / "ids.csv"))
    spec = PineconeStoreSpec(
        host=HOST,
        enumerate=Enumeration(mode=mode, catalogue=catalogue),  # type: ignore[arg-type]
        records=TextRecords(text_from="text", field="chunk_text") if records else None,
    )
    return PineconeStore(spec)


@pytest.mark.parametrize(
    ("mode", "records", "declared"),
    [
        ("list", False, Capabilities(lists=None, enumeration="list", lists_by_prefix=True, reads_by_query=True)),
        ("catalogue", False, Capabilities(lists=None, enumeration="catalogue")),
        ("sweep", False, Capabilities(lists=None, enumeration="sweep")),
        ("list", True, Capabilities(lists=None, enumeration="list", lists_by_prefix=True, text_search=True)),
    ],
)
def test_a_pinecone_store_declares_what_its_spec_makes_it(
    tmp_path: Path, mode: str, records: bool, declared: Capabilities
) -> None:
    store = pinecone(tmp_path, mode, records=records)

    assert isinstance(store, Store)
    # Pinecone limits the records deleted a second whatever the spec: every Pinecone store counts them.
    assert store.capabilities == dataclasses.replace(declared, deletes_counted_by_record=True, reads_lag=True)


def test_pgvector_stores_declare_their_pages_and_tables() -> None:
    generic = PgvectorStore(PgvectorStoreSpec(), database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    documented = DocumentedPgvectorStore(PgvectorStoreSpec(schema="documented"), database_url=None)

    assert isinstance(generic, Store) and isinstance(documented, Store)
    assert generic.capabilities == Capabilities(list_page_ids=1000, row_versions=True)
    assert documented.capabilities == Capabilities(list_page_ids=1000, table_columns=True, row_versions=True)
    # what a store answers for what it did not declare, without a request
    assert generic.can_list() and not generic.counts_by_index
    assert generic.table_columns("ns") is None
    with pytest.raises(StoreError, match="cannot search by text"):
        generic.search_text("ns", "apples", 3)
    with pytest.raises(StoreError, match="cannot list ids by prefix"):
        generic.list_ids_by_prefix("ns", "a")


class Recording(StoreDefaults):
    """A store that records which of its methods were called (only those a test reaches)."""

    name = "recording"

    def __init__(self, capabilities: Capabilities, *, lists: bool = True) -> None:
        self.capabilities = capabilities
        self.calls: list[str] = []
        self._lists = lists

    def can_list(self) -> bool:
        self.calls.append("can_list")
        return self._lists

    def table_columns(self, namespace: str) -> None:
        self.calls.append("table_columns")
        return None

    def search_text(self, namespace: str, text: str, top_k: int) -> list[str]:
        self.calls.append("search_text")
        return ["d1"]

    def list_ids(self, namespace: str, *, limit: int = LIST_MAX_PAGE_IDS, token: str | None = None) -> IdPage:
        self.calls.append("list_ids")
        return IdPage(ids=[], next_token=None)

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[Record]:
        raise AssertionError("not reached")

    def row_versions(self, namespace: str, ids: Sequence[str]) -> dict[str, str] | None:
        self.calls.append("row_versions")
        return {i: "(0,1):7" for i in ids}


def test_the_guarded_store_asks_the_server_only_what_the_store_did_not_declare() -> None:
    declared = Recording(Capabilities(lists=False))
    unknown = Recording(Capabilities(lists=None), lists=True)

    assert GuardedStore(declared).can_list() is False
    assert GuardedStore(unknown).can_list() is True
    assert declared.calls == [] and unknown.calls == ["can_list"]


def test_the_guarded_store_reaches_a_capability_only_when_declared() -> None:
    plain = Recording(Capabilities())
    tables = Recording(Capabilities(table_columns=True, text_search=True))

    assert GuardedStore(plain).table_columns("ns") is None
    with pytest.raises(TypeError, match="cannot search by text"):
        GuardedStore(plain).search_text("ns", "apples", 1)
    assert plain.calls == []

    assert GuardedStore(tables).table_columns("ns") is None
    assert GuardedStore(tables).search_text("ns", "apples", 1) == ["d1"]
    assert tables.calls == ["table_columns", "search_text"]
    assert GuardedStore(tables).capabilities is tables.capabilities


def test_no_caller_probes_a_store_for_a_capability() -> None:
    root = Path(__file__).resolve().parents[2]
    names = "|".join(
        (
            "can_list",
            "enumeration",
            "table_columns",
            "query_scored",
            "search_text",
            "sweeper",
            "lists_by_prefix",
            "list_page_ids",
            "counts_by_index",
            "connect",
        )
    )
    probe = re.compile(rf"getattr\([^)]*\"({names})\"")
    probes = [
        f"{path.relative_to(root)}:{number}"
        for package in ("cli", "orchestrator", "workers")
        for path in (root / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert not probes, f"read store.capabilities (orchestrator.store) instead: {probes}"


def test_row_versions_are_asked_only_of_a_store_that_keeps_them() -> None:
    """A store without them (Pinecone) is neither asked nor charged a read: each proof chunk asks."""
    plain = Recording(Capabilities())
    versioned = Recording(Capabilities(row_versions=True))

    assert GuardedStore(plain).row_versions("ns", ["a"]) is None and plain.calls == []
    assert GuardedStore(versioned).row_versions("ns", ["a"]) == {"a": "(0,1):7"}
    assert versioned.calls == ["row_versions"]
