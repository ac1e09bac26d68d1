"""Pinecone import files in S3-compatible object storage: one namespace's records written as ``part-NNNNN.parquet``
(a vector index: the export format's columns ``id``, ``values``, ``metadata`` as JSON, ``workers.stores.backup``) or
``part-NNNNN.jsonl`` (a document index: one document per line, as an upsert sends it) under the namespace's
directory, at most ``rows_per_file`` records a file. Each file is made in a temporary file and uploaded whole
(multipart for big ones), so a file in the bucket is always complete.

The storage keys come from the environment variables the spec names, checked against the variables the operator
allowed (``NSMIGRATE_ALLOWED_KEY_VARS``, and the AWS names ``STORAGE_KEY_VARS``) before any is read; they are never
logged or kept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import orjson

from nsmigrate.orchestrator.connections.keys import allowed_patterns
from nsmigrate.orchestrator.errors import RetryableError, SpecError, StoreError
from nsmigrate.orchestrator.records.documents import DocumentFields, document_problems, to_document
from nsmigrate.orchestrator.spec.bulk_import import BulkImport
from nsmigrate.workers.stores.base import Record

#: The storage key variables a spec may name besides ``NSMIGRATE_ALLOWED_KEY_VARS``: AWS's own names.
STORAGE_KEY_VARS = (
    "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_SESSION_TOKEN,*_AWS_ACCESS_KEY_ID,*_AWS_SECRET_ACCESS_KEY"
)


@dataclass(frozen=True)
class Written:
    """What one namespace's files hold: ``records`` in ``files`` files of ``bytes`` bytes."""

    records: int
    files: int
    bytes: int


def storage_keys(spec: BulkImport, allowed_key_vars: str) -> dict[str, str]:
    """The keys to write with, from the variables ``spec`` names; raises ``SpecError`` naming a variable that is not
    allowed or not set (never its value)."""
    names = {
        "aws_access_key_id": spec.access_key_id_env,
        "aws_secret_access_key": spec.secret_access_key_env,
        "aws_session_token": spec.session_token_env,
    }
    patterns = allowed_patterns(allowed_key_vars) + allowed_patterns(STORAGE_KEY_VARS)
    keys = {}
    for parameter, name in names.items():
        if name is None:
            continue
        if not any(fnmatchcase(name, p) for p in patterns):
            raise SpecError(
                f"import: {name} is not a storage key variable the operator allowed (AWS's names, or "
                "NSMIGRATE_ALLOWED_KEY_VARS); no key was read or sent",
                hint="name AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or have the operator allow the variable",
            )
        value = os.environ.get(name)
        if not value:
            raise SpecError(
                f"import: the environment variable {name} is not set where this worker runs",
                hint="set it on every worker host (the spec names it, the job table never holds it)",
            )
        keys[parameter] = value
    return keys


