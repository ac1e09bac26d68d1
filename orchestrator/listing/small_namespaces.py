"""Small namespaces: those whose ids the plan counted fit one list page and one copy batch.

Such a namespace costs the fleet more in fixed costs than in vectors when it has a list task and a copy task of its own:
two messages to send, receive and acknowledge for three vectors (their share of a list and a copy worker's CPU:
``bench/README.md``). ``launch`` sends them instead in groups (``groups``: the settings ``small_group_max_runs`` and
``small_group_min_tasks``), each group one task on the copy queue that lists, records and copies its runs one after
the other (``workers.steps.small_group``), each run through the same states and steps as before. Pure: the worker side
is ``workers.steps.small_group``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from nsmigrate.orchestrator.limits import FETCH_MAX_IDS, LIST_MAX_PAGE_IDS
from nsmigrate.orchestrator.settings import DEFAULTS, Settings
from nsmigrate.orchestrator.spec.jobspec import JobSpec

T = TypeVar("T")


def list_page_ids(spec: JobSpec) -> int:
    """Ids a lister asks for in one list request: Pinecone lists at most 100 a page; a Postgres table pages a whole
    batch in one query."""
    return spec.batch_size if spec.source.kind == "pgvector" else LIST_MAX_PAGE_IDS


def fits_one_batch(spec: JobSpec, source_count: int) -> bool:
    """Whether a namespace of ``source_count`` ids (at plan time) is one list page and one copy batch."""
    return source_count <= min(spec.batch_size, list_page_ids(spec))


def verified_in_one_round(ids: int) -> bool:
    """Whether a namespace of ``ids`` is verified with one list page and one fetch a side: `nsmigrate verify` sends
    such runs several to a task (``launch.request_verification``), as the copy sends their first verification."""
    return ids <= min(LIST_MAX_PAGE_IDS, FETCH_MAX_IDS)


def groups(runs: Sequence[T], settings: Settings = DEFAULTS) -> list[list[T]]:
    """``runs`` cut into tasks of at most ``settings.small_group_max_runs``, and into at least
    ``settings.small_group_min_tasks`` (or one per run)."""
    size = max(1, min(settings.small_group_max_runs, len(runs) // settings.small_group_min_tasks))
    return [list(runs[start : start + size]) for start in range(0, len(runs), size)]
