"""A data set shaped like the production seeds, generated deterministically from one integer.

The production index holds 805 vectors: 376 in the default namespace ``""`` (each naming its twin in metadata
``twin_id``) and 429 spread unevenly over 30 namespaces, one per twin, each named by the twin's UUID. The 30 twins
belong to about 8 creators whose ids include awkward ones (``sainath.no.1``, and the pair ``a.1`` / ``a.10`` that a
careless prefix match confuses). Ids (``doc-N#chunk-M``) are unique across the whole data set. Everything here is
made from ``seed`` with numpy, so the same seed gives the same ids, metadata and vectors on every machine::

    from nsmigrate_sandbox.seed import seed_dataset
    data = seed_dataset()                      # 805 x 3072, like production
    data.load_into(sandbox, "seeds-pod")
    big = seed_dataset(n_vectors=20_000, dimension=1536, n_twin_namespaces=50, default_count=8_000,
                       values_as="numpy")      # ~1 s; "list" costs ~2 s and ~1 GB more at this size

Vectors are random unit-norm float32. ``values_as="list"`` (default) gives plain ``list[float]`` per record;
``"numpy"`` gives 1-D float32 rows (views of one matrix), which the SDK and ``PineconeSandbox.load`` accept as they are.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import sqlalchemy as sa

# Always among the creators: the real ids that have bitten before.
TRICKY_CREATORS = ("sainath.no.1", "a.1", "a.10", "creator-7")

_WORDS = [
    *("memory", "recipe", "garden", "travel", "piano", "letter", "winter", "harbor", "lecture", "sketch"),
    *("river", "budget", "poem", "orbit", "lantern", "market", "signal", "thesis", "canvas", "ferry"),
    *("mentor", "ledger", "compass", "meadow", "archive", "sonnet", "bridge", "quartz", "tundra"),
]

Record = tuple[str, Sequence[float], dict[str, Any]]


class _Loader(Protocol):
    def load(self, name: str, namespace: str, records: Any) -> int: ...


@dataclass
class SeedData:
    """``namespaces``: namespace -> records ``(id, values, metadata)``; ``""`` is the default namespace.

    ``twins`` maps each twin id (also its namespace name) to its creator id; ``creators`` lists the creator ids.
    """

    namespaces: dict[str, list[Record]]
    twins: dict[str, str]
    creators: list[str]
    dimension: int
    seed: int = 0
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {ns: len(records) for ns, records in self.namespaces.items()}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def twins_of(self, creator: str) -> list[str]:
        return [twin for twin, owner in self.twins.items() if owner == creator]

    def load_into(self, sandbox: _Loader, index_name: str) -> int:
        """Store every namespace in *index_name* of a ``PineconeSandbox`` directly; returns the vector count."""
        return sum(sandbox.load(index_name, ns, records) for ns, records in self.namespaces.items())


def _creator_ids(n_creators: int) -> list[str]:
    creators = list(TRICKY_CREATORS[:n_creators])
    number = 1
    while len(creators) < n_creators:
        candidate = f"creator-{number}"
        if candidate not in creators:
            creators.append(candidate)
        number += 1
    return creators


def _uneven_sizes(rng: np.random.Generator, total: int, parts: int) -> list[int]:
    """*parts* sizes, each at least 1, summing to *total*, skewed (a few large namespaces, many small)."""
    if parts == 0:
        return []
    if total < parts:
        raise ValueError(f"cannot spread {total} vectors over {parts} namespaces with at least one each")
    share = rng.dirichlet(np.full(parts, 0.8)) * (total - parts)
    sizes = np.floor(share).astype(int) + 1
    # Hand the rounding remainder to the largest fractional parts so the sum is exact.
    for i in np.argsort(share - np.floor(share))[::-1][: total - int(sizes.sum())]:
        sizes[i] += 1
    return sizes.tolist()


def _ids(rng: np.random.Generator, count: int, doc: int) -> tuple[list[str], int]:
    """*count* ``doc-N#chunk-M`` ids from documents of 1 to 8 chunks numbered from *doc*; and the next free number.

    Document numbers never repeat across namespaces, so an id is unique in the whole data set: a twin's records in the
    default namespace and in its own namespace can be merged into one namespace without overwriting each other.
    """
    ids: list[str] = []
    while len(ids) < count:
        chunks = int(rng.integers(1, 9))
        ids.extend(f"doc-{doc}#chunk-{c}" for c in range(min(chunks, count - len(ids))))
        doc += int(rng.integers(1, 4))
    return ids, doc


def _unit_vectors(rng: np.random.Generator, count: int, dimension: int) -> np.ndarray:
    matrix = rng.standard_normal((count, dimension), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def seed_dataset(
    seed: int = 0,
    dimension: int = 3072,
    n_vectors: int = 805,
    n_twin_namespaces: int = 30,
    default_count: int = 376,
    n_creators: int = 8,
    values_as: Literal["list", "numpy"] = "list",
) -> SeedData:
    """Generate the seeds-shaped data set; see the module docstring. Deterministic in *seed*."""
    if not 0 <= default_count <= n_vectors:
        raise ValueError("default_count must be within 0..n_vectors")
    if n_twin_namespaces < 1 or n_creators < 1:
        raise ValueError("need at least one twin namespace and one creator")
    rng = np.random.default_rng(seed)
    creators = _creator_ids(n_creators)
    twin_ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n_twin_namespaces)]
    # Every creator owns at least one twin (while twins last); the rest go to random creators.
    owners = [
        creators[i % n_creators] if i < n_creators else creators[int(rng.integers(n_creators))]
        for i in range(n_twin_namespaces)
    ]
    twins = dict(zip(twin_ids, owners, strict=True))

    sizes = [default_count, *_uneven_sizes(rng, n_vectors - default_count, n_twin_namespaces)]
    names = ["", *twin_ids]
    matrix = _unit_vectors(rng, n_vectors, dimension)
    words = rng.integers(0, len(_WORDS), size=(n_vectors, 6))
    default_twins = rng.integers(0, n_twin_namespaces, size=default_count)

    namespaces: dict[str, list[Record]] = {}
    start, doc = 0, int(rng.integers(1, 50))
    for name, size in zip(names, sizes, strict=True):
        block = matrix[start : start + size]
        values: Sequence[Any] = block.tolist() if values_as == "list" else list(block)
        records: list[Record] = []
        ids, doc = _ids(rng, size, doc)
        for offset, vector_id in enumerate(ids):
            row = start + offset
            source, chunk = vector_id.split("#")
            metadata: dict[str, Any] = {
                "text": " ".join(_WORDS[w] for w in words[row]),
                "source": source,
                "chunk": int(chunk.removeprefix("chunk-")),
            }
            if name == "":
                metadata["twin_id"] = twin_ids[int(default_twins[offset])]
            records.append((vector_id, values[offset], metadata))
        namespaces[name] = records
        start += size
    return SeedData(namespaces=namespaces, twins=twins, creators=creators, dimension=dimension, seed=seed)


def write_twins_csv(twins: dict[str, str], path: Path) -> Path:
    """The twin → creator mapping as the CSV a spec's ``routing.creators`` (``source: file``) reads."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["twin_id", "creator_id"])
        writer.writerows(sorted(twins.items()))
    return path