class ImportFiles:
    """Writes and removes one job's import files (``spec``: the spec's ``import:``; ``allowed_key_vars``: the
    operator's setting)."""

    def __init__(self, spec: BulkImport, allowed_key_vars: str) -> None:
        import boto3

        self.spec = spec
        self._client = boto3.client(
            "s3", endpoint_url=spec.endpoint_url, region_name=spec.region, **storage_keys(spec, allowed_key_vars)
        )

    def clear(self, directory: str) -> int:
        """Remove every object under ``directory/`` (a namespace's files of an earlier attempt, a job's once
        imported); how many."""
        removed = 0
        with self._errors(directory):
            for page in self._pages(directory):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    self._client.delete_objects(Bucket=self.spec.bucket, Delete={"Objects": keys, "Quiet": True})
                    removed += len(keys)
        return removed

    def count(self, directory: str) -> int:
        """The objects under ``directory/``."""
        with self._errors(directory):
            return sum(len(page.get("Contents", [])) for page in self._pages(directory))

    def _pages(self, directory: str) -> Any:
        return self._client.get_paginator("list_objects_v2").paginate(Bucket=self.spec.bucket, Prefix=directory + "/")

    def write(
        self, directory: str, chunks: Iterable[list[Record]], dimension: int, fields: DocumentFields | None
    ) -> Written:
        """Write the records of ``chunks`` as files under ``directory/`` (JSONL documents when ``fields`` is given,
        else Parquet of ``dimension`` values), ``rows_per_file`` a file.

        Raises:
            StoreError: the storage refused a write, or a record cannot be written as the target takes it.
            RetryableError: the storage did not answer.
        """
        records = files = size = 0
        part: list[list[Record]] = []
        in_part = 0
        for chunk in chunks:
            for record in chunk:
                if record.sparse_values is not None and fields is None:
                    raise StoreError(
                        f"record {record.id!r} has sparse values, which nsmigrate's import files do not hold; "
                        "nothing was imported",
                        hint="use strategy `fleet` for an index of sparse or hybrid vectors",
                        directory=directory,
                    )
            while chunk:
                room = self.spec.rows_per_file - in_part
                part.append(chunk[:room])
                in_part += len(part[-1])
                chunk = chunk[room:]
                if in_part >= self.spec.rows_per_file:
                    size += self._upload(directory, files, part, dimension, fields)
                    records, files, part, in_part = records + in_part, files + 1, [], 0
        if in_part:
            size += self._upload(directory, files, part, dimension, fields)
            records, files = records + in_part, files + 1
        return Written(records, files, size)

    def _upload(
        self, directory: str, number: int, chunks: list[list[Record]], dimension: int, fields: DocumentFields | None
    ) -> int:
        suffix = "jsonl" if fields is not None else "parquet"
        key = f"{directory}/part-{number:05d}.{suffix}"
        with tempfile.TemporaryDirectory(prefix="nsmigrate-import-") as folder:
            path = Path(folder) / f"part.{suffix}"
            if fields is not None:
                _write_jsonl(path, chunks, fields)
            else:
                # pyarrow only in the task that writes Parquet: every worker imports this module at start.
                import pyarrow.parquet as pq

                from nsmigrate.workers.stores.backup.parquet import SCHEMA, records_to_table

                with pq.ParquetWriter(path, SCHEMA, compression="zstd") as writer:
                    for chunk in chunks:
                        writer.write_table(records_to_table(chunk, dimension, path))
            with self._errors(key):
                self._client.upload_file(str(path), self.spec.bucket, key)
            return path.stat().st_size

    def _errors(self, key: str) -> Any:
        return _StorageErrors(self.spec, key)


def _write_jsonl(path: Path, chunks: list[list[Record]], fields: DocumentFields) -> None:
    with path.open("wb") as out:
        for chunk in chunks:
            for record in chunk:
                problems = document_problems(record, fields)
                if problems:
                    raise StoreError(
                        f"record {record.id!r} cannot be written as a document: {'; '.join(problems)}; nothing was "
                        "imported",
                        hint="rename those metadata keys in target.documents.rename (e.g. _source: source)",
                    )
                out.write(orjson.dumps(to_document(record, fields, list(record.values))) + b"\n")


class _StorageErrors:
    """The storage's refusals as ``StoreError`` naming the bucket and key (never a key's value); its silence as
    ``RetryableError``."""

    def __init__(self, spec: BulkImport, key: str) -> None:
        self.where = f"s3://{spec.bucket}/{key}" + (f" at {spec.endpoint_url}" if spec.endpoint_url else "")

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        if isinstance(error, EndpointConnectionError):
            raise RetryableError(f"object storage did not answer for {self.where}: {error}") from error
        if isinstance(error, ClientError | S3UploadFailedError | BotoCoreError):
            raise StoreError(
                f"object storage refused {self.where}: {error}",
                hint="check import.uri, import.endpoint_url and the storage keys' rights to write the bucket",
            ) from error
