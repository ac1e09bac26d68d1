"""Integrated indexes in the local data plane (``sandbox.embedding``), through the real SDK and against the 2026-04
OpenAPI files: created for a model, records upserted as text (≤ 96 per request, 2 MB, the text field required),
searched by text, vector or id, embedding tokens per minute limited with 429 + Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_core import OpenAPI
from pinecone import ApiError, Pinecone

from nsmigrate_sandbox.embedding import HOSTED_MODELS, IntegratedEmbed
from nsmigrate_sandbox.pinecone_server import Faults, IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import CONTROL_HOST_URL, DATA_HOST_URL, load_api
from tests.integration.test_pinecone_conformance import call
from tests.sdk_internals import set_sdk_retries

EMBED = IntegratedEmbed(model="llama-text-embed-v2", field="chunk_text", dimension=384, metric="cosine")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("texts", 384, "cosine", embed=EMBED), IndexSpec("plain", 4)]


@pytest.fixture(scope="module")
def apis() -> dict[str, OpenAPI]:
    """Pinecone's 2026-04 OpenAPI files: ``data`` and ``control`` plane."""
    return {plane: load_api(f"db_{plane}_2026-04") for plane in ("data", "control")}


def index(sandbox: PineconeSandbox, name: str = "texts") -> Any:
    """An SDK client that shows every answer as it is (its own retries off)."""
    client = Pinecone(api_key="k").Index(host=sandbox.host(name))
    set_sdk_retries(client, 0)
    return client


def records(n: int, **extra: Any) -> list[dict[str, Any]]:
    words = ["river", "budget", "lantern", "orbit", "meadow", "sonnet", "quartz", "harbor", "piano", "ferry"]
    return [
        {"_id": f"r{i}", "chunk_text": f"{words[i % 10]} {words[(i * 3 + 1) % 10]} note {i}", "n": i, **extra}
        for i in range(n)
    ]


def test_records_are_embedded_kept_as_fields_and_found_by_their_text(sandbox: PineconeSandbox) -> None:
    idx = index(sandbox)
    assert idx.upsert_records(namespace="docs", records=records(20, kind="memo")).record_count == 20
    fetched = idx.fetch(ids=["r7"], namespace="docs").vectors["r7"]
    assert fetched.metadata == {"chunk_text": "harbor lantern note 7", "n": 7, "kind": "memo"}
    assert len(fetched.values) == 384
    sandbox.settle()  # searches lag writes
    hits = idx.search(namespace="docs", top_k=3, inputs={"text": "harbor lantern note 7"}).result.hits
    assert hits[0].id == "r7" and hits[0].fields["kind"] == "memo"
    only_text = idx.search(namespace="docs", top_k=1, id="r3", fields=["chunk_text"]).result.hits
    assert only_text[0].id == "r3" and set(only_text[0].fields) == {"chunk_text"}
    by_filter = idx.search(namespace="docs", top_k=5, inputs={"text": "note"}, filter={"n": {"$lt": 2}})
    assert {h.id for h in by_filter.result.hits} == {"r0", "r1"}


def test_the_default_namespace_is_named_default_on_the_records_api(sandbox: PineconeSandbox) -> None:
    index(sandbox).upsert_records(namespace="__default__", records=records(2))
    assert sandbox.count("texts", "") == 2


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (records(97), "contains 97 records; the maximum is 96"),
        ([{"_id": "a", "text": "wrong field"}], "Record 'a' is missing the field 'chunk_text'"),
        ([{"_id": "b", "chunk_text": "  "}], "Record 'b' is missing the field 'chunk_text'"),
        (records(5, blob="x" * 450_000), "exceeds the maximum supported size of 2MB"),
    ],
    ids=["97-records", "no-text-field", "blank-text", "over-2MB"],
)
def test_upserts_pinecone_refuses_are_refused_whole(
    sandbox: PineconeSandbox, batch: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ApiError) as refused:
        index(sandbox).upsert_records(namespace="docs", records=batch)
    assert refused.value.status_code == 400 and message in str(refused.value.message)
    assert sandbox.count("texts") == 0  # nothing of a refused request was written


def test_96_records_fit_in_one_request(sandbox: PineconeSandbox) -> None:
    index(sandbox).upsert_records(namespace="docs", records=records(96))
    assert sandbox.count("texts", "docs") == 96


