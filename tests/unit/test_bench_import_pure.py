"""The import bench reads the plan's comparison of upsert and import as ``nsmigrate plan`` prints it, wrapped or
not, figure for figure, so the plan it sets beside what it measured is the plan's own; a plan without the comparison
is an error, not figures made up."""

from __future__ import annotations

import textwrap

import pytest

from bench.import_job import PlanEstimate, read_comparison
from nsmigrate.orchestrator.planning.import_strategy import compare, import_bytes, writing_seconds
from nsmigrate.orchestrator.planning.plan import Estimate
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec

SIZES = [400] * 50


def big_spec(**prices: float) -> JobSpec:
    return parse_spec(
        {
            "name": "big",
            "strategy": "import",
            "source": {"kind": "pinecone", "index": "src"},
            "target": {"kind": "pinecone", "index": "dst"},
            "import": {"uri": "s3://bucket/imports", **prices},
        }
    )


def printed_plan(width: int, **prices: float) -> str:
    """A plan's output holding the comparison of 20,000 × 1,536 records, its lines wrapped at ``width`` characters
    and indented as a narrow terminal shows them."""
    lines = compare(big_spec(**prices), Estimate(20, 20, 20, 200, 403_000, 3.4, dimension=1536), SIZES, 1536, 8)
    wrapped = []
    for line in ["50 namespaces, 20000 vectors, 100 batches", *lines]:
        wrapped += textwrap.wrap(line, width)
    return "\n".join(f"  {part}" for part in wrapped)


@pytest.mark.parametrize("width", [1000, 37])
def test_the_comparison_is_read_as_the_plan_prints_it(width: int) -> None:
    shown = read_comparison(printed_plan(width, usd_per_gb=0.5))

    # 20,000 records of 1,536 float32 values and ~200 bytes beside them: 127 MB, written 8 namespaces at once.
    write_s = writing_seconds(big_spec(), SIZES, import_bytes(20_000, 1536), 8)
    assert shown == PlanEstimate("403000", "$1.61", "3", "127 MB", "Parquet", "$0.06", "0.5", f"{write_s:.0f}", "10")


def test_a_plan_without_the_comparison_is_an_error() -> None:
    with pytest.raises(ValueError, match="no comparison of upsert and import"):
        read_comparison("plan for job 'small': 5 namespaces, 805 vectors, 9 batches")
