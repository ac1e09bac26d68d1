"""The real ``supabase`` client against the PostgREST stand-in over a real Postgres.

What matters to nsmigrate: the planner reads ``twins`` through this exact client, so filters, ordering, pagination
under the server's row cap, counts and error objects must behave as they do against Supabase. Raw ``httpx`` checks pin
the wire details the client hides (``Content-Range``, 206/416, 401 bodies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from postgrest.exceptions import APIError
from supabase import Client, create_client

from nsmigrate_sandbox.postgrest import PostgrestStandIn, create_tenancy_tables, load_tenancy

KEY = "sandbox-service-key"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def standin(database_url: str, start_standin: Callable[..., PostgrestStandIn]) -> PostgrestStandIn:
    create_tenancy_tables(database_url)
    return start_standin(database_url, KEY)


@pytest.fixture
def client(standin: PostgrestStandIn) -> Iterator[Client]:
    supabase = create_client(standin.url, KEY)
    yield supabase
    supabase.postgrest.aclose()


@pytest.fixture
def small_tenancy(database_url: str, standin: PostgrestStandIn) -> dict[str, str]:
    twins = {"t1": "a.1", "t2": "a.1", "t3": "a.10", "t4": "b_2", "t5": "Sainath.No.1"}
    load_tenancy(database_url, twins=twins)
    return twins


def _twin_ids(database_url: str) -> list[str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.text("SELECT id FROM twins")).scalars())
    finally:
        engine.dispose()


def _raw(standin: PostgrestStandIn, path: str, key: str | None = KEY, **headers: str) -> httpx.Response:
    sent = {"apikey": key, "Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.get(f"{standin.url}/rest/v1/{path}", headers={**sent, **headers})


# --- reads ----------------------------------------------------------------------------------------------------------


def test_select_columns_with_eq_filter_does_not_prefix_match(client: Client, small_tenancy: dict[str, str]) -> None:
    result = client.table("twins").select("id,creator_id").eq("creator_id", "a.1").order("id").execute()
    assert result.data == [{"id": "t1", "creator_id": "a.1"}, {"id": "t2", "creator_id": "a.1"}]
    assert result.count is None


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda q: q.neq("creator_id", "a.1"), ["t3", "t4", "t5"]),
        (lambda q: q.in_("id", ["t1", "t4", "nope"]), ["t1", "t4"]),
        (lambda q: q.in_("creator_id", ["a.10", "Sainath.No.1"]), ["t3", "t5"]),
        (lambda q: q.gt("id", "t3"), ["t4", "t5"]),
        (lambda q: q.gte("id", "t3"), ["t3", "t4", "t5"]),
        (lambda q: q.lt("id", "t2"), ["t1"]),
        (lambda q: q.lte("id", "t2"), ["t1", "t2"]),
        (lambda q: q.like("creator_id", "a.1*"), ["t1", "t2", "t3"]),
        (lambda q: q.ilike("creator_id", "sainath%"), ["t5"]),
        (lambda q: q.is_("name", None), []),
        (lambda q: q.not_.is_("name", None), ["t1", "t2", "t3", "t4", "t5"]),
        (lambda q: q.not_.in_("id", ["t1", "t2"]), ["t3", "t4", "t5"]),
        (lambda q: q.eq("creator_id", "a.1").neq("id", "t1"), ["t2"]),
    ],
)
def test_filters(client: Client, small_tenancy: dict[str, str], build, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = build(client.table("twins").select("id")).order("id").execute()
    assert [row["id"] for row in result.data] == expected


def test_star_alias_and_order_desc_with_limit(client: Client, small_tenancy: dict[str, str]) -> None:
    rows = client.table("twins").select("twin:id,*").order("creator_id", desc=True).order("id").limit(2).execute().data
    assert rows == [
        {"twin": "t4", "id": "t4", "creator_id": "b_2", "name": "Twin t4"},
        {"twin": "t3", "id": "t3", "creator_id": "a.10", "name": "Twin t3"},
    ]


def test_sources_row_per_twin_and_single(client: Client, small_tenancy: dict[str, str]) -> None:
    source = client.table("sources").select("*").eq("twin_id", "t3").single().execute().data
    assert source == {"id": "src_t3", "twin_id": "t3", "kind": "document", "uri": "sandbox://twins/t3/source"}
    with pytest.raises(APIError) as excinfo:
        client.table("twins").select("id").eq("creator_id", "a.1").single().execute()
    assert excinfo.value.code == "PGRST116"
    assert client.table("twins").select("id").eq("id", "zz").maybe_single().execute() is None


def test_pagination_through_more_rows_than_max_rows(client: Client, database_url: str) -> None:
    twins = {f"twin-{i:05d}": f"creator-{i % 37}" for i in range(2500)}
    load_tenancy(database_url, twins=twins)

    # Asking for everything still yields one capped page, and the count tells the client there is more.
    first = client.table("twins").select("id", count="exact").order("id").range(0, 2499).execute()
    assert len(first.data) == 1000
    assert first.count == 2500

    seen: list[str] = []
    page_size = 1000
    while True:
        page = client.table("twins").select("id,creator_id").order("id").range(len(seen), len(seen) + page_size - 1)
        rows = page.execute().data
        seen.extend(row["id"] for row in rows)
        if len(rows) < page_size:
            break
    assert seen == sorted(twins)

    # A page size above the cap: advancing by the rows received (not by the size asked for) still gets them all.
    seen = []
    while True:
        rows = client.table("twins").select("id").order("id").range(len(seen), len(seen) + 1499).execute().data
        if not rows:
            break
        seen.extend(row["id"] for row in rows)
    assert seen == sorted(twins)


def test_content_range_and_status_on_the_wire(standin: PostgrestStandIn, database_url: str) -> None:
    load_tenancy(database_url, twins={f"t{i:04d}": "c" for i in range(2500)})
    capped = _raw(standin, "twins?select=id&order=id", Prefer="count=exact")
    assert capped.status_code == 206
    assert capped.headers["Content-Range"] == "0-999/2500"
    assert len(capped.json()) == 1000

    by_header = _raw(standin, "twins?select=id&order=id", Range="2400-2599", Prefer="count=exact")
    assert (by_header.status_code, by_header.headers["Content-Range"]) == (206, "2400-2499/2500")

    no_count = _raw(standin, "twins?select=id&order=id&offset=10&limit=5")
    assert (no_count.status_code, no_count.headers["Content-Range"]) == (200, "10-14/*")

    empty = _raw(standin, "twins?select=id&id=eq.none", Prefer="count=exact")
    assert (empty.status_code, empty.headers["Content-Range"], empty.json()) == (200, "*/0", [])

    past_end = _raw(standin, "twins?select=id&offset=3000", Prefer="count=exact")
    assert past_end.status_code == 416
    assert past_end.json()["code"] == "PGRST103"


def test_count_exact_with_head(client: Client, small_tenancy: dict[str, str]) -> None:
    result = client.table("twins").select("*", count="exact", head=True).eq("creator_id", "a.1").execute()
    assert result.count == 2
    assert result.data == []


def test_offset_past_the_end_with_count_is_an_error_like_postgrest(
    client: Client, small_tenancy: dict[str, str]
) -> None:
    with pytest.raises(APIError) as excinfo:
        client.table("twins").select("id", count="exact").range(10, 19).execute()
    assert excinfo.value.code == "PGRST103"
    # Without a count PostgREST cannot know, and answers an empty page.
    assert client.table("twins").select("id").range(10, 19).execute().data == []


# --- writes ---------------------------------------------------------------------------------------------------------


def test_insert_one_and_many_and_upsert(client: Client, database_url: str) -> None:
    created = client.table("creators").insert({"id": "c1", "name": "One"}).execute()
    assert created.data == [{"id": "c1", "name": "One"}]
    many = (
        client.table("twins")
        .insert(
            [
                {"id": "x1", "creator_id": "c1", "name": "X1"},
                {"id": "x2", "creator_id": "c1"},
            ]
        )
        .execute()
    )
    assert many.data == [{"id": "x1", "creator_id": "c1", "name": "X1"}, {"id": "x2", "creator_id": "c1", "name": None}]

    client.table("twins").upsert({"id": "x2", "creator_id": "c1", "name": "renamed"}).execute()
    assert client.table("twins").select("name").eq("id", "x2").single().execute().data == {"name": "renamed"}

    with pytest.raises(APIError) as duplicate:
        client.table("creators").insert({"id": "c1"}).execute()
    assert duplicate.value.code == "23505"
    with pytest.raises(APIError) as orphan:
        client.table("twins").insert({"id": "x3", "creator_id": "missing"}).execute()
    assert orphan.value.code == "23503"
    assert _twin_ids(database_url) == ["x1", "x2"]


# --- errors and safety ----------------------------------------------------------------------------------------------


def test_unknown_table_is_api_error_with_postgrest_code(client: Client, small_tenancy: dict[str, str]) -> None:
    with pytest.raises(APIError) as excinfo:
        client.table("twinz").select("*").execute()
    assert excinfo.value.code == "PGRST205"
    assert "public.twinz" in (excinfo.value.message or "")
    assert excinfo.value.hint == "Perhaps you meant the table 'public.twins'"


def test_unknown_column_and_bad_filter(client: Client, small_tenancy: dict[str, str]) -> None:
    with pytest.raises(APIError) as column:
        client.table("twins").select("id,creator").execute()
    assert column.value.code == "42703"
    with pytest.raises(APIError) as operator:
        client.table("twins").select("id").filter("id", "sideways", "t1").execute()
    assert operator.value.code == "PGRST100"


def test_unexposed_schema_is_refused(client: Client, small_tenancy: dict[str, str]) -> None:
    with pytest.raises(APIError) as excinfo:
        client.schema("pg_catalog").table("pg_authid").select("*").execute()
    assert excinfo.value.code == "PGRST106"


def test_wrong_or_missing_api_key_is_401_and_never_echoed(
    standin: PostgrestStandIn, small_tenancy: dict[str, str]
) -> None:
    wrong_key = "not-the-key-0123456789"
    with pytest.raises(APIError) as excinfo:
        create_client(standin.url, wrong_key).table("twins").select("*").execute()
    assert excinfo.value.code == "401"
    assert excinfo.value.message == "Invalid API key"

    for key in (wrong_key, None):
        response = _raw(standin, "twins?select=id", key=key)
        assert response.status_code == 401
        assert KEY not in response.text
        assert wrong_key not in response.text


@pytest.mark.parametrize(
    "attack",
    [
        lambda t: t.select("id").eq("id;drop table twins", "x"),
        lambda t: t.select("id;drop table twins"),
        lambda t: t.select('id,"name""; drop table twins; --"'),
        lambda t: t.select("id").order("id;drop table twins"),
        lambda t: t.select("id").filter("id", "eq;drop table twins", "x"),
    ],
)
def test_injection_in_identifiers_is_refused_and_changes_nothing(
    client: Client, database_url: str, small_tenancy: dict[str, str], attack
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(APIError) as excinfo:
        attack(client.table("twins")).execute()
    assert excinfo.value.code in ("42703", "PGRST100")
    assert _twin_ids(database_url) == sorted(small_tenancy)


def test_injection_in_values_is_just_a_value(client: Client, database_url: str, small_tenancy: dict[str, str]) -> None:
    for value in ("x'; drop table twins; --", "t1' OR '1'='1", "t1) OR (1=1"):
        assert client.table("twins").select("id").eq("id", value).execute().data == []
        assert client.table("twins").select("id").in_("id", [value, "t1"]).execute().data == [{"id": "t1"}]
    assert _twin_ids(database_url) == sorted(small_tenancy)


def test_methods_outside_the_subset_are_refused(standin: PostgrestStandIn, small_tenancy: dict[str, str]) -> None:
    # PATCH/DELETE are not part of the stand-in: refused rather than half-supported.
    response = httpx.delete(f"{standin.url}/rest/v1/twins?id=eq.t1", headers={"apikey": KEY})
    assert response.status_code == 405
    assert response.json()["code"] == "PGRST117"


# --- CLI ------------------------------------------------------------------------------------------------------------
