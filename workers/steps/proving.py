"""Delete only proven ids: the one step cleanup and rollback take to delete, so that each deletion is proved at the
moment it happens (``orchestrator.verification.proof``), whichever side it deletes from.

Chunk by chunk (≤ 1,000 ids: one fetch of each side, one delete), the originals are fetched from the source
namespace and their copies from the target namespaces the routing sends them to; only ids whose copy exists and
equals its original *now* are deleted — from the source (cleanup: the copy stays) or from the target (rollback: the
original stays, and a copy is deleted only from the namespace its original routes to now, the one it was proved by).
Every request goes through the guarded stores it is given (rate budgets, retries). Where the store keeps row
versions (pgvector), the delete names each row's version as read before its proof: Postgres deletes it only unchanged.

A chunk that deletes holds, from its proof to its delete, the namespace it deletes from and every namespace its proof
reads alone (``guarded.exclusive_hold``, fleet-wide across jobs): two cleanups whose namespaces form a cycle (one
copies ``a`` to ``b``, the other ``b`` to ``a``) cannot both prove against copies the other is deleting — the second
to hold them proves against what the first left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

from nsmigrate.orchestrator.errors import RetryableError, StopAsked
from nsmigrate.orchestrator.limits import DELETE_MAX_IDS, FETCH_MAX_IDS
from nsmigrate.orchestrator.records.vectors import Record
from nsmigrate.orchestrator.routing.route import RouteContext
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.verification.comparisons import fields_comparer
from nsmigrate.orchestrator.verification.delta import route_source
from nsmigrate.orchestrator.verification.proof import Proof, prove_copies
from nsmigrate.workers.stores.base import Store
from nsmigrate.workers.stores.guarded import exclusive_hold
from nsmigrate.workers.transfer.chunking import chunks

#: Answers that say a request was refused before it was carried out: rate limited, or the service unavailable.
_NOT_APPLIED_STATUSES = frozenset({429, 503})
#: Ids per proof: one fetch of each side and one delete.
PROOF_CHUNK_IDS = min(FETCH_MAX_IDS, DELETE_MAX_IDS)


def delete_proven(
    source: Store,
    source_namespace: str,
    target: Store,
    ids: Sequence[str],
    route: RouteContext,
    spec: JobSpec,
    *,
    delete_from: Literal["source", "target"] | None,
    target_namespace: str | None = None,
    total: Proof | None = None,
    stop: Callable[[], bool] | None = None,
    held: Callable[[Sequence[Record]], set[str]] | None = None,
    whole_chunks: bool = False,
    record_held: Callable[[Sequence[str], Mapping[str, Mapping[str, Any]]], None] | None = None,
) -> Proof:
    """Prove ``ids`` chunk by chunk and delete the proven ones right after their chunk was proved.

    Parameters:
        source, source_namespace: where the originals are (a migration's source).
        target: where the copies are; each id is looked up in the namespace ``route`` sends its original to.
        ids: the ids to prove (and delete).
        route: the run's routing context; ``spec`` gives the tolerance and, for a text job, how a copy is judged.
        delete_from: ``"source"`` deletes the originals (cleanup), ``"target"`` the copies in ``target_namespace``
            (rollback), ``None`` only proves (a first pass, a dry run).
        total: the ``Proof`` to fill chunk by chunk (default: a new one), so a caller whose delete failed half-way
            knows what was deleted before the error.
        stop: asked before each chunk; True stops there (an operator's Ctrl-C), ``total`` complete.
        held: which originals the copy held back (an erased creator's: ``erasure.held_back_ids``); they have no copy
            and are neither proven nor refused, as an id the routing drops.
        whole_chunks: a chunk with a refused id deletes none of its ids (they are not returned as proven either):
            for ids that fit one chunk, the proof pass and the delete in one, leaving all of them or none.
        record_held: given, before each delete from the source, the ids about to go and what those holding keys the
            enrichment writes hold there (``Proof.held``): kept, a rollback restores them whole.

    Returns:
        The ``Proof`` of every chunk: ``proven`` ids are the ones deleted (or, with ``delete_from=None``, that
        may be); ids without an original are neither, except when deleting from the target: there they are refused
        (the copy would be the only one left).

    Raises:
        StopAsked: ``stop`` said so.
    """
    compare = fields_comparer(spec)
    total = total if total is not None else Proof()

    def prove(chunk: Sequence[str]) -> tuple[list[Record], Proof, dict[str, list[str]]]:
        originals = source.fetch(source_namespace, chunk)
        if held is not None:
            kept = held(originals)
            originals = [r for r in originals if r.id not in kept]
        by_ns, _unroutable = route_source(originals, route)  # prove_copies refuses the unroutable ones
        found = {ns: target.fetch(ns, routed) for ns, routed in by_ns.items()}
        proof = prove_copies(
            originals, found, route, spec.verify.tolerance, compare, deleting_originals=delete_from != "target"
        )
        return originals, proof, by_ns

    for chunk in chunks(ids, PROOF_CHUNK_IDS):
        if stop is not None and stop():
            raise StopAsked(f"stopped as asked after {len(total.proven)} of {len(ids)} ids")
        if delete_from is None:
            total.add(prove(chunk)[1])
            continue
        # The namespaces the proof reads: the run's one target, or (routed) where the originals go now.
        if route.target_namespace is not None:
            proof_namespaces = {route.target_namespace}
        else:
            proof_namespaces = set(route_source(source.fetch(source_namespace, chunk), route)[0])
        places = [(source, source_namespace), *((target, ns) for ns in sorted(proof_namespaces))]
        if delete_from == "target":
            assert target_namespace is not None
            places.append((target, target_namespace))
        deleting_from = (source, source_namespace) if delete_from == "source" else (target, cast(str, target_namespace))
        with exclusive_hold(places):
            # Taken before the proof reads them (a store that keeps row versions: pgvector): the delete then takes only
            # rows still as proved, in one statement, so a write by anyone in between keeps its row.
            versions = deleting_from[0].row_versions(deleting_from[1], chunk)
            originals, proof, by_ns = prove(chunk)
            moved = {id_: ns for ns in set(by_ns) - proof_namespaces for id_ in by_ns[ns]}
            if moved:
                # Routed elsewhere since the look before the hold (its original changed): that namespace is not held.
                proof.proven = [id_ for id_ in proof.proven if id_ not in moved]
                for id_, ns in moved.items():
                    proof.refuse(id_, f"routed to {ns!r} since it was looked at: prove it again")
            if delete_from == "target":
                # A rollback checked every original before it deletes: one gone since leaves its copy the only one.
                have = {r.id for r in originals}
                for id_ in chunk:
                    if id_ not in have:
                        proof.refuse(id_, "no original in the source now: its copy is the only one")
                # Proved against the copy where the original routes now: one routed elsewhere since the check proves
                # nothing of the record deleted here.
                elsewhere = {id_: ns for ns, ids_ in by_ns.items() if ns != target_namespace for id_ in ids_}
                for id_ in [i for i in proof.proven if i in elsewhere]:
                    proof.refuse(id_, f"its original routes to {elsewhere[id_]!r} now: the copy here equals nothing")
                proof.proven = [id_ for id_ in proof.proven if id_ not in elsewhere]
            if whole_chunks and proof.refused_count:
                proof.proven = []
            if proof.proven and record_held is not None and delete_from == "source":
                # Before the originals go: after, nothing could tell their keys from added ones.
                record_held(proof.proven, {i: proof.held[i] for i in proof.proven if i in proof.held})
            try:
                if proof.proven and versions is not None:
                    deleted = set(deleting_from[0].delete_unchanged(deleting_from[1], _as_proved(proof, versions)))
                    deleted |= _gone_already(deleting_from, [i for i in proof.proven if i not in deleted])
                    for id_ in [i for i in proof.proven if i not in deleted]:
                        proof.refuse(id_, "written since its proof: kept")
                    proof.proven = [i for i in proof.proven if i in deleted]
                elif proof.proven:
                    deleting_from[0].delete(deleting_from[1], proof.proven)
            except Exception as e:
                # Sent, and no answer that says it was not done (a rate limit's or an unavailable server's): it may
                # have been (a timeout, a reset, a 500 or a gateway's 502/504).
                if not (isinstance(e, RetryableError) and e.status in _NOT_APPLIED_STATUSES):
                    total.maybe_deleted.extend(proof.proven)
                raise
        total.add(proof)
    return total


def _gone_already(deleting_from: tuple[Store, str], kept: list[str]) -> set[str]:
    """Of the proved ids a conditional delete did not take, those with no row now: deleted before it, by an earlier
    attempt of the same delete whose commit's answer was lost (its retry finds nothing to take) or by the
    application. They are gone from where the delete was, their proved copies the only ones, so they count as
    deleted: called kept, a cleanup recorded none of them, and `sync --propagate-deletes` deleted those copies."""
    if not kept:
        return set()
    there = {r.id for r in deleting_from[0].fetch(deleting_from[1], kept)}
    return {id_ for id_ in kept if id_ not in there}


def _as_proved(proof: Proof, versions: Mapping[str, str]) -> dict[str, str]:
    """The proven ids with the row versions read before their proof (an id with none was written since: left out)."""
    return {id_: versions[id_] for id_ in proof.proven if id_ in versions}


def delete_absent(
    source: Store,
    source_namespace: str,
    target: Store,
    target_namespace: str,
    ids: Sequence[str],
    refusal: Callable[[], str | None] = lambda: None,
    spared: Callable[[list[str]], set[str]] = lambda absent: set(),
) -> tuple[int, int, str | None]:
    """Delete from ``target_namespace`` those of ``ids`` that ``source_namespace`` does not hold now (fetched
    again right before each chunk's delete, both namespaces held meanwhile): what ``sync --propagate-deletes``
    deletes. An id written back to the
    source since the scan is kept. ``refusal`` is asked after each fetch, before its delete: why an absence may not
    be propagated now (a cleanup deleted from the source, so the target holds the only copies), or None. ``spared``,
    asked then too, names the absent ids to keep all the same (another source's copies in a shared namespace).

    Returns:
        ``(deleted, kept, why the deletes stopped before the end or None)``.
    """
    deleted = kept = 0
    for chunk in chunks(ids, PROOF_CHUNK_IDS):
        # Both namespaces held from the fetch to the delete, as a cleanup's chunk holds them: no write of an id into
        # the source, and no other deletion of either, comes in between.
        with exclusive_hold([(source, source_namespace), (target, target_namespace)]):
            present = {r.id for r in source.fetch(source_namespace, chunk)}
            absent = [i for i in chunk if i not in present]
            if absent:
                stop = refusal()
                if stop is not None:
                    return deleted, kept, stop
                kept_too = spared(absent)
                absent = [i for i in absent if i not in kept_too]
            if absent:
                target.delete(target_namespace, absent)
        deleted += len(absent)
        kept += len(chunk) - len(absent)
    return deleted, kept, None
