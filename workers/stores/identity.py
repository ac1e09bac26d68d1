"""Whether a job's source and target are one store, asked of the servers, for the steps that delete (cleanup,
rollback): deleting a namespace of one store must never delete the only copy kept in "the other" when they are one.

The identities come from ``orchestrator.spec.store_identity`` (a host without its spelling; a Postgres server's
system identifier, database and schema). A Postgres answer is proof. Two Pinecone hosts that differ may still be one
index (a DNS alias, a proxy): a marker written through the source's client, in a scratch namespace, and looked for
through the target's proves it either way, and is removed afterwards. What cannot be established counts as one store.
A proof that they are two is kept for the job's other namespaces a while (``PROOF_KEPT_S``): one marker a job and
process, not one a namespace; that they are, or may be, one is never kept.
"""

from __future__ import annotations

import time
import uuid

from nsmigrate.orchestrator.errors import NsmigrateError
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.spec.store_identity import spec_identity
from nsmigrate.workers.stores.base import Store

#: Between two reads of the marker while it becomes readable (bounded by the setting identity_marker_timeout_s).
_MARKER_POLL_S = 0.25
#: How long a marker's proof that a job's source and target are two indexes stands for its other namespaces in this
#: process: a cleanup of 2,000 same-named namespaces wrote 2,000 markers (four requests and a scratch namespace each).
PROOF_KEPT_S = 600.0

#: (job, source identity, target identity) → until when a marker proved them two indexes.
_proven: dict[tuple[int, str, str], float] = {}


def _marker_seen(source: Store, target: Store, timeout_s: float) -> bool:
    """Write a marker through ``source`` and say whether ``target`` reads it (the marker is deleted either way).
    The marker may take up to ``timeout_s`` to be readable through the source (Pinecone is eventually consistent)."""
    namespace = f"nsmigrate-identity-{uuid.uuid4().hex}"
    marker = Record(id="marker", values=[1.0] * source.dimension(), metadata={"nsmigrate": "identity marker"})
    source.upsert(namespace, [marker])
    try:
        deadline = time.monotonic() + timeout_s
        while not source.fetch(namespace, [marker.id]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the marker was not readable through the source after {timeout_s:.0f} s")
            time.sleep(_MARKER_POLL_S)
        return bool(target.fetch(namespace, [marker.id]))
    finally:
        source.delete_namespace(namespace)


def one_store_problem(
    spec: JobSpec,
    source: Store,
    target: Store,
    *,
    marker: bool = True,
    marker_timeout_s: float,
    job_id: int | None = None,
) -> str | None:
    """None when ``source`` and ``target`` are proven to be two stores; else why they are, or may be, one.
    ``marker=False`` (a dry run, which writes nothing) stops at the servers' identities: two Pinecone hosts that
    differ then count as two stores, for the deleting step to prove with its marker. ``job_id``: the job whose step
    asks, whose earlier proof (``PROOF_KEPT_S``) then stands."""
    if spec_identity(spec.source) == spec_identity(spec.target):
        return f"source and target are the same store ({spec_identity(spec.source)})"
    if spec.source.kind != spec.target.kind:
        return None
    try:
        source_id, target_id = source.identity(), target.identity()
        if source_id == target_id:
            return f"source and target are the same store ({source_id})"
        if spec.source.kind == "pgvector" or not marker:
            return None
        proof = None if job_id is None else (job_id, source_id, target_id)
        if proof is not None and _proven.get(proof, 0.0) > time.monotonic():
            return None
        if not _marker_seen(source, target, marker_timeout_s):
            if proof is not None:
                now = time.monotonic()
                for stale in [k for k, until in _proven.items() if until <= now]:  # a long-lived worker's old jobs
                    _proven.pop(stale, None)
                _proven[proof] = now + PROOF_KEPT_S
            return None
    except (NsmigrateError, TimeoutError) as e:
        return f"whether source and target are one store could not be established ({e})"
    return (
        f"source and target are the same store: a marker written through {source.name} was read through {target.name}"
    )