_STRATEGIES = ("semantic", "recursive", "fixed", "hierarchical")
_CONTENT_TYPES = ("text/markdown", "text/plain", "application/pdf")


def seed_chunks(n_rows: int, dimension: int = 384, seed: int = 0, collections: int = 3) -> list[Record]:
    """Rows shaped like seed 004's ``embeddings`` table, as records ``(chunk_id, values, metadata)`` whose metadata
    carries every documented column (``orchestrator.pgvector_layout.COLUMNS``) plus one key the schema has no column for
    (``source``, kept in the ``metadata`` JSONB). Deterministic in ``seed``; unit-norm float32 vectors."""
    rng = np.random.default_rng(seed)
    matrix = _unit_vectors(rng, n_rows, dimension)
    words = rng.integers(0, len(_WORDS), size=(n_rows, 8))
    records: list[Record] = []
    for row in range(n_rows):
        doc, chunk = divmod(row, 7)
        leaf = chunk != 0
        metadata: dict[str, Any] = {
            "document_id": f"doc-{doc:06d}",
            "collection_name": f"collection_{doc % collections}",
            "text": " ".join(_WORDS[w] for w in words[row]),
            "strategy": _STRATEGIES[doc % len(_STRATEGIES)],
            "content_type": _CONTENT_TYPES[doc % len(_CONTENT_TYPES)],
            "path": f"/docs/{doc:06d}.md",
            "depth_level": 1 if leaf else 0,
            "hierarchy_level": chunk % 3,
            "semantic_density": round(float(rng.random()), 4),
            "confidence": round(float(rng.random()), 4),
            "chunk_size": int(rng.integers(200, 2000)),
            "token_count": int(rng.integers(50, 500)),
            "key_count": int(rng.integers(1, 12)),
            "contains_arrays": bool(chunk % 4 == 0),
            "is_leaf": leaf,
            "domain_tags": [_WORDS[words[row][0]], _WORDS[words[row][1]]],
            "original_keys": ["content", "meta"],
            "source": "seed-004",
        }
        if leaf:
            metadata["parent_chunk_id"] = f"doc-{doc:06d}#chunk-0"
        records.append((f"doc-{doc:06d}#chunk-{chunk}", matrix[row].tolist(), metadata))
    return records


