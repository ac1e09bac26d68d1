"""Data portability: everything a creator (or one twin of theirs) owns, out of every store the job table knows, into
Parquet files a person can be handed, with a manifest and counts.

The places are the erasure's (``erasing.plan_erasure``: what an erasure would delete is what they own): namespaces
that are wholly theirs are exported whole, shared namespaces (``public``, the review namespace, the default one) only
their records, by the same rule an erasure matches them (``Subject.owns_record``). One sub-directory per store, each
an nsmigrate export of its own (``manifest.json``: `nsmigrate import` reads it back), and ``portability.json`` at the
top: whose data, from where, how many records per namespace and in all, and what was not searched. Nothing is
written to any store; an export that fails removes what it wrote and raises, so `erase --export-first` deletes
nothing then. The export is the person's copy, not a backup of nsmigrate's: it is not recorded for later erasures
(the receipt of `erase --export-first` names where it went).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.orchestrator.models import PlaceKind
from nsmigrate.orchestrator.settings import DEFAULTS
from nsmigrate.orchestrator.spec.stores import store_spec_from_json
from nsmigrate.workers.steps import freshness
from nsmigrate.workers.steps.erasing import ErasurePlan
from nsmigrate.workers.stores.backup.exporting import export_namespaces, unused_directory
from nsmigrate.workers.stores.backup.parquet import MANIFEST_NAME, Progress
from nsmigrate.workers.stores.base import Store

PORTABILITY_MANIFEST = "portability.json"
PORTABILITY_FORMAT = "nsmigrate-portability"


def export_subject(
    plan: ErasurePlan,
    open_store: Callable[[Any], Store],
    directory: Path,
    *,
    progress: Progress | None = None,
    close: Callable[[Store], None] = lambda store: None,
    settle_timeout_s: float = DEFAULTS.erasure_settle_timeout_s,
) -> dict[str, Any]:
    """Export what ``plan``'s subject owns (its ``namespace`` and ``records`` places) into ``directory``; returns
    the manifest (also written to ``directory/portability.json``). Each namespace is listed once its reads show
    every write before it, waited for at most ``settle_timeout_s`` (the ``erasure_settle_timeout_s`` setting).

    Raises:
        BackupError: a store of the plan could not be read (nothing is exported then: a partial export would look
            whole), or ``directory`` exists and is not empty.
        RetryableError, StoreError: a store kept failing while it was exported; what was written is removed.
    """
    if plan.unreadable:
        raise BackupError(
            "cannot read every store, so the export would not hold everything of theirs: "
            + "; ".join(plan.unreadable)
            + "; nothing was exported",
            hint="fix it, or leave a store that is gone for good out with --skip-store LABEL",
        )
    directory = unused_directory(directory)
    by_store: dict[str, dict[str, Any]] = {}
    for p in plan.places:
        if p["kind"] in (PlaceKind.NAMESPACE.value, PlaceKind.RECORDS.value):
            entry = by_store.setdefault(p["store"], {"spec": p["store_spec"], "whole": [], "records": []})
            entry["whole" if p["kind"] == PlaceKind.NAMESPACE.value else "records"].append(p["namespace"] or "")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    owns = plan.subject.owns_record
    stores: list[dict[str, Any]] = []
    try:
        for i, (label, entry) in enumerate(sorted(by_store.items()), start=1):
            sub = directory / f"store-{i}"
            store = open_store(store_spec_from_json(entry["spec"]))
            try:
                namespaces = sorted(entry["whole"]) + sorted(entry["records"])
                keep = {ns: (lambda r: owns(r.metadata, r.id)) for ns in entry["records"]}
                settle = freshness.awaiting_reads(store, settle_timeout_s, again="erase --export-first")
                results = export_namespaces(store, namespaces, sub, progress=progress, keep=keep, before_listing=settle)
            finally:
                close(store)
            stores.append(
                {
                    "store": label,
                    "directory": sub.name,
                    "manifest": f"{sub.name}/{MANIFEST_NAME}",
                    "count": sum(r.count for r in results),
                    "namespaces": [
                        {
                            "namespace": r.namespace,
                            "file": f"{sub.name}/{r.path.name}",
                            "count": r.count,
                            "scope": "their namespace"
                            if r.namespace in entry["whole"]
                            else "their records in a shared namespace",
                        }
                        for r in results
                    ],
                }
            )
        manifest = {
            "format": PORTABILITY_FORMAT,
            "creator_id": plan.subject.creator_id,
            "twin_id": plan.subject.twin_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "count": sum(s["count"] for s in stores),
            "stores": stores,
            "not_searched": list(plan.skipped),
            "ambiguous": list(plan.ambiguous),
        }
        (directory / PORTABILITY_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    except BaseException:
        for child in list(directory.iterdir()) if directory.exists() else []:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        if created and directory.exists():
            directory.rmdir()
        raise
    return manifest
