"""``nsmigrate cutover check``'s replay of the application's filtered queries (``orchestrator.cutover.filters``): each
sent to the source namespace it names and to the namespace the job copied it to, with the same filter, and every
query whose two answers hold different ids named. Only reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nsmigrate.orchestrator.cutover.filters import SampleQuery, difference
from nsmigrate.orchestrator.models import NamespaceRun
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.workers.stores.base import Store


def replay(
    source: Store, target: Store, runs: Sequence[NamespaceRun], queries: Sequence[SampleQuery], top_k: int
) -> dict[str, Any]:
    """Replay ``queries`` on both stores; returns ``{"replayed", "differing": [sentences], "not_replayed":
    [sentences], "problems": [sentences]}`` (``top_k``: where a query gives none, ``cutover.top_k``)."""
    report: dict[str, Any] = {"replayed": 0, "differing": [], "not_replayed": [], "problems": []}
    if not queries:
        return report
    unable = [s.name for s in (source, target) if not hasattr(s, "query_filtered")]
    if unable:
        problem = (
            f"{len(queries)} filtered queries of the application were not replayed: {', '.join(unable)} cannot answer "
            "a metadata filter (only a Pinecone index of vectors can), so the application's filtered reads would fail "
            "there"
        )
        return {**report, "not_replayed": [q.label for q in queries], "problems": [problem]}
    targets = {r.source_namespace: r.target_namespace for r in runs}
    for query in queries:
        if query.namespace not in targets:
            report["not_replayed"].append(f"{query.shown()}: not a namespace of the job")
            continue
        target_ns = targets[query.namespace]
        if target_ns is None:
            report["not_replayed"].append(f"{query.shown()}: routed per record, its answers are in many namespaces")
            continue
        answers = []
        for store, namespace in ((source, query.namespace), (target, target_ns)):
            try:
                answers.append(_ask(store, namespace, query, top_k))
            except Exception as e:  # one failed query is named, the rest replayed
                where = f"{store.name} ({display_namespace(namespace)!r})"
                report["problems"].append(f"{query.shown()}: {where} failed: {e}")
                break
        else:
            report["replayed"] += 1
            differs = difference(query, answers[0], answers[1])
            if differs is not None:
                report["differing"].append(differs)
    report["problems"] += report["differing"]
    return report


def _ask(store: Store, namespace: str, query: SampleQuery, top_k: int) -> list[str]:
    ask: Any = getattr(store, "query_filtered")  # noqa: B009  (asked for above: not every store has it)
    vector = list(query.vector) if query.vector is not None else None
    return list(ask(namespace, query.top_k or top_k, query.filter, vector=vector, id=query.id))
