"""Deletions that would take away what a namespace alias serves are refused, naming the aliases and what to do.

A Pinecone namespace alias (API 2026-07) is the name an application reads through; its target namespace serves
those reads. Cleanup deletes a source namespace, rollback the copies in the target namespaces: either would leave
every read through such an alias empty (Pinecone refuses only the last step, the namespace's own deletion, with
``NAMESPACE_TARGETED_BY_ALIAS``, once every id is gone). So both ask the store first and refuse, changing nothing,
until each alias is repointed or deleted. A store whose aliases cannot be read is refused too: nothing is deleted on
a guess.

An erasure is the exception: it deletes a data subject's namespace because it was asked to, so it removes the aliases
that resolve to it (``release_aliases``; reads through them would find nothing either way) and names them in its
check.
"""

from __future__ import annotations

from collections.abc import Iterable

from nsmigrate.orchestrator.errors import NsmigrateError
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.store import Store
from nsmigrate.workers.stores.pinecone.aliases import NamespaceAliases
from nsmigrate.workers.stores.pinecone.store import PineconeStore


def serving_aliases(store: Store, namespaces: Iterable[str]) -> dict[str, list[str]]:
    """Each of ``namespaces`` that an alias of ``store`` resolves to → those aliases' names, sorted."""
    wanted = set(namespaces)
    found: dict[str, list[str]] = {}
    for alias, target in sorted(store.aliases().items()):
        if target in wanted:
            found.setdefault(target, []).append(alias)
    return found


def alias_refusal(store: Store, namespaces: Iterable[str], deletion: str, then: str, instead: str) -> str | None:
    """Why ``deletion`` (e.g. "cleanup") must not delete ``namespaces`` of ``store``: aliases serve them, or their
    aliases could not be read; None when no alias resolves to any of them. ``then``: what to run afterwards;
    ``instead``: which namespace readers should move to."""
    try:
        found = serving_aliases(store, namespaces)
    except NsmigrateError as e:
        return (
            f"could not read the namespace aliases of {store.name} ({e}): {deletion} deletes nothing while it cannot "
            f"tell whether an alias serves what it would delete; {then} once they can be read"
        )
    if not found:
        return None
    served = "; ".join(
        f"namespace {display_namespace(ns)!r} is what alias(es) {', '.join(repr(a) for a in aliases)} serve"
        for ns, aliases in sorted(found.items())
    )
    return (
        f"{deletion} would delete what namespace aliases of {store.name} serve to the applications that read through "
        f"them: {served}. Repoint each alias to the namespace its readers should read now ({instead}) — PATCH "
        '/namespace-aliases/{alias} with {"target_namespace": …} — or delete it once nothing reads through it, '
        f"then {then}"
    )


def alias_calls(store: Store) -> NamespaceAliases | None:
    """The alias calls of ``store`` (a guarded store's inner one), or None for a store that is not a Pinecone index."""
    inner = getattr(store, "inner", store)
    return inner.namespace_aliases() if isinstance(inner, PineconeStore) else None


def release_aliases(store: Store, namespace: str) -> list[str]:
    """Delete the aliases of ``store`` that resolve to ``namespace`` (an erasure's, before it deletes the namespace);
    their names, sorted. Safe to repeat: an alias gone already is not named again."""
    calls = alias_calls(store)
    if calls is None or not store.aliases():
        return []
    names = calls.targeting(namespace)
    return [name for name in names if calls.delete(name)]
