"""The local data plane's bulk imports (``/bulk/imports``) validated against Pinecone's own OpenAPI file (2026-07),
reading Parquet and JSONL files from a real S3-compatible server (moto's server mode), and driven by the real
``pinecone`` SDK's import calls (``start_import``, ``describe_import``, ``list_imports``, ``cancel_import``).

Each raw request is checked against the spec as a request and its real response against the response schema for its
operation and status (``openapi-core``), with ``test_pinecone_aliases_conformance.py``'s ``call`` and spec. What
Pinecone refuses is refused here too (namespaces that exist, a bucket the index cannot read, a layout without
namespace directories, a pod index), an import takes time and reports its progress as Pinecone's does.
"""

from __future__ import annotations

import functools
import io
import json
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openapi_core import OpenAPI
from pinecone import Pinecone

from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.integration.openapi_checks import dense_document_index, load_api
from tests.integration.test_pinecone_aliases_conformance import call as spec_call
from tests.polling import wait_until
from tests.service_fixtures import ObjectStorage

#: One request checked against the spec, as the alias conformance tests send it; to index ``imp`` unless told.
call = functools.partial(spec_call, index="imp")
TERMINAL = ("Completed", "Failed", "Cancelled")


@pytest.fixture(scope="module")
def data_api() -> OpenAPI:
    return load_api("db_data_2026-07")


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("imp", 4), IndexSpec("imp-pod", 4, kind="pod"), dense_document_index("imp-docs")]


@pytest.fixture
def storage(sandbox: PineconeSandbox, object_storage: ObjectStorage) -> ObjectStorage:
    object_storage.configure(sandbox, pace_s=0.4)
    return object_storage


