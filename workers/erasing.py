"""Erasing one creator's data: every namespace that parses to that creator (its twin namespaces and its
creator-wide namespace), found by parsing the names, never by prefix — erasing ``a.1`` never touches ``a.10``.

Each deletion is written to the audit log before and after it happens, and the namespace is checked empty afterwards
(Pinecone's counts lag, so the check polls with a deadline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from orchestrator import jobs
from orchestrator.models import JobKind
from orchestrator.naming import namespaces_of_creator
from workers.stores.base import VectorStore


@dataclass(frozen=True)
class ErasePlan:
    creator_id: str
    store: str
    namespaces: dict[str, int]  # namespace → vector count before erasure


def plan_erase(store: VectorStore, creator_id: str) -> ErasePlan:
    """What ``erase`` would delete; raises PlanError for an id that cannot be a creator id."""
    inventory = store.namespaces()
    mine = namespaces_of_creator(creator_id, sorted(inventory))
    return ErasePlan(creator_id, store.name, {ns: inventory[ns] for ns in mine})


def erase_creator(
    db: jobs.Database,
    store: VectorStore,
    plan: ErasePlan,
    spec: dict[str, Any],
    *,
    actor: str | None = None,
    settle_timeout_s: float = 30,
) -> dict[str, Any]:
    """Delete every namespace in ``plan`` and record it as a job of kind ``erase``. Returns a summary with any
    namespace still non-empty after ``settle_timeout_s`` listed under ``not_empty``. ``store`` retries its own calls
    (``workers.stores.open_retrying_store``, as the CLI passes); nothing here retries."""
    job_id = jobs.create_action_job(
        db,
        f"erase-{plan.creator_id}",
        JobKind.ERASE,
        spec,
        actor,
        creator_id=plan.creator_id,
        store=plan.store,
        namespaces=plan.namespaces,
    )
    for namespace, count in plan.namespaces.items():
        store.delete_namespace(namespace)
        jobs.record_event(
            db,
            "namespace_erased",
            actor or jobs.default_actor(),
            job_id,
            namespace=namespace,
            vectors=count,
            creator_id=plan.creator_id,
        )
    not_empty = _still_present(store, list(plan.namespaces), settle_timeout_s)
    jobs.finish_action_job(db, job_id, actor, erased=len(plan.namespaces), not_empty=not_empty)
    return {
        "job_id": job_id,
        "erased": sorted(plan.namespaces),
        "not_empty": not_empty,
        "vectors": sum(plan.namespaces.values()),
    }


def _still_present(store: VectorStore, namespaces: list[str], timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = [ns for ns in namespaces if store.count(ns) > 0]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
