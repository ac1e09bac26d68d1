"""The floor a job's budgets set: the least time its requests and bytes can take under the per-second budgets.

A copy of every vector of a source index must at least list every id (a page of ≤ 100 ids a request, per source
index), fetch every id (≤ 1,000 ids a request, per source index) — with whole reads (``NSMIGRATE_WHOLE_READS``),
none of a namespace listed whole in one page, which one query returns (a query is the namespace's own budget, a
quarter of the index's 2,000 read units a second) — and upsert every vector's bytes (per target
namespace, in requests of ≤ 2 MB); each kind of request is allowed so many a second (the job's ``rate.*``). The floor
is the longest of: list pages ÷ ``list_rps``, fetches ÷ ``read_rps``, and, per target namespace, its upsert requests ÷
``write_rps`` and its bytes ÷ 50 MB/s (Pinecone's limit; the default byte budget is 0.8 of it). Round trips, start-up
and planning are not in it: no contender reaches it, and how close one comes is what it costs beyond the budgets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nsmigrate.orchestrator.limits import (
    FETCH_MAX_IDS,
    LIST_MAX_PAGE_IDS,
    UPSERT_MAX_BYTES,
    WRITE_MAX_MB_PER_S_PER_NAMESPACE,
)
from nsmigrate.orchestrator.planning.costs import BYTES_PER_JSON_VALUE, fits_one_query
from nsmigrate.workers.steps.whole_reads import EXTRA_RECORDS
from nsmigrate_sandbox.seed import SeedData

#: About how many bytes a float32 value takes in an upsert's JSON (``-0.012345678,``): the plan's figure.
VALUE_BYTES = BYTES_PER_JSON_VALUE
#: A record's bytes besides its values: id, metadata, keys and brackets (the seeds' metadata is ~150 bytes).
RECORD_BYTES = 200


@dataclass(frozen=True)
class Floor:
    list_s: float
    fetch_s: float
    write_requests_s: float
    write_bytes_s: float

    @property
    def seconds(self) -> float:
        return max(self.list_s, self.fetch_s, self.write_requests_s, self.write_bytes_s)

    def describe(self) -> str:
        parts = {
            "list": self.list_s,
            "fetch": self.fetch_s,
            "upsert requests": self.write_requests_s,
            "upsert bytes": self.write_bytes_s,
        }
        bound = max(parts, key=lambda name: parts[name])
        shown = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())
        return f"{self.seconds:.2f} s, set by {bound} ({shown})"


def floor_of(data: SeedData, read_rps: float, list_rps: float, write_rps: float, whole_reads: bool = False) -> Floor:
    """The floor of copying ``data`` whole under these budgets (see the module docstring)."""
    record_bytes = RECORD_BYTES + VALUE_BYTES * data.dimension
    per_upsert = max(1, UPSERT_MAX_BYTES // record_bytes)
    sizes = [len(records) for records in data.namespaces.values()]
    lists = sum(max(1, math.ceil(n / LIST_MAX_PAGE_IDS)) for n in sizes)
    # Read by a query: one list page, an answer one query may give (``costs.fits_one_query``).
    queried = [
        whole_reads and n <= LIST_MAX_PAGE_IDS and fits_one_query(n + EXTRA_RECORDS, data.dimension) for n in sizes
    ]
    fetches = sum(math.ceil(n / FETCH_MAX_IDS) for n, by_query in zip(sizes, queried, strict=True) if not by_query)
    largest = max(sizes)
    return Floor(
        list_s=lists / list_rps,
        fetch_s=fetches / read_rps,
        write_requests_s=math.ceil(largest / per_upsert) / write_rps,
        write_bytes_s=largest * record_bytes / (WRITE_MAX_MB_PER_S_PER_NAMESPACE * 1e6),
    )
