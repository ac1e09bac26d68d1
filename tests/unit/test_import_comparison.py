"""The plan's comparison of upsert and import (``import_strategy.compare``), pure: the files an import writes are
Parquet for a vector index and JSONL for a document index, and the figures shown are the ones the plan's numbers,
the spec's prices and its read budget give, in a unit that shows them at any size."""

from __future__ import annotations

import math
from typing import Any

import pytest

from nsmigrate.orchestrator.limits import FETCH_MAX_IDS, IMPORT_MIN_S, LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.planning.costs import BYTES_PER_JSON_VALUE
from nsmigrate.orchestrator.planning.import_strategy import (
    BYTES_PER_VALUE,
    RECORD_OVERHEAD_BYTES,
    WRITE_MB_PER_S_PER_THREAD,
    compare,
    import_format,
)
from nsmigrate.orchestrator.planning.plan import Estimate
from nsmigrate.orchestrator.spec.jobspec import parse_spec

VECTORS = {"kind": "pinecone", "index": "dst"}
DOCUMENTS = {"kind": "pinecone", "index": "docs", "documents": {"text_fields": ["chunk_text"]}}


def import_spec(target: dict[str, Any], **prices: float) -> Any:
    return parse_spec(
        {
            "name": "big",
            "strategy": "import",
            "source": {"kind": "pinecone", "index": "src"},
            "target": target,
            "import": {"uri": "s3://bucket/imports", **prices},
            "rate": {"read_rps": 40, "list_rps": 60},
        }
    )


@pytest.mark.parametrize(
    ("target", "file_format", "value_bytes"),
    [(VECTORS, "Parquet", BYTES_PER_VALUE), (DOCUMENTS, "JSONL", BYTES_PER_JSON_VALUE)],
)
@pytest.mark.parametrize(("records", "dimension"), [(30_000_000, 1536), (2_000_000, 384)])
def test_the_comparison_prices_the_files_the_target_imports(
    target: dict[str, Any], file_format: str, value_bytes: int, records: int, dimension: int
) -> None:
    spec = import_spec(target, usd_per_gb=0.75, usd_per_million_write_units=5.5)
    units, duration_s = records * 3, records / 900
    estimate = Estimate(0, 0, 0, 0, units, duration_s, dimension=dimension)

    upsert, imported = compare(spec, estimate, [records // 2, records - records // 2], dimension, 8)

    gigabytes = records * (dimension * value_bytes + RECORD_OVERHEAD_BYTES) / 1e9
    shown = f"{gigabytes / 1000:.3g} TB" if gigabytes >= 1000 else f"{gigabytes:.3g} GB"
    assert import_format(spec) == file_format
    assert upsert == (
        f"upsert: ≈{units} write units ≈ ${units / 1e6 * 5.5:.2f} (at $5.5 per million), ≈{duration_s:.0f} s at the "
        "configured budgets"
    )
    # two namespaces written at once: their lists and fetches at the budgets, then their bytes two threads' worth
    reading_s = max(
        2 * math.ceil(records / 2 / LIST_MAX_PAGE_IDS) / 60, 2 * math.ceil(records / 2 / FETCH_MAX_IDS) / 40
    )
    writing_s = reading_s + gigabytes * 1e3 / (2 * WRITE_MB_PER_S_PER_THREAD)
    assert imported.startswith(
        f"import: ≈{shown} of {file_format} files ≈ ${gigabytes * 0.75:.2f} (at $0.75 per GB), ≈{writing_s:.0f} s "
        f"to write them (fetches at the read budget, 8 namespaces at once, {WRITE_MB_PER_S_PER_THREAD:g} MB/s each), "
        f"then Pinecone's import: at least {IMPORT_MIN_S / 60:.0f} min; "
    )
    advice = "for a load this size" if records >= 10_000_000 else "above ~10M records"
    assert f"Pinecone recommends import {advice}" in imported


def test_a_document_import_reads_more_bytes_than_the_same_vectors_in_parquet() -> None:
    """A float32 is 4 bytes in Parquet and its decimal text in JSONL: importing into a document index costs more."""
    estimate = Estimate(0, 0, 0, 0, 1, 1.0, dimension=1024)
    parquet = compare(import_spec(VECTORS), estimate, [5_000_000], 1024, 8)[1]
    jsonl = compare(import_spec(DOCUMENTS), estimate, [5_000_000], 1024, 8)[1]

    def usd(line: str) -> float:
        return float(line.split(" files ≈ $")[1].split(" ")[0])

    assert usd(jsonl) > 2 * usd(parquet) > 0


@pytest.mark.parametrize(
    ("records", "dimension", "shown"),
    [(10, 8, "≈2.32 KB of"), (1000, 64, "≈456 KB of"), (40_000, 64, "≈18.2 MB of"), (200_000_000, 3072, "2.5 TB")],
)
def test_small_and_big_loads_are_shown_in_a_unit_that_shows_them(records: int, dimension: int, shown: str) -> None:
    estimate = Estimate(0, 0, 0, 0, 1, 1.0, dimension=dimension)
    assert shown in compare(import_spec(VECTORS), estimate, [records], dimension, 8)[1]


def test_writing_the_files_takes_the_fetches_and_the_bytes_and_threads_share_the_bytes() -> None:
    """The time to write the files grows with the fetches at the read budget and with the bytes, and namespaces
    written at once share the bytes (not the budget)."""
    estimate = Estimate(0, 0, 0, 0, 1, 1.0, dimension=1536)
    spec = import_spec(VECTORS)

    def seconds(sizes: list[int], threads: int) -> float:
        return float(compare(spec, estimate, sizes, 1536, threads)[1].split(" s to write them")[0].split("≈")[-1])

    many = [400] * 50
    assert seconds(many, 1) > 3 * seconds(many, 8) > 0
    assert seconds([20_000], 8) == seconds([20_000], 1)  # one namespace is one thread's
    assert seconds([400] * 500, 8) > 9 * seconds(many, 8)
