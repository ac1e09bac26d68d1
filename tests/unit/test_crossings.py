"""Which other jobs a new job may cross (``stores_may_cross``): only those reading from its target or writing into its
source, compared by the stores' identities as the job table keeps their specs; and which target namespaces it is
refused (``check_shared_targets``): one another job's copy still writes into, in the same store."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.planning.crossings import OpenRun, check_shared_targets, stores_may_cross
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec

A, B, C = (f"https://idx-{name}.svc.example.pinecone.io" for name in "abc")


def job(source: str, target: str) -> dict[str, Any]:
    return {"name": "j", "source": {"kind": "pinecone", "host": source}, "target": {"kind": "pinecone", "host": target}}


def test_a_job_reading_this_target_or_writing_this_source_may_cross() -> None:
    spec = parse_spec(job(A, B))

    assert stores_may_cross(spec, job(B, C))  # its cleanup would delete what this job writes
    assert stores_may_cross(spec, job(C, A))  # it still writes what this job reads
    assert stores_may_cross(spec, job(B, A))


def test_jobs_on_other_stores_or_the_same_direction_do_not() -> None:
    spec = parse_spec(job(A, B))

    assert not stores_may_cross(spec, job(A, B))  # the same copy again: neither reads what the other writes
    assert not stores_may_cross(spec, job(C, C))
    assert not stores_may_cross(spec, {"name": "old"})  # a spec without stores (as an older table may hold)


def test_the_same_index_spelt_otherwise_is_the_same_store() -> None:
    spec = parse_spec(job(A, B))

    assert stores_may_cross(spec, job(B + ":443/", C))


def into(namespace: str, vectors: int = 3) -> Plan:
    return Plan([NamespacePlan("twin-b", namespace, vectors, 1)], Estimate(0, 0, 0, 0, 0, 0.0))


def other_run(target_host: str, still_writing: bool, namespace: str = "merged") -> OpenRun:
    return OpenRun(7, "first", job(A, target_host), "twin-a", frozenset({namespace}), still_writing)


def test_a_namespace_another_copy_still_writes_into_is_refused_unless_overwriting_is_allowed() -> None:
    spec = parse_spec(job(C, B))

    with pytest.raises(PlanError, match="'merged' is also written by unfinished job 7 \\(first\\)"):
        check_shared_targets(spec, into("merged"), [other_run(B, still_writing=True)])
    check_shared_targets(parse_spec({**job(C, B), "allow_id_overwrite": True}), into("merged"), [other_run(B, True)])


def test_a_copy_that_ended_another_store_another_namespace_or_nothing_to_write_is_not_refused() -> None:
    spec = parse_spec(job(C, B))

    check_shared_targets(spec, into("merged"), [other_run(B, still_writing=False)])  # left to the target's count
    check_shared_targets(spec, into("merged"), [other_run(C, still_writing=True)])
    check_shared_targets(spec, into("merged"), [other_run(B, still_writing=True, namespace="elsewhere")])
    check_shared_targets(spec, into("merged", vectors=0), [other_run(B, still_writing=True)])
