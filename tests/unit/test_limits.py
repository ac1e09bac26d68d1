"""The client's Pinecone limits (``orchestrator.limits``) against the stand-in server's own declarations
(``sandbox.pinecone_server``, compared with the reference spec by its own tests): a client limit above the server's
would send requests the server refuses; and the default rate budget stays under the documented rates."""

from __future__ import annotations

from nsmigrate.orchestrator import limits
from nsmigrate.orchestrator.spec.rate_budget import DEFAULT_LIST_RATE_SHARE, DEFAULT_RATE_SHARE, RateBudget
from nsmigrate_sandbox import namespace_aliases
from nsmigrate_sandbox import pinecone_server as server


def test_request_sizes_fit_what_the_server_accepts() -> None:
    assert limits.FETCH_MAX_IDS <= server.MAX_IDS_PER_REQUEST
    assert limits.DELETE_MAX_IDS <= server.MAX_IDS_PER_REQUEST
    assert limits.LIST_MAX_PAGE_IDS <= server.MAX_LIST_LIMIT
    assert limits.ALIAS_LIST_MAX_PAGE <= namespace_aliases.MAX_LIST_LIMIT
    assert limits.UPSERT_MAX_VECTORS <= server.MAX_UPSERT_VECTORS
    assert limits.UPSERT_MAX_BYTES <= server.MAX_REQUEST_BYTES
    assert limits.RECORD_ID_MAX_CHARS == server.MAX_ID_LENGTH
    assert limits.RECORD_METADATA_MAX_BYTES == server.MAX_METADATA_BYTES


def test_rates_match_the_servers_and_the_default_budget_stays_under_them() -> None:
    served = server.Faults.pinecone_serverless_limits()
    assert served.fetch_rps_per_index == limits.READ_MAX_REQUESTS_PER_S_PER_INDEX
    assert served.list_rps_per_index == limits.LIST_MAX_REQUESTS_PER_S_PER_INDEX
    assert served.stats_rps_per_index == limits.STATS_MAX_REQUESTS_PER_S_PER_INDEX
    assert served.write_rps_per_namespace == limits.WRITE_MAX_REQUESTS_PER_S_PER_NAMESPACE
    assert served.delete_records_per_s_per_index == limits.DELETE_MAX_RECORDS_PER_S_PER_INDEX
    assert served.delete_records_per_s_per_namespace == limits.DELETE_MAX_RECORDS_PER_S_PER_INDEX
    assert served.write_mb_per_s_per_namespace == limits.WRITE_MAX_MB_PER_S_PER_NAMESPACE
    assert server.QUERY_MIN_READ_UNITS == limits.QUERY_MIN_READ_UNITS
    budget = RateBudget()
    assert budget.read_rps < limits.READ_MAX_REQUESTS_PER_S_PER_INDEX
    assert budget.list_rps < limits.LIST_MAX_REQUESTS_PER_S_PER_INDEX
    assert budget.stats_rps < limits.STATS_MAX_REQUESTS_PER_S_PER_INDEX
    assert budget.write_rps < limits.WRITE_MAX_REQUESTS_PER_S_PER_NAMESPACE
    assert budget.write_mb_per_s < limits.WRITE_MAX_MB_PER_S_PER_NAMESPACE
    assert budget.delete_records_per_s < limits.DELETE_MAX_RECORDS_PER_S_PER_INDEX


def test_the_default_budget_is_a_share_of_each_declared_limit() -> None:
    """The defaults follow the declared limits: a limit changed in ``orchestrator.limits`` changes its budget."""
    budget = RateBudget()
    share, list_share = DEFAULT_RATE_SHARE, DEFAULT_LIST_RATE_SHARE
    assert 0 < share < 1 and 0 < list_share < 1
    assert budget.read_rps == share * limits.READ_MAX_REQUESTS_PER_S_PER_INDEX
    assert budget.list_rps == list_share * limits.LIST_MAX_REQUESTS_PER_S_PER_INDEX
    assert budget.stats_rps == share * limits.STATS_MAX_REQUESTS_PER_S_PER_INDEX
    assert budget.write_rps == share * limits.WRITE_MAX_REQUESTS_PER_S_PER_NAMESPACE
    assert budget.write_mb_per_s == share * limits.WRITE_MAX_MB_PER_S_PER_NAMESPACE
    assert budget.delete_records_per_s == share * limits.DELETE_MAX_RECORDS_PER_S_PER_INDEX == 4_000
    # what the manual and the spec catalogue document as the defaults
    assert (budget.read_rps, budget.list_rps, budget.stats_rps, budget.write_rps, budget.write_mb_per_s) == (
        80,
        150,
        80,
        80,
        40,
    )
