"""nsmigrate's own alias calls (``workers.stores.pinecone.aliases``) against the local data plane: each operation,
its safe repeat, and the error each refusal becomes, naming what to do."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.errors import RetryableError, StoreError
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pinecone.aliases import NamespaceAliases
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox

KEY_ENV = "NSMIGRATE_TEST_ALIASES_PINECONE_KEY"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("al-sl", 4), IndexSpec("al-pod", 4, kind="pod")]


@pytest.fixture
def store(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> PineconeStore:
    monkeypatch.setenv(KEY_ENV, "pcsk-aliases-test")
    sandbox.load("al-sl", "v1", [("a", [1, 0, 0, 0], None)])
    sandbox.load("al-sl", "v2", [("b", [0, 1, 0, 0], None)])
    sandbox.load("al-sl", "", [("c", [0, 0, 1, 0], None)])
    return PineconeStore(PineconeStoreSpec(index="al-sl", control_host=sandbox.control_host, api_key_env=KEY_ENV))


@pytest.fixture
def aliases(store: PineconeStore) -> NamespaceAliases:
    return store.namespace_aliases()


def test_create_describe_list_repoint_delete(store: PineconeStore, aliases: NamespaceAliases) -> None:
    created = aliases.create("live", "v1")
    assert (created.name, created.target_namespace) == ("live", "v1")
    assert aliases.create("live", "v1") == created  # a repeat is done, not an error
    assert aliases.create("home", "").target_namespace == ""  # the default namespace is "" as everywhere
    assert aliases.describe("live") == created and aliases.describe("nobody") is None
    assert [a.name for a in aliases.list()] == ["home", "live"]
    assert aliases.targeting("v1") == ["live"] and aliases.targeting("") == ["home"]

    moved = aliases.repoint("live", "v2")
    assert moved.target_namespace == "v2" and moved.updated_at > created.updated_at
    assert store.aliases() == {"home": "", "live": "v2"}
    assert GuardedStore(store).aliases() == {"home": "", "live": "v2"}

    assert aliases.delete("live") is True
    assert aliases.delete("live") is False  # gone already
    assert store.aliases() == {"home": ""}


def test_reads_by_an_alias_and_a_write_refused(store: PineconeStore, aliases: NamespaceAliases) -> None:
    aliases.create("live", "v1")
    assert [r.id for r in store.fetch("live", ["a", "b"])] == ["a"]
    assert store.query("live", [1, 0, 0, 0], 5) == ["a"]
    with pytest.raises(StoreError, match="namespace alias"):
        store.delete("live", ["a"])
    assert store.count("v1") == 1


def test_a_namespace_an_alias_serves_is_not_emptied_when_its_drop_is_refused(
    sandbox: PineconeSandbox, store: PineconeStore, aliases: NamespaceAliases
) -> None:
    """Pinecone refuses to delete a namespace an alias targets (400 ``NAMESPACE_TARGETED_BY_ALIAS``). A 400 is also
    how a pod may refuse ``/namespaces``, which the store answers by emptying the namespace (``deleteAll``): the
    alias's refusal must reach the caller instead, the namespace and what the alias reads left as they were."""
    aliases.create("live", "v1")
    with pytest.raises(StoreError, match="is the target of namespace alias"):
        store.delete_namespace("v1")
    assert sandbox.count("al-sl", "v1") == 1 and [r.id for r in store.fetch("live", ["a"])] == ["a"]
    with pytest.raises(StoreError):
        store.delete_namespace("live")  # a drop naming the alias itself
    assert sandbox.count("al-sl", "v1") == 1


def test_a_listing_of_many_pages(aliases: NamespaceAliases) -> None:
    names = [f"alias-{i:03d}" for i in range(120)]
    for name in names:
        aliases.create(name, "v1")
    assert [a.name for a in aliases.list()] == names
    assert [a.name for a in aliases.list(prefix="alias-11")] == names[110:120]


@pytest.mark.parametrize(
    ("call", "message", "hint"),
    [
        (lambda a: a.create("v2", "v1"), "'v2' is a namespace of index", "no namespace has"),
        (lambda a: a.create("new", "nope"), "namespace 'nope' does not exist in index", "copy into"),
        (lambda a: a.create("new", "live"), "'live' is itself a namespace alias", "resolves to"),
        (
            lambda a: a.create("live", "v2"),
            "alias 'live' already exists in index .* resolves to 'v1', not 'v2'",
            "repoint",
        ),
        (lambda a: a.repoint("nobody", "v1"), "has no namespace alias 'nobody'", "create the alias first"),
        (lambda a: a.repoint("live", "nope"), "namespace 'nope' does not exist", "copy into"),
        (lambda a: a.create("a b", "v1"), "cannot name a namespace alias", "another alias name"),
        (lambda a: a.describe("__default__"), "cannot name a namespace alias", "another alias name"),
    ],
)
def test_refusals_say_what_to_do(aliases: NamespaceAliases, call, message: str, hint: str) -> None:  # type: ignore[no-untyped-def]
    aliases.create("live", "v1")
    with pytest.raises(StoreError, match=message) as refused:
        call(aliases)
    assert hint in refused.value.hint
    assert aliases.describe("live").target_namespace == "v1"  # type: ignore[union-attr]


def test_a_target_not_active_yet_is_retryable(sandbox: PineconeSandbox, aliases: NamespaceAliases) -> None:
    sandbox.service("al-sl").aliases.inactive.add("v2")
    with pytest.raises(RetryableError, match="not active yet"):
        aliases.create("live", "v2")


def test_an_index_that_serves_no_aliases_has_none(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "pcsk-aliases-test")
    by_host = PineconeStore(PineconeStoreSpec(host=sandbox.host("al-pod"), api_key_env=KEY_ENV))
    assert by_host.aliases() == {}  # asked: the pod answers 404
    assert sandbox.stats("al-pod")["requests"] == {"list_namespace_aliases": 1}
    by_name = PineconeStore(PineconeStoreSpec(index="al-pod", control_host=sandbox.control_host, api_key_env=KEY_ENV))
    by_name.connect()
    assert by_name.aliases() == {}  # known to be a pod: not asked
    assert sandbox.stats("al-pod")["requests"] == {"list_namespace_aliases": 1}
    with pytest.raises(StoreError, match="serves no aliases"):
        by_name.namespace_aliases().create("live", "v1")
