"""Jobs that write text (issue 17), the pure parts: a record's text and fields, the token estimate, the verdict on
records without text and on the text search, the spec's rules, the integrated index's shape, and the embedders."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsmigrate.orchestrator.errors import PlanError, SpecError
from nsmigrate.orchestrator.planning.costs import estimate
from nsmigrate.orchestrator.planning.plan import NamespacePlan
from nsmigrate.orchestrator.planning.target_indexes import IndexInfo, IndexShape, plan_target_index
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.text import (
    as_text_record,
    check_text_target,
    estimate_tokens,
    record_text,
    split_by_text,
    text_fields,
)
from nsmigrate.orchestrator.spec.jobspec import SHIPPED_EMBEDDERS, JobSpec, parse_spec
from nsmigrate.orchestrator.verification.comparisons import Report, text_search_summary
from nsmigrate.workers.transfer.embedders import (
    HashingEmbedder,
    open_embedder,
    register_embedder,
    registered_embedders,
)
from nsmigrate.workers.transfer.text_writes import for_target, records_per_request, tokens_of
from nsmigrate_sandbox.embedding import model_tokens


def spec(target: dict[str, Any] | None = None, **fields: Any) -> JobSpec:
    data: dict[str, Any] = {
        "name": "text-job",
        "source": {"kind": "pinecone", "index": "src"},
        "target": {"kind": "pinecone", "index": "dst", **(target or {})},
    }
    return parse_spec(data | fields)


INTEGRATED = {"records": {"text_from": "text", "field": "chunk_text"}}


# --- text and fields ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "text"),
    [
        ({"text": "a river"}, "a river"),
        ({"text": "   "}, None),
        ({"text": ""}, None),
        ({"text": 7}, None),
        ({"text": ["a", "b"]}, None),
        ({"other": "x"}, None),
        ({}, None),
    ],
)
def test_a_records_text_is_a_string_with_something_in_it(metadata: dict[str, Any], text: str | None) -> None:
    assert record_text(metadata, "text") == text


def test_records_without_text_are_set_aside_by_id_in_order() -> None:
    records = [
        Record("a", [], {"text": "x"}),
        Record("b", [], {}),
        Record("c", [], {"text": "y"}),
        Record("d", [], {"text": " "}),
    ]
    split = split_by_text(records, "text")
    assert [r.id for r in split.with_text] == ["a", "c"] and split.without_text == ["b", "d"]


def test_text_fields_move_the_text_under_the_index_field_and_keep_the_rest() -> None:
    metadata = {"text": "hello", "source": "doc-1", "chunk": 2}
    assert text_fields(metadata, "text", "chunk_text") == {"source": "doc-1", "chunk": 2, "chunk_text": "hello"}
    assert text_fields({"chunk_text": "hi", "n": 1}, "chunk_text", "chunk_text") == {"chunk_text": "hi", "n": 1}
    record = as_text_record(Record("x", [0.1, 0.2], metadata), "text", "chunk_text")
    assert record.values == () and record.metadata["chunk_text"] == "hello"
    with pytest.raises(ValueError, match="without text"):
        text_fields({"n": 1}, "text", "chunk_text")


@given(st.text(max_size=400))
def test_the_token_estimate_is_never_below_what_the_local_models_count(text: str) -> None:
    assert estimate_tokens(text) >= len(model_tokens(text, None))


# --- the verdict --------------------------------------------------------------------------------------------------


def test_records_without_text_fail_verification_unless_skipped_and_are_named_either_way() -> None:
    report = Report(source_namespace="ns", source_count=10, target_count=8, unwritable_reason="no text: …")
    report.add_unwritable(["b", "a"])
    assert report.expected_target_count == 8
    assert not report.passed and "2 source ids were not written" in report.reasons()[0] and "'a'" in report.reasons()[0]
    report.unwritable_fail = False
    assert report.passed and "2 without text, not written" in report.summary and "counts 8=8" in report.summary
    assert report.to_json()["unwritable_ids"] == ["a", "b"]


def test_a_target_holding_more_than_the_records_with_text_fails_the_count() -> None:
    report = Report(source_namespace="ns", source_count=10, target_count=10, unwritable_fail=False)
    report.add_unwritable(["a"])
    assert any("less 1 without text" in r for r in report.reasons())


@pytest.mark.parametrize(("found", "passed"), [([True] * 9 + [False], True), ([True] * 8 + [False] * 2, False)])
def test_the_text_search_passes_at_the_minimum_hit_rate(found: list[bool], passed: bool) -> None:
    summary = text_search_summary(found, top_k=10, min_hit_rate=0.9)
    assert summary["passed"] is passed and summary["samples"] == 10
    report = Report(source_namespace="ns", text_search=summary)
    assert report.passed is passed
    assert ("text search found 8 of 10" in " ".join(report.reasons())) is not passed


# --- the spec -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "fields", "message"),
    [
        ({"create": {"model": "llama-text-embed-v2"}}, {}, "`create.model` makes an integrated index"),
        (INTEGRATED, {"reembed": {"dimension": 8}}, "not both"),
        ({"create": {"dimension": 16}}, {"reembed": {"dimension": 8}}, "differs from reembed.dimension 8"),
        ({}, {"source": {"kind": "pinecone", "index": "src", **INTEGRATED}}, "only a target is written as text"),
        (INTEGRATED, {"strategy": "collection", "enrich": {}}, "target.records and reembed need `fleet`"),
        # misspelt, it failed each batch once the job was written
        ({}, {"reembed": {"dimension": 8, "embedder": "hashng"}}, "no embedder named 'hashng': use hashing, or a"),
    ],
)
def test_text_specs_that_cannot_work_are_refused(target: dict[str, Any], fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(target, **fields)


def test_a_text_job_says_where_its_text_comes_from() -> None:
    assert spec(INTEGRATED).text_from == "text"
    assert spec(reembed={"dimension": 8, "text_from": "body"}).text_from == "body"
    assert spec().text_from is None
    assert records_per_request(spec(INTEGRATED)) == 96 and records_per_request(spec()) == 1000


def test_a_reembedding_target_must_have_its_dimension() -> None:
    check_text_target(spec(reembed={"dimension": 8}), "dst", 8)
    check_text_target(spec(reembed={"dimension": 8}), "dst", 0)  # not known yet
    with pytest.raises(PlanError, match="reembed makes 8-dimension vectors, target dst has 16"):
        check_text_target(spec(reembed={"dimension": 8}), "dst", 16)


# --- the integrated index's shape -----------------------------------------------------------------------------------


class Control:
    def __init__(self, *infos: IndexInfo) -> None:
        self.infos = {i.name: i for i in infos}

    def describe_index(self, name: str) -> IndexInfo | None:
        return self.infos.get(name)

    def create_index(self, name: str, shape: IndexShape) -> IndexInfo:
        raise AssertionError("planning creates nothing")


def integrated_spec() -> JobSpec:
    return spec({"create": {"model": "llama-text-embed-v2"}, **INTEGRATED})


def test_an_integrated_target_is_planned_for_its_model_whatever_the_sources_dimension() -> None:
    planned = plan_target_index(integrated_spec(), "src", 3072, "dotproduct", Control())
    assert planned is not None and planned.action == "create"
    shape = planned.shape
    assert (shape.model, shape.text_field, shape.dimension, shape.metric) == (
        "llama-text-embed-v2",
        "chunk_text",
        0,
        "",
    )
    assert "integrated: model llama-text-embed-v2 embeds field 'chunk_text'" in planned.describe()


def test_an_existing_index_is_used_only_with_the_same_model_and_field() -> None:
    same = IndexInfo(
        "dst", None, "cosine", "serverless", True, "Ready", model="llama-text-embed-v2", text_field="chunk_text"
    )
    planned = plan_target_index(integrated_spec(), "src", 3072, "cosine", Control(same))
    assert planned is not None and planned.action == "use"
    plain = IndexInfo("dst", 1024, "cosine", "serverless", True, "Ready")
    with pytest.raises(PlanError, match="no integrated model, not model llama-text-embed-v2 embedding 'chunk_text'"):
        plan_target_index(integrated_spec(), "src", 3072, "cosine", Control(plain))


def test_an_existing_target_written_as_text_must_embed_that_field() -> None:
    text_only = spec(INTEGRATED)  # no create: the index must exist and embed chunk_text
    same = IndexInfo("dst", None, "cosine", "serverless", True, "Ready", model="m", text_field="chunk_text")
    assert plan_target_index(text_only, "src", 8, "cosine", Control(same)) is None
    other = IndexInfo("dst", None, "cosine", "serverless", True, "Ready", model="m", text_field="body")
    with pytest.raises(PlanError, match=r"embeds field 'body', but target\.records\.field is 'chunk_text'"):
        plan_target_index(text_only, "src", 8, "cosine", Control(other))
    with pytest.raises(PlanError, match="has no integrated embedding"):
        plan_target_index(text_only, "src", 8, "cosine", Control(IndexInfo("dst", 8, "cosine", "serverless", True, "")))
    with pytest.raises(PlanError, match="does not exist"):
        plan_target_index(text_only, "src", 8, "cosine", Control())


def test_a_reembedding_target_is_created_with_the_new_dimension() -> None:
    planned = plan_target_index(spec({"create": {}}, reembed={"dimension": 32}), "src", 16, "cosine", Control())
    assert planned is not None and (planned.shape.dimension, planned.shape.metric) == (32, "cosine")


# --- embedders and what a copy writes ---------------------------------------------------------------------------------


def test_the_hashing_embedder_is_deterministic_unit_length_and_finds_shared_words() -> None:
    embedder = HashingEmbedder(64)
    a, b, c = (embedder.vector(t) for t in ("river budget lantern", "river budget orbit", "piano ferry"))
    assert np.allclose(a, HashingEmbedder(64).vector("river budget lantern")) and a.shape == (64,)
    assert np.isclose(np.linalg.norm(a), 1.0) and float(a @ b) > float(a @ c)


def test_embedders_are_found_by_name_or_dotted_path_and_must_have_the_asked_dimension() -> None:
    assert open_embedder("hashing", 12).dimension == 12
    assert (
        open_embedder("nsmigrate.workers.transfer.embedders:HashingEmbedder", 12).embed(["x"])[0]
        == HashingEmbedder(12).embed(["x"])[0]
    )
    with pytest.raises(SpecError, match="no embedder named 'nope'"):
        open_embedder("nope", 12)
    with pytest.raises(SpecError, match="cannot be loaded"):
        open_embedder("no_such_module:make", 12)
    assert set(SHIPPED_EMBEDDERS) <= set(registered_embedders())  # what a spec accepts by name, each one here
    register_embedder("fixed-8", lambda _dimension: HashingEmbedder(8))
    with pytest.raises(SpecError, match="makes 8-dimension vectors, the spec asks for 12"):
        open_embedder("fixed-8", 12)


def test_a_copy_writes_text_records_or_reembedded_vectors_and_sets_aside_records_without_text() -> None:
    routed = {"ns": [Record("a", [1.0], {"text": "river", "n": 1}), Record("b", [1.0], {"n": 2})]}
    written, unwritable = for_target(spec(INTEGRATED), routed)
    assert unwritable == {"ns": ["b"]}
    assert [(r.id, r.metadata) for r in written["ns"]] == [("a", {"n": 1, "chunk_text": "river"})]
    assert tokens_of(spec(INTEGRATED), written["ns"]) == estimate_tokens("river")
    reembedded, _ = for_target(spec(reembed={"dimension": 6}), routed)
    assert np.allclose(reembedded["ns"][0].values, HashingEmbedder(6).vector("river"))
    assert reembedded["ns"][0].metadata == {"text": "river", "n": 1}
    assert for_target(spec(), routed) == (routed, {})
    assert tokens_of(spec(), routed["ns"]) is None


def test_the_plan_counts_96_text_records_per_upsert_without_values() -> None:
    runs = [NamespacePlan("ns", "ns", vector_count=960, batches=10)]
    vectors = estimate(spec(batch_size=96), runs, dimension=3072)
    texts = estimate(spec(INTEGRATED, batch_size=96), runs, dimension=3072)
    assert texts.upsert_requests == 10 and texts.upsert_requests <= vectors.upsert_requests
    assert texts.bytes < vectors.bytes  # text records carry no values
