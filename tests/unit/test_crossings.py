"""Which other jobs a new job may cross (``stores_may_cross``): only those reading from its target or writing into its
source, compared by the stores' identities as the job table keeps their specs."""

from __future__ import annotations

from typing import Any

from nsmigrate.orchestrator.planning.crossings import stores_may_cross
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
