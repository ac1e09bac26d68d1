"""The application's filtered queries, for ``cutover check`` to replay on both sides, pure: read from a file the
operator gives (``--queries FILE``) or from what the applications' ``DualWriteIndex`` recorded, and judged.

A file holds one query per line, as JSON (blank lines and lines starting with ``#`` are skipped)::

    {"namespace": "0e2d…", "vector": [0.1, …], "top_k": 10, "filter": {"genre": {"$eq": "drama"}}}
    {"namespace": "0e2d…", "id": "doc-7", "filter": {"year": {"$gte": 2020}}}

``namespace`` is the application's (the job's source namespace; ``__default__`` for the default one), ``vector`` or
``id`` says what to search near, ``filter`` is Pinecone's filter language, ``top_k`` defaults to ``cutover.top_k``.
A query differs when the two sides' filtered answers hold different ids: the target would answer the application's
filter otherwise than the source does (a metadata field the copy changed, a filter the new index reads otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.records.namespaces import display_namespace, parse_namespace_arg

#: Ids of each side a differing query's report names, at most.
SHOWN_IDS = 10


@dataclass(frozen=True)
class SampleQuery:
    """One filtered query of the application: ``label`` says where it came from (``FILE:LINE``, ``recorded #N``)."""

    label: str
    namespace: str
    filter: dict[str, Any]
    top_k: int | None = None
    vector: tuple[float, ...] | None = None
    id: str | None = None

    def shown(self) -> str:
        near = f"id {self.id!r}" if self.id is not None else f"a vector of {len(self.vector or ())} values"
        return (
            f"query {self.label} (namespace {display_namespace(self.namespace)!r}, filter "
            f"{json.dumps(self.filter, sort_keys=True)}, near {near})"
        )


def query_of(data: Any, label: str) -> SampleQuery:
    """One query from its JSON object.

    Raises:
        SpecError: naming the query and the field, and what it must hold.
    """

    def bad(problem: str) -> SpecError:
        return SpecError(
            f"query {label}: {problem}",
            hint='each line is a JSON object: {"namespace": …, "vector": […] or "id": …, "filter": {…}, "top_k": N}',
        )

    if not isinstance(data, Mapping):
        raise bad("is not a JSON object")
    unknown = sorted(set(data) - {"namespace", "vector", "id", "filter", "top_k"})
    if unknown:
        raise bad(f"has unknown field(s) {', '.join(unknown)}")
    namespace = data.get("namespace")
    if not isinstance(namespace, str):
        raise bad("namespace must be a string (the job's source namespace; __default__ for the default one)")
    flt = data.get("filter")
    if not isinstance(flt, Mapping) or not flt:
        raise bad("filter must be a non-empty JSON object (Pinecone's filter language)")
    vector, id_ = data.get("vector"), data.get("id")
    if (vector is None) == (id_ is None):
        raise bad("give exactly one of vector and id")
    if vector is not None and (
        not isinstance(vector, list)
        or not vector
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vector)
    ):
        raise bad("vector must be a non-empty array of numbers")
    if id_ is not None and (not isinstance(id_, str) or not id_):
        raise bad("id must be a non-empty string")
    top_k = data.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or not 0 < top_k <= 1000):
        raise bad("top_k must be a whole number from 1 to 1000")
    return SampleQuery(
        label=label,
        namespace=parse_namespace_arg(namespace),
        filter=dict(flt),
        top_k=top_k,
        vector=tuple(float(v) for v in vector) if vector is not None else None,
        id=id_,
    )


def queries_of_file(text: str, name: str) -> list[SampleQuery]:
    """The queries of a file's ``text`` (``name``: for the labels).

    Raises:
        SpecError: naming the file's line and what is wrong with it.
    """
    queries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise SpecError(f"query {name}:{number} is not JSON: {e.msg}", hint="one JSON object per line") from e
        queries.append(query_of(data, f"{name}:{number}"))
    if not queries:
        raise SpecError(f"{name} holds no query", hint="one JSON object a line (`nsmigrate cutover check --help`)")
    return queries


def recorded(items: Iterable[Mapping[str, Any]]) -> list[SampleQuery]:
    """The queries the applications' ``DualWriteIndex`` recorded (newest first), those it could read."""
    out = []
    for number, item in enumerate(items, 1):
        try:
            out.append(query_of(item, f"recorded #{number}"))
        except SpecError:
            continue  # an application's query the replay cannot take (an id and a vector both, say): not replayed
    return out


def difference(query: SampleQuery, source_ids: Sequence[str], target_ids: Sequence[str]) -> str | None:
    """Why the two sides' filtered answers to ``query`` differ, or None when they hold the same ids."""
    if set(source_ids) == set(target_ids):
        return None
    only_source = [i for i in source_ids if i not in set(target_ids)]
    only_target = [i for i in target_ids if i not in set(source_ids)]
    return (
        f"{query.shown()}: the source answered {len(source_ids)} id(s), the target {len(target_ids)}; only the "
        f"source's: {only_source[:SHOWN_IDS]}, only the target's: {only_target[:SHOWN_IDS]}"
    )
