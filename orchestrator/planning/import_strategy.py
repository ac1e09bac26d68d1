"""Pinecone's bulk import as a strategy (``strategy: import``): workers write each source namespace as import files
(Parquet for a vector index, JSONL for a document index) to S3-compatible object storage, one directory per target
namespace, then Pinecone imports the directory (``/bulk/imports``) and nsmigrate verifies the result like any job.
Pure: the layout, the plan's checks, the comparison of upsert and import, and the next step from what Pinecone says.

Pinecone's rules this follows (docs: "Import records", "Import vectors into a legacy vector index", "Import limits",
"Understanding imports"): an import writes only into namespaces that do not exist yet (the default namespace, as
``__default__``, must be empty); one import takes at most 100 namespaces and 100,000,000 records; a file at most
10 GB; each import takes at least 10 minutes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.limits import (
    FETCH_MAX_IDS,
    IMPORT_MAX_NAMESPACES,
    IMPORT_MAX_RECORDS,
    IMPORT_MIN_S,
    IMPORT_RECOMMENDED_RECORDS,
    LIST_MAX_PAGE_IDS,
)
from nsmigrate.orchestrator.planning.costs import BYTES_PER_JSON_VALUE
from nsmigrate.orchestrator.planning.plan import Estimate, Inventory, Plan
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.bulk_import import BulkImport
from nsmigrate.orchestrator.spec.jobspec import JobSpec
from nsmigrate.orchestrator.states import ImportPhase, phase_name

#: The directory of the default namespace in an import (docs, "Import records").
DEFAULT_NAMESPACE_DIR = "__default__"
#: Bytes of one record's id, metadata and framing in an import file, beside its values (the plan's guess).
RECORD_OVERHEAD_BYTES = 200
BYTES_PER_VALUE = 4  # float32
#: Bytes of import files one writing thread makes and uploads a second (the plan's guess: decoding the fetched JSON,
#: encoding Parquet or JSONL, one upload stream); a job writes ``import_write_threads`` namespaces at once.
WRITE_MB_PER_S_PER_THREAD = 10.0


def import_directory(spec: BulkImport, job_name: str, job_id: int) -> str:
    """The key prefix (no bucket, no trailing ``/``) a job's import files go under: one of its own per job."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", job_name.lower()).strip("-.") or "job"
    return "/".join(part for part in (spec.prefix, f"{slug}-{job_id}") if part)


def import_uri(spec: BulkImport, job_name: str, job_id: int) -> str:
    """The URI Pinecone imports: the job's directory, holding one directory per target namespace."""
    return f"s3://{spec.bucket}/{import_directory(spec, job_name, job_id)}/"


def namespace_directory(namespace: str) -> str:
    """A target namespace's directory in the import ("" is the default namespace)."""
    return namespace or DEFAULT_NAMESPACE_DIR


def check_import_plan(spec: JobSpec, plan: Plan, target: Inventory) -> None:
    """Refuse, before anything is written, a plan Pinecone's import would refuse.

    Raises:
        PlanError: a target namespace exists already in the target index (an import writes only new namespaces; the
            default one must be empty), a target namespace cannot be a directory, or the job is past one import's
            limits.
    """
    targets = {run.target_namespace or "" for run in plan.runs}
    exists = sorted(ns for ns in targets if (ns in target.namespaces and (ns or target.namespaces[ns])))
    if exists:
        shown = ", ".join(f"{display_namespace(ns)} ({target.namespaces[ns]} records)" for ns in exists)
        raise PlanError(
            f"Pinecone imports only into namespaces that do not exist yet (the default namespace: empty), and "
            f"{target.label} already has {shown}; nothing was written",
            hint="map them to new namespaces (routing.mode: explicit), or use strategy `fleet`, which upserts into "
            "existing namespaces",
            target=target.label,
            namespaces=[display_namespace(ns) for ns in exists],
        )
    bad = sorted(ns for ns in targets if "/" in ns or ns in (".", "..", DEFAULT_NAMESPACE_DIR))
    if bad:
        raise PlanError(
            f"target namespaces {bad} cannot be directories of an import (no '/', not '.', '..' or __default__)",
            hint="map them to other names (routing.mode: explicit), or use strategy `fleet`",
            target=target.label,
        )
    total = plan.total_vectors
    if len(targets) > IMPORT_MAX_NAMESPACES or total > IMPORT_MAX_RECORDS:
        raise PlanError(
            f"the job writes {total} records into {len(targets)} namespaces; one Pinecone import takes at most "
            f"{IMPORT_MAX_RECORDS} records and {IMPORT_MAX_NAMESPACES} namespaces",
            hint="split the job (namespaces.include / exclude), one import each",
            target=target.label,
        )


ImportFormat = Literal["Parquet", "JSONL"]


def import_format(spec: JobSpec) -> ImportFormat:
    """The files an import of ``spec`` writes: JSONL documents for a document index, else Parquet."""
    documents = getattr(spec.target, "documents", None)  # only a Pinecone target has them
    return "JSONL" if documents is not None else "Parquet"