def parquet(rows: list[tuple[str, list[float], dict[str, Any] | None]]) -> bytes:
    table = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.string()),
            "values": pa.array([r[1] for r in rows], pa.list_(pa.float32())),
            "metadata": pa.array([json.dumps(r[2]) if r[2] is not None else None for r in rows], pa.string()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def put(storage: ObjectStorage, key: str, body: bytes) -> None:
    storage.client().put_object(Bucket=storage.bucket, Key=key, Body=body)


def rows(prefix: str, n: int) -> list[tuple[str, list[float], dict[str, Any] | None]]:
    return [(f"{prefix}{i}", [1.0, float(i), 0.5, 0.0], {"n": i, "tag": prefix}) for i in range(n)]


def finished(api: OpenAPI, sandbox: PineconeSandbox, import_id: str, index: str = "imp") -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def describe() -> dict[str, Any]:
        model: dict[str, Any] = call(api, sandbox, "GET", f"/bulk/imports/{import_id}", index=index)
        seen.append(model)
        return model

    last = wait_until(describe, what=f"import {import_id} to end", timeout_s=20, done=lambda m: m["status"] in TERMINAL)
    percents = [m["percentComplete"] for m in seen]
    assert percents == sorted(percents), "percentComplete never goes back"
    return last


def run_import(
    api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage, prefix: str, index: str = "imp", **extra: Any
) -> dict[str, Any]:
    """Import ``prefix`` of the test's bucket through its integration (``extra``: more of the request) and wait
    for the import to end; its last description."""
    body = {"uri": f"s3://{storage.bucket}/{prefix}", "integrationId": storage.integration_id, **extra}
    started = call(api, sandbox, "POST", "/bulk/imports", body=body, index=index)
    return finished(api, sandbox, started["id"], index=index)


def test_an_import_takes_time_reports_progress_and_lands_every_record(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    put(storage, "load/alpha/0.parquet", parquet(rows("a", 30)))
    put(storage, "load/alpha/1.parquet", parquet(rows("b", 20)))
    put(storage, "load/alpha/notes.log", b"ignored: not a Parquet file")
    put(storage, "load/__default__/0.parquet", parquet(rows("d", 5)))
    uri = f"s3://{storage.bucket}/load"

    started = call(
        data_api, sandbox, "POST", "/bulk/imports", body={"uri": uri, "integrationId": storage.integration_id}
    )
    first = call(data_api, sandbox, "GET", f"/bulk/imports/{started['id']}")
    done = finished(data_api, sandbox, started["id"])

    # How far it got by the first look depends on the machine; that it took time does not.
    assert first["status"] in ("Pending", "InProgress") or first == done
    took = datetime.fromisoformat(done["finishedAt"]) - datetime.fromisoformat(done["createdAt"])
    assert took.total_seconds() >= 0.4  # ObjectStorage.pace_s: never at once
    assert done["status"] == "Completed" and done["percentComplete"] == 100 and done["recordsImported"] == 55
    assert done["uri"] == uri and "finishedAt" in done and "error" not in done
    assert done["validationResult"] == {"importSuccesses": 55, "importErrors": 0}
    assert sandbox.count("imp", "alpha") == 50 and sandbox.count("imp", "") == 5
    stored = sandbox.snapshot("imp")["alpha"]["a7"]
    assert stored[0].tolist() == [1.0, 7.0, 0.5, 0.0] and stored[1] == {"n": 7, "tag": "a"}


def test_the_sdk_starts_describes_lists_and_cancels_imports(sandbox: PineconeSandbox, storage: ObjectStorage) -> None:
    put(storage, "sdk/one/0.parquet", parquet(rows("s", 10)))
    index = Pinecone(api_key="test-key").Index(host=sandbox.host("imp"))

    started = index.start_import(f"s3://{storage.bucket}/sdk", integration_id=storage.integration_id)
    done = wait_until(
        lambda: index.describe_import(started.id),
        what="the SDK's import",
        timeout_s=20,
        done=lambda m: m.status in TERMINAL,
    )
    second = index.start_import(f"s3://{storage.bucket}/sdk", integration_id=storage.integration_id, error_mode="abort")
    index.cancel_import(second.id)

    assert (done.status, done.records_imported, done.percent_complete) == ("Completed", 10, 100.0)
    assert index.describe_import(second.id).status == "Cancelled"
    assert [(m.id, m.status) for m in index.list_imports(limit=1)] == [
        (started.id, "Completed"),
        (second.id, "Cancelled"),
    ]
    assert sandbox.count("imp", "one") == 10


def test_an_import_into_a_namespace_that_exists_fails_and_imports_nothing(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    sandbox.load("imp", "taken", [("x", [1, 0, 0, 0], None)])
    put(storage, "again/fresh/0.parquet", parquet(rows("f", 4)))
    put(storage, "again/taken/0.parquet", parquet(rows("t", 4)))

    done = run_import(data_api, sandbox, storage, "again")

    assert done["status"] == "Failed" and "Namespace taken already exists" in done["error"]
    assert done["recordsImported"] == 0
    assert sandbox.count("imp", "taken") == 1 and sandbox.count("imp", "fresh") == 0


def test_a_non_empty_default_namespace_refuses_the_import(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    sandbox.load("imp", "", [("x", [1, 0, 0, 0], None)])
    put(storage, "dflt/__default__/0.parquet", parquet(rows("d", 3)))

    done = run_import(data_api, sandbox, storage, "dflt")

    assert done["status"] == "Failed" and "default namespace is not empty" in done["error"]
    assert sandbox.count("imp", "") == 1


def test_files_outside_namespace_directories_are_not_an_import(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    put(storage, "flat/0.parquet", parquet(rows("f", 3)))

    done = run_import(data_api, sandbox, storage, "flat")

    assert done["status"] == "Failed" and "one directory per namespace" in done["error"]
    assert sandbox.stats("imp")["vector_count"] == 0


def test_a_private_bucket_without_an_integration_cannot_be_read(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    put(storage, "private/ns/0.parquet", parquet(rows("p", 3)))

    started = call(data_api, sandbox, "POST", "/bulk/imports", body={"uri": f"s3://{storage.bucket}/private"})
    done = finished(data_api, sandbox, started["id"])

    assert done["status"] == "Failed" and "Unable to access" in done["error"]
    assert sandbox.count("imp", "ns") == 0


@pytest.mark.parametrize(
    ("body", "index", "said"),
    [
        ({"uri": "s3://b/p", "integrationId": "nobody"}, "imp", "not found"),
        ({"uri": "s3://b/p", "errorMode": {"onError": "retry"}}, "imp", "abort or continue"),
        ({"uri": "ftp://b/p"}, "imp", "not an s3://"),
        ({"uri": "s3://b/p"}, "imp-pod", "only for serverless"),
    ],
)
def test_requests_pinecone_refuses_are_refused(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage, body: dict[str, Any], index: str, said: str
) -> None:
    error = call(data_api, sandbox, "POST", "/bulk/imports", body=body, expect=400, index=index)

    assert said in error["message"]
    assert call(data_api, sandbox, "GET", "/bulk/imports", index=index) == {"data": []}


def test_a_bad_record_aborts_the_import_unless_told_to_continue(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    bad = [*rows("g", 3), ("short", [1.0, 2.0], None)]
    put(storage, "abort/ns/0.parquet", parquet(bad))
    put(storage, "cont/ns2/0.parquet", parquet(bad))

    abort_done = run_import(data_api, sandbox, storage, "abort")
    continue_done = run_import(data_api, sandbox, storage, "cont", errorMode={"onError": "continue"})

    assert abort_done["status"] == "Failed" and "'short' has 2 values" in abort_done["error"]
    assert continue_done["status"] == "Completed" and continue_done["recordsImported"] == 3
    assert continue_done["validationResult"] == {"importSuccesses": 3, "importErrors": 1}
    assert sandbox.count("imp", "ns2") == 3


def test_an_import_refuses_the_records_an_upsert_refuses(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    # The import is no way around the vectors API's rules: an id with a NUL, values all zero, a '$' key.
    put(storage, "strict/ns/0.parquet", parquet([*rows("s", 2), ("nul\x00id", [1.0, 0.0, 0.0, 0.0], None)]))
    put(storage, "strict/ns/1.parquet", parquet([("zero", [0.0] * 4, None), ("op", [1.0] * 4, {"$in": "x"})]))

    done = run_import(data_api, sandbox, storage, "strict", errorMode={"onError": "continue"})

    assert done["status"] == "Completed" and done["recordsImported"] == 2, done
    assert done["validationResult"] == {"importSuccesses": 2, "importErrors": 3}, done
    assert sandbox.count("imp", "ns") == 2


def test_a_document_index_imports_jsonl(data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage) -> None:
    lines = [json.dumps({"_id": f"doc{i}", "embedding": [1, i, 0, 0], "genre": "x"}) for i in range(6)]
    put(storage, "docs/shelf/0.jsonl", ("\n".join(lines) + "\n").encode())
    put(storage, "docs/shelf/0.parquet", parquet(rows("ignored", 2)))

    done = run_import(data_api, sandbox, storage, "docs", index="imp-docs")

    assert done["status"] == "Completed" and done["recordsImported"] == 6
    assert sandbox.count("imp-docs", "shelf") == 6


def test_a_document_import_reads_strict_json_as_an_upsert_does(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    """NaN and bytes that are not UTF-8 are no JSON the Documents API takes: such lines are refused, not mended."""
    good = json.dumps({"_id": "ok", "embedding": [1, 0, 0, 0]}).encode()
    nan = b'{"_id": "nan", "embedding": [1, 0, 0, 0], "score": NaN}'
    latin1 = b'{"_id": "latin", "embedding": [1, 0, 0, 0], "title": "caf\xe9"}'
    put(storage, "strict/shelf/0.jsonl", b"\n".join([good, nan, latin1]) + b"\n")
    put(storage, "strict-abort/stack/0.jsonl", b"\n".join([good, nan]) + b"\n")

    done = run_import(data_api, sandbox, storage, "strict", index="imp-docs", errorMode={"onError": "continue"})
    aborted = run_import(data_api, sandbox, storage, "strict-abort", index="imp-docs")

    assert done["status"] == "Completed" and done["recordsImported"] == 1
    assert done["validationResult"] == {"importSuccesses": 1, "importErrors": 2}
    assert aborted["status"] == "Failed" and "record 1: line 2 is not JSON" in aborted["error"]


def test_imports_list_in_pages_and_an_unknown_one_is_not_found(
    data_api: OpenAPI, sandbox: PineconeSandbox, storage: ObjectStorage
) -> None:
    for n in range(3):
        call(
            data_api,
            sandbox,
            "POST",
            "/bulk/imports",
            body={"uri": f"s3://{storage.bucket}/none{n}", "integrationId": storage.integration_id},
        )

    first = call(data_api, sandbox, "GET", "/bulk/imports", query={"limit": 2})
    rest = call(
        data_api, sandbox, "GET", "/bulk/imports", query={"limit": 2, "paginationToken": first["pagination"]["next"]}
    )
    missing = call(data_api, sandbox, "GET", "/bulk/imports/999", expect=404)
    cancelled = call(data_api, sandbox, "DELETE", "/bulk/imports/1")

    assert [m["id"] for m in first["data"]] == ["1", "2"] and [m["id"] for m in rest["data"]] == ["3"]
    assert "pagination" not in rest and "999" in missing["message"] and cancelled == {}
