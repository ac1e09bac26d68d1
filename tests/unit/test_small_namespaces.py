"""Which namespaces are small (one list page and one batch at plan time) and how ``launch`` groups them into tasks
(``orchestrator.listing.small_namespaces``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.listing.small_namespaces import fits_one_batch, groups, list_page_ids
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.jobspec import JobSpec, parse_spec


def spec(source: dict[str, Any], **fields: Any) -> JobSpec:
    return parse_spec({"name": "s", "source": source, "target": {"kind": "pinecone", "host": "http://t"}, **fields})


PINECONE = {"kind": "pinecone", "host": "http://s"}
PGVECTOR = {"kind": "pgvector", "table": "items"}


@pytest.mark.parametrize(
    ("source", "batch_size", "count", "small"),
    [
        (PINECONE, 100, 0, True),  # an empty namespace: one (empty) page
        (PINECONE, 100, 100, True),
        (PINECONE, 100, 101, False),  # two pages
        (PINECONE, 20, 20, True),
        (PINECONE, 20, 21, False),  # two batches
        (PINECONE, 500, 101, False),  # one batch, but Pinecone lists ≤ 100 ids a page
        (PGVECTOR, 500, 500, True),  # a table pages a whole batch in one query
        (PGVECTOR, 500, 501, False),
    ],
)
def test_a_namespace_is_small_when_its_count_fits_one_page_and_one_batch(
    source: dict[str, Any], batch_size: int, count: int, small: bool
) -> None:
    assert fits_one_batch(spec(source, batch_size=batch_size), count) is small


def test_a_lister_pages_pinecone_by_100_and_a_table_by_a_batch() -> None:
    assert list_page_ids(spec(PINECONE, batch_size=500)) == 100
    assert list_page_ids(spec(PGVECTOR, batch_size=500)) == 500


MIN_TASKS, MAX_RUNS = DEFAULTS.small_group_min_tasks, DEFAULTS.small_group_max_runs


@pytest.mark.parametrize(
    ("runs", "per_task"),
    [(0, None), (1, 1), (MIN_TASKS, 1), (2 * MIN_TASKS - 1, 1), (2 * MIN_TASKS, 2), (1000, 15), (12_000, 16)],
)
def test_groups_share_a_task_only_when_there_are_enough_tasks_for_a_fleet(runs: int, per_task: int | None) -> None:
    cut = groups(list(range(runs)))
    assert {len(g) for g in cut[:-1]} <= {per_task}
    assert len(cut) >= min(runs, MIN_TASKS)


@pytest.mark.parametrize(
    ("min_tasks", "max_runs", "sizes"),
    [(1, 16, [16, 16, 8]), (1, 5, [5] * 8), (4, 16, [10, 10, 10, 10]), (64, 16, [1] * 40)],
)
def test_the_settings_cut_the_groups(min_tasks: int, max_runs: int, sizes: list[int]) -> None:
    settings = DEFAULTS.model_copy(update={"small_group_min_tasks": min_tasks, "small_group_max_runs": max_runs})
    assert [len(group) for group in groups(list(range(40)), settings)] == sizes


@given(st.lists(st.integers(), max_size=3000, unique=True))
def test_every_run_is_in_exactly_one_group_in_order(runs: list[int]) -> None:
    cut = groups(runs)
    assert [run for group in cut for run in group] == runs
    assert all(1 <= len(group) <= MAX_RUNS for group in cut)