def import_bytes(records: int, dimension: int, file_format: ImportFormat = "Parquet") -> int:
    """About how many bytes the import files of ``records`` hold: values as float32 (Parquet) or as decimal text
    (JSONL), plus id and metadata."""
    per_value = BYTES_PER_JSON_VALUE if file_format == "JSONL" else BYTES_PER_VALUE
    return records * (max(dimension, 0) * per_value + RECORD_OVERHEAD_BYTES)


def writing_seconds(spec: JobSpec, sizes: Sequence[int], size: int, threads: int) -> float:
    """About how long the workers take to write the import files of namespaces of ``sizes`` records (``size`` bytes
    in all, ``threads`` namespaces at once): the lists and fetches at the spec's budgets (whichever takes longer), then
    the bytes at ``WRITE_MB_PER_S_PER_THREAD`` a thread. A namespace's fetch and its upload follow each other, so the
    two are added; round trips are not counted."""
    lists = sum(max(1, math.ceil(n / LIST_MAX_PAGE_IDS)) for n in sizes)
    fetches = sum(math.ceil(n / FETCH_MAX_IDS) for n in sizes)
    reading_s = max(lists / spec.rate.list_rps, fetches / spec.rate.read_rps)
    writers = max(1, min(threads, len(sizes), math.floor(spec.rate.read_rps)))
    return reading_s + size / (WRITE_MB_PER_S_PER_THREAD * 1e6 * writers)


def compare(spec: JobSpec, estimate: Estimate, sizes: Sequence[int], dimension: int, threads: int) -> list[str]:
    """Lines for the plan: what upserting and importing this job cost and take (``sizes``: each namespace's records;
    ``threads``: the workers' ``import_write_threads``), and which assumptions say so."""
    prices = spec.bulk_import or BulkImport(uri="s3://bucket/prefix")
    file_format = import_format(spec)
    records = sum(sizes)
    size = import_bytes(records, dimension, file_format)
    upsert_usd = estimate.write_units / 1e6 * prices.usd_per_million_write_units
    import_usd = size / 1e9 * prices.usd_per_gb
    writing_s = writing_seconds(spec, sizes, size, threads)
    advice = (
        "Pinecone recommends import above ~10M records"
        if records < IMPORT_RECOMMENDED_RECORDS
        else "Pinecone recommends import for a load this size"
    )
    return [
        f"upsert: ≈{estimate.write_units} write units ≈ {_usd(upsert_usd)} (at ${prices.usd_per_million_write_units:g} "
        f"per million), ≈{estimate.duration_s:.0f} s at the configured budgets",
        f"import: ≈{_size(size)} of {file_format} files ≈ {_usd(import_usd)} (at ${prices.usd_per_gb:g} per GB), "
        f"≈{writing_s:.0f} s to write them (fetches at the read budget, {threads} namespaces at once, "
        f"{WRITE_MB_PER_S_PER_THREAD:g} MB/s each), then Pinecone's import: at least {IMPORT_MIN_S / 60:.0f} min; "
        f"{advice} (prices: Pinecone's list prices, set import.usd_per_gb and import.usd_per_million_write_units to "
        "your plan's)",
    ]


def _size(size: int) -> str:
    """Bytes in the unit that shows them (a test job's KB as well as a big load's GB)."""
    unit, scale = next(((u, k) for u, k in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)) if size >= k), ("KB", 1e3))
    value = size / scale
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _usd(amount: float) -> str:
    return f"${amount:.2f}" if amount == 0 or amount >= 0.01 else "<$0.01"


ImportAction = Literal["write", "start", "wait", "imported", "fail"]
#: The statuses of an import Pinecone reports (``ImportModel.status``); the last three are final.
RUNNING = ("Pending", "InProgress")


@dataclass(frozen=True)
class ImportStep:
    """What an import job does next: ``write`` its files, ``start`` the import, ``wait`` (Pinecone is busy),
    ``imported`` (verify), or ``fail`` with the reason."""

    action: ImportAction
    reason: str = ""


def next_import_step(phase: str | None, import_id: str | None, status: str | None, retried: bool) -> ImportStep:
    """The next step from the job's phase and the import's ``status`` (``import_id`` None: none started yet);
    ``retried``: that import failed and was recorded so, and the job was retried since (start another)."""
    name = phase_name(phase)
    if name == ImportPhase.IMPORTED:
        return ImportStep("imported")
    if name in (None, ImportPhase.WRITING):
        return ImportStep("write")
    if import_id is None or retried:
        return ImportStep("start")
    if status in RUNNING:
        return ImportStep("wait")
    if status == "Completed":
        return ImportStep("imported")
    return ImportStep("fail", f"Pinecone import {import_id} is {status}")


def progress_phase(percent: float | None) -> str:
    """The phase shown while Pinecone imports: ``importing 42%``."""
    return f"{ImportPhase.IMPORTING} {math.floor(percent or 0.0):d}%"
