"""How a namespace is cut into copy batches between two of the application's pgvector tables: evenly.

Such a copy passes a batch's rows as they are, one ``COPY`` stream a batch, ``max_batches_in_flight``
(``parallel_upserts``) batches of a table at once; each batch costs the same job-table statements, message and
transaction a side whatever its size, so the fewer batches the faster (bench/README.md). Cut at ``batch_size`` as
the ids come, a table of 12,000 rows in batches of 10,000 would leave one stream 10,000 rows and the other 2,000;
cut evenly, each takes 6,000. So a namespace larger than ``batch_size`` goes in as few batches as ``batch_size``
allows, in a multiple of the batches at once, of one size (the last smaller by the rounding); one of ``batch_size``
ids or fewer is one batch, whose rows go in streams of their own (``workers.steps.copying``). Any other copy cuts at
``batch_size``. Pure: the count is the namespace's at plan time, a hint that a table grown since only lengthens.
"""

from __future__ import annotations

import math

from nsmigrate.orchestrator.spec.jobspec import JobSpec


def between_tables(spec: JobSpec) -> bool:
    """Whether ``spec`` copies between two of the application's tables (``schema: documented``) as rows: no
    re-embedding (the spec's defaults for such a copy: ``jobspec._table_copies_in_whole_batches``)."""
    source, target = spec.source, spec.target
    documented = source.kind == target.kind == "pgvector" and source.documented and target.documented
    return documented and spec.reembed is None


def batch_ids(spec: JobSpec, count: int) -> int:
    """Ids per batch of a namespace of ``count`` ids (see the module docstring); never more than ``batch_size``."""
    if count <= spec.batch_size or not between_tables(spec):
        return spec.batch_size
    at_once = spec.max_batches_in_flight
    batches = at_once * math.ceil(count / (at_once * spec.batch_size))
    return math.ceil(count / batches)


def batches(spec: JobSpec, count: int) -> int:
    """Copy batches of a namespace of ``count`` ids."""
    return math.ceil(count / batch_ids(spec, count))
