"""The copies an erasure must also reach beyond namespaces and export directories: the retired tables of the
application's pgvector layout (``workers.stores.pgvector.retired``: backups a move, ``legacy`` or a cleanup renamed
away, and the legacy table once replaced), searched and emptied of the subject's rows as places of kind ``table``; the
import files of ``strategy: import`` jobs still in object storage (kept with ``import.keep_files``, or left by a job
cancelled or failed, or whose removal failed), removed whole as places of kind ``import_files``: a derived copy of
every record, which its job no longer needs; and the Pinecone collections nsmigrate's collection jobs made, which no
API can erase inside, listed in the plan and the receipt with what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nsmigrate.orchestrator import pgvector_layout
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.models import PlaceKind
from nsmigrate.orchestrator.planning.import_strategy import import_directory, import_uri
from nsmigrate.orchestrator.records.namespaces import Registry
from nsmigrate.orchestrator.spec.bulk_import import BulkImport
from nsmigrate.orchestrator.spec.stores import store_spec_from_json
from nsmigrate.orchestrator.tenancy.erasure import KnownRun, Subject, places_in_store
from nsmigrate.workers.context import WorkerContext
from nsmigrate.workers.stores.pgvector import retired


def retired_table_places(
    store: Any,
    spec_json: dict[str, Any],
    shown: str,
    subject: Subject,
    registry: Registry,
    runs: Sequence[KnownRun],
    keys: set[str],
) -> list[dict[str, Any]]:
    """The places of kind ``table`` of one store (none for a store that is not of the application's layout): a
    retired table that held one of the subject's own namespaces is emptied whole; one that held a shared namespace
    (the default one, ``public``…) is searched for their rows; another creator's is left alone.

    A table whose namespace cannot be known (its name cut to Postgres's 63 bytes, and no COMMENT records it:
    ``retired.retired_tables``) is never taken for the namespace its cut name parses as: it is searched for their
    rows, and when it may have held a namespace of theirs (``_may_hold_theirs``), whose rows need not name them, it
    is a place whatever the search found, which is not verified while any row is left in it."""
    found = retired.documented(store)
    tables = retired.retired_tables(found) if found is not None else {}
    if found is None or not tables:
        return []
    held = {ns for ns, _ in tables.values() if ns is not None}
    classified = places_in_store(store.name, sorted(held), subject, registry, runs, store_keys=keys)
    whole, searched = set(classified.whole), set(classified.search)
    places = []
    for table, (namespace, rows) in sorted(tables.items()):
        may_hold = None
        if namespace is None:  # its cut name tells no namespace: searched, whatever it parses as
            if not rows:
                continue
            may_hold = _may_hold_theirs(found.prefix, table, store.name, subject, registry, runs, keys)
            planned = len(retired.owned_ids(found, table, subject.owns_record))
        elif namespace in whole:
            planned = rows
        elif namespace in searched and rows:
            planned = len(retired.owned_ids(found, table, subject.owns_record))
        else:
            continue
        if planned or may_hold:
            places.append(
                {
                    "kind": PlaceKind.TABLE.value,
                    "store": shown,
                    "store_spec": {
                        "store": spec_json,
                        "whole": namespace in whole,
                        **({"may_hold": may_hold} if may_hold else {}),
                    },
                    "namespace": namespace,
                    "path": table,
                    "planned": planned,
                }
            )
    return places


def _may_hold_theirs(
    prefix: str,
    table: str,
    store_name: str,
    subject: Subject,
    registry: Registry,
    runs: Sequence[KnownRun],
    keys: set[str],
) -> str | None:
    """Which namespace of the subject's a retired table whose cut name no longer tells its namespace may have held,
    or None when it can have held none: any ``creator_{creator}_twin_…`` whose start its name keeps (a creator
    erasure), or a name the job table knows that the erasure would take whole or report (their twin's namespace, a
    source namespace read for them, a copy of their twin under a test creator) and whose backup can have this name
    (``pgvector_layout.backup_of``: its start and hash)."""
    start = pgvector_layout.backup_start(prefix, table)
    if subject.twin_id is None:
        theirs = f"creator_{subject.creator_id}_twin_"
        if start[: len(theirs)] == theirs[: len(start)]:
            return f"{theirs}…"
    known = {run.source_namespace for run in runs} | {ns for run in runs for ns in run.target_namespaces}
    known.add(f"creator_{subject.creator_id}" + (f"_twin_{subject.twin_id}" if subject.twin_id is not None else ""))
    fitting = sorted(ns for ns in known if ns and pgvector_layout.backup_of(prefix, table, ns))
    classified = places_in_store(store_name, fitting, subject, registry, runs, store_keys=keys)
    return next(iter(classified.whole + classified.ambiguous), None)


def erase_retired_table(place: Any, subject: Subject, open_store: Any) -> tuple[int, dict[str, Any]]:
    """Empty one retired table of the subject's rows (all of them when it held a namespace of theirs) and check it:
    read again, none of theirs is left. A table whose cut name no longer tells the namespace it held, which may have
    been theirs (``may_hold``), is not verified while any row is left in it: rows that do not name them may be
    theirs."""
    spec = place.store_spec or {}
    store = retired.documented(open_store(store_spec_from_json(spec.get("store") or {})))
    table = place.path or ""
    if store is None:
        return 0, {"passed": False, "reason": f"the store of table {table} is not of the application's layout"}
    if spec.get("whole"):
        erased = retired.delete_all(store, table)
        left = retired.count_rows(store, table)
    else:
        erased = retired.delete_ids(store, table, retired.owned_ids(store, table, subject.owns_record))
        left = len(retired.owned_ids(store, table, subject.owns_record))
    check: dict[str, Any] = {"passed": left == 0, "table": table, "rows_left": left}
    if left:
        check["reason"] = f"{left} of their rows still in table {table}"
    elif not retired.exists(store, table):  # its rows read as none: a rollback may have renamed it back, rows and all
        check["passed"] = False
        check["reason"] = (
            f"table {table} is gone (a rollback renames a retired table back into its namespace, its rows with it): "
            "nothing proves them erased; erase again with a new plan, which looks in the namespace's table"
        )
    elif spec.get("may_hold") and (kept := retired.count_rows(store, table)):
        start = pgvector_layout.backup_start(store.prefix, table)
        check.update(passed=False, rows_not_told_apart=kept)
        check["reason"] = (
            f"table {table} may have held {spec['may_hold']} (its name, cut to Postgres's 63 bytes, keeps only "
            f"{start!r} of its namespace, and no COMMENT records it): {kept} rows are left in it, and a row that does "
            "not name them may still be theirs, so it is not verified. If you know the namespace it held, record it "
            f"(COMMENT ON TABLE {pgvector_layout.quote(table)} IS '{pgvector_layout.BACKUP_COMMENT}<namespace>') and "
            "erase again with a new plan; or drop the table once no rollback needs it"
        )
    return erased, check


def import_file_places(db: jobs_database.Database, job_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The places of kind ``import_files``: of the jobs ``job_ids`` (those that copied the subject's data), each
    ``strategy: import`` job's directory whose files may still be in object storage (``import_file_jobs``). Planned
    as 0: the command that plans may lack the storage keys, which the workers have."""
    places = []
    for job in jobs_erasure.import_file_jobs(db, job_ids):
        spec = BulkImport.model_validate(job["import"])
        places.append(
            {
                "kind": PlaceKind.IMPORT_FILES.value,
                "store": "import files",
                "store_spec": {"import": job["import"], "job_id": job["job_id"], "job_name": job["name"]},
                "namespace": None,
                "path": import_uri(spec, job["name"], job["job_id"]),
                "planned": 0,
            }
        )
    return places


def erase_import_files(ctx: WorkerContext, place: Any) -> tuple[int, dict[str, Any]]:
    """Remove every file of one import job's directory (the whole copy: the subject's records are in any of its
    files) and check it: listed again, none is left. Recorded on the import job (``import_files_erased``), so a
    later erasure no longer looks there. Returns the files removed."""
    from nsmigrate.workers.stores.import_files import ImportFiles  # boto3: only an erasure that reaches files

    spec = place.store_spec or {}
    bulk = BulkImport.model_validate(spec.get("import") or {})
    directory = import_directory(bulk, str(spec.get("job_name")), int(spec.get("job_id") or 0))
    files = ImportFiles(bulk, ctx.settings.allowed_key_vars)
    removed = files.clear(directory)
    left = files.count(directory)
    check: dict[str, Any] = {"passed": left == 0, "directory": place.path, "files_left": left}
    if left:
        check["reason"] = f"{left} files still in {place.path} after they were removed"
    else:
        jobs_and_runs.record_event(
            ctx.db,
            "import_files_erased",
            ctx.worker_name,
            int(spec.get("job_id") or 0),
            uri=place.path,
            objects=removed,
        )
    return removed, check


def collection_notes(collections: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the receipt says of each Pinecone collection a job made (``jobs_erasure.known_collections``): a place it
    cannot erase inside (a collection is read-only: Pinecone deletes it whole or not at all), and what to do."""
    return [
        {
            "kind": "pinecone collection",
            "name": c["collection"],
            "made_by_job": c["job_id"],
            "from_index": c.get("source"),
            "what_to_do": (
                f"a collection cannot be erased inside: once no restore needs it, delete it whole (Pinecone console, "
                f"or `DELETE /collections/{c['collection']}` on the control plane); until then, never create an index "
                "from it without erasing that index again"
            ),
        }
        for c in collections
    ]
