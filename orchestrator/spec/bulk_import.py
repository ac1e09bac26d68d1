"""The ``import:`` block of a ``strategy: import`` spec: where nsmigrate writes the import files (S3-compatible object
storage) and how Pinecone reads them (a storage integration), with the storage keys named by environment variable,
never given. See ``orchestrator.planning.import_strategy`` for the plan and ``workers.steps.bulk_import`` for the
steps."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from nsmigrate.orchestrator.connections.keys import key_destination_refusal
from nsmigrate.orchestrator.limits import IMPORT_URI_MAX_CHARS
from nsmigrate.orchestrator.spec.stores import _check_env_name, _Model

#: Rows of one import file at most: a file stays far below Pinecone's 10 GB per file (3,072 float32 values and
#: metadata are ~13 KB a row, so ~1.3 GB) while a namespace of 100 million records needs ≤ 1,000 files.
DEFAULT_ROWS_PER_FILE = 100_000


class BulkImport(_Model):
    """Where ``strategy: import`` writes its files and how Pinecone reads them.

    ``uri``: ``s3://BUCKET/PREFIX``; each job writes under ``PREFIX/<job name>-<job id>/``, one directory per target
    namespace, and imports that directory. ``integration_id``: the Pinecone storage integration that reads the
    bucket (none: a public bucket). ``endpoint_url``: an S3-compatible server instead of AWS's. The keys nsmigrate
    writes with come from the environment variables named here. ``keep_files``: leave the files in the bucket once
    the import completed.
    """

    uri: str = Field(min_length=6, max_length=IMPORT_URI_MAX_CHARS - 60)
    integration_id: str | None = Field(default=None, min_length=1, max_length=1000)
    endpoint_url: str | None = None
    region: str = Field(default="us-east-1", min_length=1)
    access_key_id_env: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_env: str = "AWS_SECRET_ACCESS_KEY"
    session_token_env: str | None = None
    error_mode: Literal["abort", "continue"] = Field(
        default="abort",
        description="Pinecone's errorMode.onError: abort fails the import at the first record it cannot read; "
        "continue skips such records (verification then fails on the ids they held).",
    )
    rows_per_file: int = Field(default=DEFAULT_ROWS_PER_FILE, gt=0, le=10_000_000)
    keep_files: bool = Field(
        default=False,
        description="Keep the job's import files once Pinecone's import completed (by default they are removed "
        "then: a copy of every record the job no longer needs). Kept files are reached by `nsmigrate erase`.",
    )
    usd_per_gb: float = Field(default=1.0, ge=0, description="Import price per GB read (the plan's comparison).")
    usd_per_million_write_units: float = Field(
        default=4.0, ge=0, description="Upsert price per million write units (the plan's comparison)."
    )

    @field_validator("uri")
    @classmethod
    def _s3_directory(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                f"{value!r} is not an s3://BUCKET/PREFIX URI: nsmigrate writes the import files to S3-compatible "
                "object storage (set endpoint_url for a server other than AWS's)"
            )
        return value.rstrip("/")

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s):// URL of an S3-compatible server")
        refusal = key_destination_refusal(value)
        if refusal is not None:
            raise ValueError(f"endpoint_url {refusal.replace('API key', 'storage key')}")
        return value.rstrip("/")

    @field_validator("access_key_id_env", "secret_access_key_env", "session_token_env")
    @classmethod
    def _env(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_env_name(value, info.field_name or "access_key_id_env")

    @property
    def bucket(self) -> str:
        return urlsplit(self.uri).netloc

    @property
    def prefix(self) -> str:
        """The key prefix under the bucket, without a trailing ``/`` ("" for the bucket's top)."""
        return urlsplit(self.uri).path.strip("/")


def import_strategy_problems(spec: Any) -> list[str]:
    """What a ``strategy: import`` spec asks that an import cannot do (``spec``: a ``JobSpec``); [] when it fits."""
    problems = []
    if spec.bulk_import is None:
        problems.append("an `import:` block (uri of the S3 directory to write, integration_id)")
    if spec.target.kind != "pinecone":
        problems.append("a Pinecone target (Pinecone imports into its own indexes only)")
    if spec.routing.mode == "creator":
        problems.append(
            "routing by namespace (`same` or `explicit`): routing `creator` sends a namespace's records to many "
            "namespaces one by one, which the fleet does"
        )
    if spec.text_from is not None:
        problems.append("records as they are: an import does not embed text (target.records, reembed need `fleet`)")
    mapped = [t for t in spec.routing.map.values()] if spec.routing.mode == "explicit" else []
    if len(set(mapped)) != len(mapped):
        problems.append("one source namespace per target namespace (an import writes each target namespace once)")
    return problems
