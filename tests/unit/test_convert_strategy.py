"""Pinecone's convert as a strategy, the pure part: what a spec may ask of it, the plan (and the line a fleet plan
shows about it: applies, or why not), its next step from what the control plane says, and its phases."""

from __future__ import annotations

import re
from typing import Any

import pytest

from nsmigrate.orchestrator.errors import PlanError, SpecError, StateError
from nsmigrate.orchestrator.jobs.lifecycle import check_phase_transition
from nsmigrate.orchestrator.planning.convert_strategy import (
    ConversionInfo,
    convert_offer,
    next_step,
    plan_convert,
    store_refusals,
)
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.target_indexes import IndexInfo
from nsmigrate.orchestrator.spec.convert import convert_refusals
from nsmigrate.orchestrator.spec.jobspec import parse_spec

SOURCE = {"kind": "pinecone", "index": "legacy"}
TARGET = {"kind": "pinecone", "index": "docs", "documents": {"text_fields": ["chunk_text"]}}
BASE: dict[str, Any] = {"name": "convert", "strategy": "convert", "source": SOURCE, "target": TARGET}
SERVERLESS = IndexInfo("legacy", 8, "cosine", "serverless", True, "Ready", cloud="gcp", region="us-central1")
POD = IndexInfo("legacy", 8, "cosine", "pod", True, "Ready")
DOCUMENTS = IndexInfo("legacy", 8, "cosine", "serverless", True, "Ready", dense_field="embedding")
INTEGRATED = IndexInfo("legacy", 1024, "cosine", "serverless", True, "Ready", model="llama-text-embed-v2")
STARTING = IndexInfo("legacy", 8, "cosine", "serverless", False, "Initializing")
INVENTORY = Inventory("legacy", 8, {"": 30, "empty": 0, "a": 250}, "cosine")


def fleet(**change: Any) -> dict[str, Any]:
    return {**BASE, "strategy": "fleet", "enrich": {"migrated_from": False}, **change}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"routing": {"mode": "explicit", "map": {"a": "b"}}}, "routing mode explicit (convert keeps every namespace"),
        ({"namespaces": {"exclude": ["a"]}}, "a namespace selection (convert copies every namespace)"),
        ({"enrich": {"constants": {"v": 2}}}, "enrich (convert copies records unchanged"),
        ({"target": {**TARGET, "documents": {"rename": {"_source": "source"}}}}, "target.documents.rename (convert"),
        ({"target": {"kind": "pinecone", "index": "docs"}}, "the target is not a document index (convert makes one"),
        ({"target": {"kind": "pgvector"}}, "the target is pgvector"),
        ({"source": {"kind": "pgvector"}}, "the source is pgvector (convert reads a Pinecone serverless index)"),
        ({"source": {"kind": "pinecone", "host": "http://127.0.0.1:1"}}, "the source is named by `host`"),
        ({"target": {**TARGET, "index": None, "host": "http://127.0.0.1:1"}}, "the target is named by `host`"),
        ({"target": {**TARGET, "api_key_env": "OTHER_KEY"}}, "convert creates the new index in the source's project"),
    ],
)
def test_the_spec_refuses_what_convert_cannot_do(change: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=re.escape(words)) as info:
        parse_spec({**BASE, **change})
    assert "use strategy `fleet`" in str(info.value)
    # The same reasons are what a fleet plan says about convert (the fleet does these jobs).
    if change.get("enrich") is None:
        assert any(words in reason for reason in convert_refusals(parse_spec(fleet(**change))))


def test_a_convert_spec_enriches_nothing_and_reads_back_as_stored() -> None:
    spec = parse_spec({**BASE, "cleanup": {"mode": "manual"}})
    assert (spec.enrich.creator_fields, spec.enrich.migrated_from, spec.enrich.constants) == (False, False, {})
    assert convert_refusals(spec) == []
    assert parse_spec(spec.model_dump(mode="json", by_alias=True)) == spec  # as stored in the job table


def test_the_plan_converts_every_namespace_holding_records_into_a_new_index_where_the_source_runs() -> None:
    spec = parse_spec({**BASE, "target": {**TARGET, "create": {"tags": {"team": "search"}}}})
    plan, index = plan_convert(spec, INVENTORY, SERVERLESS, None)

    assert [(r.source_namespace, r.target_namespace, r.vector_count, r.batches) for r in plan.runs] == [
        ("", "", 30, 0),
        ("a", "a", 250, 0),
    ]
    assert plan.warnings == ["namespace empty is empty: Pinecone's convert skips it"]
    assert (plan.estimate.upsert_requests, plan.estimate.write_units) == (0, 0)
    assert plan.estimate.list_requests == 2 * (1 + 3)  # the sync and the verification list the source
    assert (index.name, index.action) == ("docs", "create")
    shape = index.shape
    assert (shape.cloud, shape.region, shape.dimension, shape.metric) == ("gcp", "us-central1", 8, "cosine")
    assert (shape.dense_field, shape.text_fields) == ("embedding", ("chunk_text",))
    assert dict(shape.tags) == {"team": "search"}


