"""How a namespace between two of the application's tables is cut into batches (``orchestrator.listing.
table_batches``): evenly, as few as ``batch_size`` allows, a multiple of the batches copied at once."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.orchestrator.listing.table_batches import batch_ids, batches
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from tests.unit.test_spec import base, tables


@pytest.mark.parametrize(
    ("count", "given", "size", "how_many"),
    [
        pytest.param(0, {}, 10_000, 0, id="empty"),
        pytest.param(7_000, {}, 10_000, 1, id="one-batch"),
        pytest.param(10_000, {}, 10_000, 1, id="one-whole-batch"),
        pytest.param(12_000, {}, 6_000, 2, id="a-stream-each"),
        pytest.param(20_000, {}, 10_000, 2, id="two-whole-batches"),
        pytest.param(20_001, {}, 5_001, 4, id="one-more-id"),
        pytest.param(50_000, {}, 8_334, 6, id="a-multiple-of-two"),
        pytest.param(50_000, {"parallel_upserts": 3}, 8_334, 6, id="a-multiple-of-three"),
        pytest.param(18, {"batch_size": 8, "max_batches_in_flight": 4}, 5, 4, id="given"),
    ],
)
def test_a_table_goes_in_even_batches_as_few_as_its_batch_size_allows(
    count: int, given: dict[str, Any], size: int, how_many: int
) -> None:
    spec = JobSpec.model_validate(tables(**given))
    assert batch_ids(spec, count) == size <= spec.batch_size
    assert batches(spec, count) == how_many


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(base(batch_size=300), id="indexes"),
        pytest.param(tables(batch_size=300, reembed={"dimension": 8}), id="re-embedded"),
    ],
)
def test_any_other_copy_cuts_at_its_batch_size(data: dict[str, Any]) -> None:
    spec = JobSpec.model_validate(data)
    assert batch_ids(spec, 1_000) == 300
    assert batches(spec, 1_000) == 4