def test_records_endpoints_need_an_integrated_index_for_text(sandbox: PineconeSandbox) -> None:
    plain = index(sandbox, "plain")
    with pytest.raises(ApiError, match="Integrated inference is not configured"):
        plain.upsert_records(namespace="docs", records=records(1))
    with pytest.raises(ApiError, match="Integrated inference is not configured"):
        plain.search(namespace="docs", top_k=1, inputs={"text": "river"})
    sandbox.load("plain", "docs", [("p1", [1, 0, 0, 0], {"k": "v"})])
    assert plain.search(namespace="docs", top_k=1, vector=[1, 0, 0, 0]).result.hits[0].id == "p1"


def test_embedding_tokens_per_minute_are_limited_with_retry_after(sandbox: PineconeSandbox) -> None:
    sandbox.set_faults("texts", Faults(embed_tokens_per_min=40))
    idx = index(sandbox)
    idx.upsert_records(namespace="docs", records=records(8))  # 4 words each: 32 tokens
    with pytest.raises(ApiError) as limited:
        idx.upsert_records(namespace="docs", records=records(3))  # 12 more do not fit in the minute
    assert limited.value.status_code == 429
    assert "embedding tokens per minute (40)" in str(limited.value.message)
    assert int(limited.value.headers["retry-after"]) >= 1
    assert sandbox.count("texts", "docs") == 8


def test_search_records_answers_as_the_reference_spec_says(apis: dict[str, OpenAPI], sandbox: PineconeSandbox) -> None:
    data_api = apis["data"]
    index(sandbox).upsert_records(namespace="docs", records=records(4))
    sandbox.settle()  # searches lag writes
    base = sandbox.host("texts")
    body = {"query": {"inputs": {"text": "orbit note 3"}, "top_k": 2}, "fields": ["chunk_text"]}
    got = call(data_api, base, DATA_HOST_URL, "POST", "/records/namespaces/docs/search", body=body)
    assert got["result"]["hits"][0]["_id"] == "r3" and got["usage"]["embed_total_tokens"] == 3
    zero_top_k = {"query": {"inputs": {"text": "x"}, "top_k": 0}}
    error = call(data_api, base, DATA_HOST_URL, "POST", "/records/namespaces/docs/search", body=zero_top_k, expect=400)
    assert set(error) == {"code", "message", "details"}


def test_create_for_model_answers_as_the_reference_spec_says(
    apis: dict[str, OpenAPI], sandbox: PineconeSandbox
) -> None:
    control_api = apis["control"]
    body = {
        "name": "conf-integrated",
        "cloud": "aws",
        "region": "us-east-1",
        "embed": {"model": "multilingual-e5-large", "field_map": {"text": "chunk_text"}},
    }
    created = call(
        control_api, sandbox.control_host, CONTROL_HOST_URL, "POST", "/indexes/create-for-model", body=body, expect=201
    )
    try:
        assert created["embed"]["model"] == "multilingual-e5-large" and created["dimension"] == 1024
        spec = sandbox.service("conf-integrated").spec
        assert spec.embed is not None and spec.embed.field == "chunk_text"
    finally:
        sandbox.remove_index("conf-integrated")


def test_the_sdk_creates_and_describes_an_integrated_index(sandbox: PineconeSandbox) -> None:
    pc = Pinecone(api_key="k", host=sandbox.control_host)
    embed = {"model": "llama-text-embed-v2", "field_map": {"text": "body"}, "dimension": 512}
    try:
        pc.create_index_for_model(name="sdk-integrated", cloud="aws", region="us-east-1", embed=embed, timeout=-1)
        described = pc.describe_index("sdk-integrated")
        assert described.embed.model == "llama-text-embed-v2" and described.embed.field_map == {"text": "body"}
        assert sandbox.service("sdk-integrated").spec.dimension == 512
        with pytest.raises(ApiError, match="does not support dimension 999"):
            pc.create_index_for_model(
                name="sdk-bad", cloud="aws", region="us-east-1", embed={**embed, "dimension": 999}, timeout=-1
            )
        with pytest.raises(ApiError, match="Model 'no-such-model' not found"):
            pc.create_index_for_model(
                name="sdk-bad", cloud="aws", region="us-east-1", embed={**embed, "model": "no-such-model"}, timeout=-1
            )
    finally:
        if "sdk-integrated" in sandbox.names():
            sandbox.remove_index("sdk-integrated")
    assert set(HOSTED_MODELS) >= {"multilingual-e5-large", "llama-text-embed-v2"}
