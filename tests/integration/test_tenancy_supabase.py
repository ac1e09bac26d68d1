"""``load_twins`` with ``source: supabase``: the real ``supabase`` client against the PostgREST stand-in over a real
Postgres, with more twins than the server sends per response, so paging is exercised."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nsmigrate.orchestrator.errors import PlanError, RetryableError, SpecError
from nsmigrate.orchestrator.retry_policy import retrying
from nsmigrate.orchestrator.spec.jobspec import CreatorMapping, SourceTable
from nsmigrate.orchestrator.tenancy.creator_mapping import load_sources, load_supabase, load_twins
from nsmigrate_sandbox.postgrest import PostgrestStandIn, create_tenancy_tables, load_tenancy
from nsmigrate_sandbox.services import free_port

KEY = "sandbox-service-key"
MAPPING = CreatorMapping(source="supabase", url_env="NSM_TEST_SUPABASE_URL", key_env="NSM_TEST_SUPABASE_KEY")
# 2,500 twins over creators whose ids share prefixes (a.1 / a.10): more than two pages of 1,000.
TWINS = {f"{i:08x}-0000-4000-8000-{i:012x}": ("a.1", "a.10", "sainath.no.1", "creator-7")[i % 4] for i in range(2500)}


def _serve(
    start_standin: Callable[..., PostgrestStandIn], database_url: str, max_rows: int, monkeypatch: pytest.MonkeyPatch
) -> PostgrestStandIn:
    server = start_standin(database_url, KEY, max_rows=max_rows)
    monkeypatch.setenv(MAPPING.url_env, server.url)
    monkeypatch.setenv(MAPPING.key_env, KEY)
    return server


@pytest.fixture
def tenancy_db(database_url: str) -> str:
    create_tenancy_tables(database_url)
    load_tenancy(database_url, twins=TWINS)
    return database_url


@pytest.fixture
def standin(
    tenancy_db: str, start_standin: Callable[..., PostgrestStandIn], monkeypatch: pytest.MonkeyPatch
) -> PostgrestStandIn:
    return _serve(start_standin, tenancy_db, 1000, monkeypatch)


def test_reads_every_twin_across_pages(standin: PostgrestStandIn) -> None:
    assert load_twins(MAPPING) == TWINS


@pytest.mark.parametrize("max_rows", [300, 999])
def test_a_server_cap_below_the_page_size_still_reads_everything(
    tenancy_db: str, start_standin: Callable[..., PostgrestStandIn], monkeypatch: pytest.MonkeyPatch, max_rows: int
) -> None:
    # The client asks for 1,000 rows a page; the server sends fewer, which must not read as "the last page".
    _serve(start_standin, tenancy_db, max_rows, monkeypatch)
    assert load_supabase(MAPPING, page_rows=1000) == TWINS


def test_invalid_ids_in_the_table_are_listed(tenancy_db: str, standin: PostgrestStandIn) -> None:
    load_tenancy(tenancy_db, twins={"t 9": "ok", "t10": "bad/creator", "twin_abc123": "test_creator_123"})
    with pytest.raises(PlanError) as err:
        load_twins(MAPPING)
    text = str(err.value)
    assert "twin_id 't 9'" in text and "creator_id 'bad/creator'" in text and "Supabase table 'twins'" in text
    assert "2 invalid id(s)" in text  # the seeds' ids with '_' are valid


def test_unknown_table_is_a_spec_error(standin: PostgrestStandIn) -> None:
    mapping = MAPPING.model_copy(update={"twins_table": "no_such_table"})
    with pytest.raises(SpecError, match="no_such_table"):
        load_twins(mapping)


def test_wrong_key_is_refused_without_echoing_it(standin: PostgrestStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAPPING.key_env, "not-the-key-zz9")
    with pytest.raises(SpecError) as err:
        load_twins(MAPPING)
    assert "not-the-key-zz9" not in str(err.value)
    assert MAPPING.key_env in str(err.value)


def test_unreachable_server_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAPPING.url_env, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(MAPPING.key_env, KEY)
    with pytest.raises(RetryableError, match=MAPPING.url_env):
        load_twins(MAPPING)


@pytest.mark.parametrize("unset", [MAPPING.url_env, MAPPING.key_env])
def test_unset_env_var_is_named(monkeypatch: pytest.MonkeyPatch, unset: str) -> None:
    monkeypatch.setenv(MAPPING.url_env, "http://127.0.0.1:1")
    monkeypatch.setenv(MAPPING.key_env, KEY)
    monkeypatch.delenv(unset)
    with pytest.raises(SpecError) as err:
        load_twins(MAPPING)
    assert unset in str(err.value) and KEY not in str(err.value)


SOURCES = SourceTable(source="supabase", url_env=MAPPING.url_env, key_env=MAPPING.key_env)


@pytest.mark.parametrize("max_rows", [300, 1000])
def test_the_sources_table_is_read_across_pages(
    tenancy_db: str, start_standin: Callable[..., PostgrestStandIn], monkeypatch: pytest.MonkeyPatch, max_rows: int
) -> None:
    # The seeds' sources table (source → twin), the third route of a default-namespace vector, read with the real
    # client and paged past the server's cap.
    _serve(start_standin, tenancy_db, max_rows, monkeypatch)
    assert load_sources(SOURCES) == {f"src_{t}": t for t in TWINS}


def test_the_sources_table_from_postgres_matches_supabase(
    tenancy_db: str, standin: PostgrestStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSM_TEST_SOURCES_URL", tenancy_db)
    from_postgres = load_sources(SourceTable(source="postgres", database_url_env="NSM_TEST_SOURCES_URL"))
    assert from_postgres == load_sources(SOURCES) and len(from_postgres) == len(TWINS)


def test_an_unreadable_sources_table_names_it(standin: PostgrestStandIn) -> None:
    with pytest.raises(SpecError, match="'no_such_table'"):
        load_sources(SOURCES.model_copy(update={"table": "no_such_table"}))


class Waits:
    """A retry policy's ``sleep`` that records instead of sleeping."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def test_a_database_outage_is_retried_by_our_policy_alone_and_is_not_called_a_spec_error(
    start_standin: Callable[..., PostgrestStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stand-in's database is down: it answers every read 503 PGRST000, as PostgREST does. The client's own
    # retries (3, sleeping 1+2+4 s, then an APIError read as "refused to read table") must not run: each attempt is
    # one request of our policy, and what it ends with is an outage to retry later, not a spec to fix.
    server = start_standin(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone", KEY)
    monkeypatch.setenv(MAPPING.url_env, server.url)
    monkeypatch.setenv(MAPPING.key_env, KEY)
    waits = Waits()

    with pytest.raises(RetryableError, match=MAPPING.url_env) as err:
        load_twins(MAPPING, policy=retrying(attempts=4, sleep=waits))

    assert err.value.status == 503
    assert server.answered == {503: 4}
    assert len(waits.seconds) == 3


def test_a_short_outage_is_ridden_out_and_every_twin_read(
    tenancy_db: str, start_standin: Callable[..., PostgrestStandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _serve(start_standin, tenancy_db, 1000, monkeypatch)
    server.fail_next(2)  # the first two requests find the database gone
    waits = Waits()

    assert load_twins(MAPPING, policy=retrying(attempts=4, sleep=waits)) == TWINS
    assert server.answered[503] == 2 and len(waits.seconds) == 2


def test_a_refused_server_is_tried_as_often_as_the_policy_says_for_a_host_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MAPPING.url_env, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(MAPPING.key_env, KEY)
    waits = Waits()

    with pytest.raises(RetryableError, match=MAPPING.url_env) as err:
        load_twins(MAPPING, policy=retrying(attempts=6, no_answer_attempts=2, sleep=waits))

    assert err.value.status is None
    assert len(waits.seconds) == 1  # two attempts: a wrong URL fails fast