@pytest.mark.parametrize(
    ("described", "existing", "words"),
    [
        (POD, None, "legacy is a pod-based index (Pinecone converts serverless indexes only)"),
        (DOCUMENTS, None, "legacy is a document index already"),
        (INTEGRATED, None, "legacy is an integrated index"),
        (STARTING, None, "legacy is Initializing (convert needs it Ready)"),
        (None, None, "the control plane does not know source index legacy"),
        (SERVERLESS, IndexInfo("docs", 8, "cosine", "serverless", True, "Ready"), "target index docs exists already"),
    ],
)
def test_the_plan_refuses_stores_convert_cannot_take(
    described: IndexInfo | None, existing: IndexInfo | None, words: str
) -> None:
    with pytest.raises(PlanError, match=re.escape(words)) as info:
        plan_convert(parse_spec(BASE), INVENTORY, described, existing)
    assert "use strategy `fleet`" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("create", "words"),
    [
        ({"region": "us-west-2"}, "target.create asks for aws/us-west-2; Pinecone's convert creates the index where"),
        ({"cloud": "gcp", "region": "us-central1", "dimension": 16}, "asks for 16-dim cosine; convert keeps"),
    ],
)
def test_the_plan_refuses_another_place_or_shape_than_the_sources(create: dict[str, Any], words: str) -> None:
    spec = parse_spec({**BASE, "target": {**TARGET, "create": create}})
    with pytest.raises(PlanError, match=re.escape(words)):
        plan_convert(spec, INVENTORY, SERVERLESS, None)


def test_a_fleet_plan_into_a_document_index_says_whether_convert_applies_and_why_not() -> None:
    applies = convert_offer(parse_spec(fleet()), SERVERLESS, "legacy", None, source_asked=True)
    assert applies.startswith("strategy convert applies: Pinecone copies the index itself into a new document index")
    assert "Set `strategy: convert` to use it" in applies

    renamed = parse_spec(fleet(enrich={"migrated_from": True}, routing={"mode": "explicit", "map": {"": "x"}}))
    refused = convert_offer(renamed, POD, "legacy", "docs", source_asked=True)
    assert refused.startswith("strategy convert does not apply: ")
    for reason in ("routing mode explicit", "enrich (", "legacy is a pod-based index", "target index docs exists"):
        assert reason in refused
    # A source the control plane was not asked about (pgvector, by host) is not also called unknown.
    from_pgvector = convert_offer(parse_spec(fleet(source={"kind": "pgvector"})), None, "pg", None, source_asked=False)
    assert from_pgvector == "strategy convert does not apply: the source is pgvector (convert reads a Pinecone " + (
        "serverless index)"
    )
    assert store_refusals(None, "pg", None, source_asked=False) == []


READY = IndexInfo("docs", 8, "cosine", "serverless", True, "Ready")
BUSY = IndexInfo("docs", 8, "cosine", "serverless", False, "Initializing")
BROKEN = IndexInfo("docs", 8, "cosine", "serverless", False, "InitializationFailed")


def conversion(status: str, percent: float = 0.0, error: str | None = None) -> ConversionInfo:
    return ConversionInfo("cj-1", status, "legacy", "docs", percent, error=error)


@pytest.mark.parametrize(
    ("phase", "found", "index", "action", "share"),
    [
        (None, None, None, "start", None),
        (None, conversion("Completed"), READY, "fail", None),  # the target appeared before the job started
        ("converting", None, None, "start", None),  # the request was lost (or its failed index deleted): again
        ("converting", conversion("InProgress", 42.5), BUSY, "wait", 0.425),
        ("converting", conversion("Completed", 100), BUSY, "wait", 1.0),
        ("converting", conversion("Completed", 100), READY, "converted", None),
        ("converting", conversion("Completed", 100), BROKEN, "fail", None),
        ("converting", conversion("Failed", 100, "record 'x' cannot be a document"), BROKEN, "fail", None),
        ("converting", conversion("Cancelled"), BROKEN, "fail", None),
        ("converting", None, READY, "fail", None),  # an index nobody converted into
        ("converted", None, READY, "converted", None),
    ],
)
def test_next_step(
    phase: str | None, found: ConversionInfo | None, index: IndexInfo | None, action: str, share: float | None
) -> None:
    step = next_step(phase, found, index, "docs")
    assert (step.action, step.share) == (action, share)
    assert (step.reason != "") == (action in ("fail", "wait"))


def test_a_failed_conversion_says_why_and_what_to_do() -> None:
    step = next_step("converting", conversion("Failed", 100, "record 'x' has '_a'"), BROKEN, "docs")
    assert step.reason == (
        "Pinecone's conversion cj-1 into docs ended Failed: record 'x' has '_a'; delete index docs (it holds no "
        "data) to free its name, then `nsmigrate retry`"
    )


def test_convert_phases_only_move_forward_and_never_into_the_collections() -> None:
    check_phase_transition(1, None, "converting")
    check_phase_transition(1, "converting", "converted")
    check_phase_transition(1, "converting", "converting")
    with pytest.raises(StateError, match="convert job 1 cannot move from converted to converting"):
        check_phase_transition(1, "converted", "converting")
    with pytest.raises(StateError, match="convert job 1 cannot move from not started to converted"):
        check_phase_transition(1, None, "converted")
    with pytest.raises(StateError, match="convert job 1 cannot move from restoring to converted"):
        check_phase_transition(1, "restoring", "converted")
