"""What in a spec keeps Pinecone's convert from doing its job (``strategy: convert``), read from the spec alone.

Pinecone converts a serverless vector index into a **new** document index of the same project, as a snapshot: every
namespace under its own name, each record a document with the same id, its values in the schema's dense field, its
sparse values in the sparse field, each metadata key the field of its name (docs
``guides/index-data/convert-an-index``). It renames, routes, selects, enriches and re-embeds nothing. Each reason
below names what the spec asks that convert cannot do; ``plan`` shows them for a copy into a document index that
does not use convert, and a ``strategy: convert`` spec with any of them is refused with them all. What only the
stores can tell (a pod source, a target that exists, keys a document refuses) is
``orchestrator.planning.convert_strategy``'s.
"""

from __future__ import annotations

from typing import Any

from nsmigrate.orchestrator.spec.stores import CreateIndex, PineconeStoreSpec


def convert_refusals(spec: Any) -> list[str]:
    """Why ``spec`` (a ``JobSpec``) cannot be done by Pinecone's convert, each a short clause; empty when it can."""
    source, target = spec.source, spec.target
    reasons = []
    if not isinstance(source, PineconeStoreSpec):
        reasons.append("the source is pgvector (convert reads a Pinecone serverless index)")
    elif source.index is None:
        reasons.append("the source is named by `host` (convert needs its index name: source.index)")
    if not isinstance(target, PineconeStoreSpec):
        reasons.append("the target is pgvector (convert makes a Pinecone document index)")
    elif target.documents is None:
        reasons.append("the target is not a document index (convert makes one: give target.documents)")
    elif target.index is None:
        reasons.append("the target is named by `host` (convert creates a new index: name it in target.index)")
    else:
        if target.documents.rename:
            reasons.append("target.documents.rename (convert fills each field from the metadata key of its name)")
        reasons += _target_refusals(source, target)
    if spec.routing.mode != "same":
        reasons.append(f"routing mode {spec.routing.mode} (convert keeps every namespace's name)")
    if spec.namespaces.include != ["*"] or spec.namespaces.exclude:
        reasons.append("a namespace selection (convert copies every namespace)")
    enrich = spec.enrich
    if enrich.constants or enrich.migrated_from or (enrich.creator_fields and spec.routing.mode == "creator"):
        reasons.append("enrich (convert copies records unchanged; set enrich's fields to false)")
    if spec.reembed is not None:
        reasons.append("reembed (convert keeps the source's vectors)")
    return reasons


def _target_refusals(source: Any, target: PineconeStoreSpec) -> list[str]:
    reasons = []
    if isinstance(source, PineconeStoreSpec) and (source.api_key_env, source.control_host) != (
        target.api_key_env,
        target.control_host,
    ):
        reasons.append(
            "source and target name other projects' keys or control planes (convert creates the new index in the "
            "source's project)"
        )
    return reasons


def create_of(target: PineconeStoreSpec) -> CreateIndex:
    """What the converted index is created with: tags and deletion protection (``target.create``, if given)."""
    return target.create or CreateIndex()
