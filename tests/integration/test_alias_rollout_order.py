"""Which aliases a rollout step moves, read from the job table (``workers.steps.alias_cutover.ready_routes``): an
alias whose copy has passed verification only since the rollout began (a namespace ``sync --new-namespaces`` added,
one verified late, one that failed and passed again) comes after all the others, so a step repeated then keeps every
alias it moved before."""

from __future__ import annotations

import sqlalchemy as sa

from nsmigrate.orchestrator.cutover import rollout
from nsmigrate.orchestrator.cutover.aliases import alias_routes, moved_by
from nsmigrate.orchestrator.jobs import jobs_and_runs, verdicts
from nsmigrate.orchestrator.jobs.database import Database
from nsmigrate.orchestrator.models import NamespaceRun, RunState
from nsmigrate.orchestrator.planning.plan import Estimate, NamespacePlan, Plan
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.workers.steps.alias_cutover import ready_routes

INDEX = {"kind": "pinecone", "host": "http://127.0.0.1:5081"}  # never called: the job table alone is read
FIRST = [f"twin-{i}" for i in range(12)]
ADDED = [f"late-{i}" for i in range(6)]


def plan_of(namespaces: list[str]) -> Plan:
    return Plan(runs=[NamespacePlan(ns, f"v2-{ns}", 1, 1) for ns in namespaces], estimate=Estimate(0, 0, 0, 0, 0, 0.0))


def verified(db: Database, job_id: int, namespaces: list[str]) -> list[NamespaceRun]:
    """The runs of ``namespaces`` copied, then verified as a verification records its verdict; all the job's runs."""
    runs = {r.source_namespace: r.id for r in jobs_and_runs.runs_of(db, job_id)}
    with db.transaction() as s:
        chosen = NamespaceRun.id.in_([runs[ns] for ns in namespaces])
        s.execute(sa.update(NamespaceRun).where(chosen).values(state=RunState.COPIED))
    for ns in namespaces:
        verdict(db, runs[ns], ns, passed=True)
    return jobs_and_runs.runs_of(db, job_id)


def verdict(db: Database, run_id: int, namespace: str, *, passed: bool) -> None:
    started = verdicts.start_verify(db, run_id)
    assert started is not None and started[0].verifying_since is not None
    report = {"passed": passed, "summary": "every id and value equal" if passed else "3 ids missing"}
    verdicts.finish_verify(db, run_id, namespace, report, passed, "tester", started_at=started[0].verifying_since)


def test_aliases_verified_once_the_rollout_began_come_after_those_a_step_moved(job_table_url: str) -> None:
    db = Database(job_table_url)
    spec = parse_spec({"name": "aliases", "source": INDEX, "target": INDEX, "cutover": {"aliases": "live.{source}"}})
    job_id = jobs_and_runs.create_job(db, spec, plan_of(FIRST), source_label="one", target_label="one")
    on_time, verified_late = FIRST[:-1], FIRST[-1]
    runs = verified(db, job_id, on_time)
    routes, _ = alias_routes("live.{source}", [(r.source_namespace, r.target_namespace) for r in runs])
    ready, late = ready_routes(db, job_id, routes, runs)
    assert late == {} and len(ready) == len(on_time)  # no rollout yet: every alias ranked by its name's hash
    moved = moved_by(ready, 25, late)
    rollout.set_rollout(db, job_id, 25, "tester")

    failed_once = next(r for r in runs if f"live.{r.source_namespace}" in moved)  # a copy a step moved fails once
    verdict(db, failed_once.id, failed_once.source_namespace, passed=False)
    jobs_and_runs.add_runs(db, job_id, plan_of(ADDED), source_label="one", target_label="one")
    runs = verified(db, job_id, [verified_late, *ADDED, failed_once.source_namespace])
    routes, _ = alias_routes("live.{source}", [(r.source_namespace, r.target_namespace) for r in runs])
    ready, late = ready_routes(db, job_id, routes, runs)

    passed_late = [verified_late, *ADDED, failed_once.source_namespace]
    assert sorted(late, key=late.__getitem__) == [f"live.{ns}" for ns in passed_late]  # as they passed
    for percent in (25, 50):
        assert moved - {f"live.{failed_once.source_namespace}"} <= moved_by(ready, percent, late)
    db.dispose()