_IVFFLAT_MAX_DIMENSION = 2000
#: The application's own DDL for a namespace's table (a copy of shared/reference/pgvector-namespace-table.sql).
APPLICATION_DDL = Path(__file__).resolve().parent / "application-table.sql"


def application_ddl(table: str, dimension: int) -> str:
    """The application's DDL (``APPLICATION_DDL``) for ``table`` (``embeddings_{namespace}``, or the legacy
    ``embeddings``, which has the same columns) with vectors of ``dimension``: the table and its four indexes. Above
    2,000 dimensions pgvector refuses the DDL's ivfflat index ("column cannot have more than 2000 dimensions"), so
    the application's table has the three others only, and so does this one."""
    ddl = (
        APPLICATION_DDL.read_text()
        .replace("embeddings_{namespace}", table)
        .replace("VECTOR(1536)", f"VECTOR({int(dimension)})")
    )
    if dimension > _IVFFLAT_MAX_DIMENSION:
        ddl = re.sub(rf"CREATE INDEX {table}_vector_idx [^;]*;\n", "", ddl)
    return ddl


def application_rows(n_rows: int, dimension: int = 384, seed: int = 0) -> list[dict[str, Any]]:
    """Rows as the application writes them into its table: ``seed_chunks``' values for every column, the
    timestamps set, and NULL where the DDL allows one, in turn (``metadata`` in every 5th row, ``path`` in every 3rd,
    the sizes in every 4th, the arrays in every 6th, the scores and flags in every 7th, ``parent_chunk_id`` of a
    document's first chunk). ``embedding`` is pgvector's text form."""
    rows: list[dict[str, Any]] = []
    for i, (chunk_id, values, metadata) in enumerate(seed_chunks(n_rows, dimension, seed)):
        row: dict[str, Any] = {
            "chunk_id": chunk_id,
            **{k: v for k, v in metadata.items() if k != "source"},
            "parent_chunk_id": metadata.get("parent_chunk_id"),
            "embedding": "[" + ",".join(repr(float(v)) for v in values) + "]",
            "metadata": {"source": "application", "row": i},
            "created_at": datetime(2024, 1, 1) + timedelta(minutes=i),
            "updated_at": datetime(2024, 6, 1, 12) + timedelta(seconds=i),
        }
        nulls = {
            5: ("metadata",),
            3: ("path",),
            4: ("chunk_size", "token_count", "key_count"),
            6: ("domain_tags", "original_keys"),
            7: ("depth_level", "hierarchy_level", "semantic_density", "confidence", "contains_arrays", "is_leaf"),
        }
        for every, columns in nulls.items():
            if i % every == 0:
                row.update(dict.fromkeys(columns))
        rows.append(row)
    return rows


_CASTS = {"embedding": "vector", "metadata": "jsonb"}


def create_application_table(conn: sa.Connection, table: str, dimension: int, rows: Sequence[dict[str, Any]]) -> None:
    """Make ``table`` with the application's DDL and insert ``rows`` (``application_rows``) with plain SQL, as the
    application would."""
    conn.exec_driver_sql(application_ddl(table, dimension))
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(f"CAST(:{c} AS {_CASTS[c]})" if c in _CASTS else f":{c}" for c in columns)
    params = [{**row, "metadata": None if row["metadata"] is None else json.dumps(row["metadata"])} for row in rows]
    conn.execute(sa.text(f'INSERT INTO "{table}" ({names}) VALUES ({values})'), params)
