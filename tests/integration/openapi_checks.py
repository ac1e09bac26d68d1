"""Requests to the local data plane checked against Pinecone's own OpenAPI files (``tests/fixtures/reference``).

Each request is sent over plain HTTP the way the SDK sends it, checked against the spec as a request (unless it is
meant to break it), and its real response is checked against the schema the spec gives for that operation and status
(``openapi-core``). The conformance tests of each API version and area share these.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import httpx
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from nsmigrate_sandbox.document_schema import DocumentSchema, read_schema
from nsmigrate_sandbox.documents import document_index
from nsmigrate_sandbox.pinecone_server import IndexSpec

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "pinecone-api"
DATA_HOST_URL = "https://index-host.example"  # the data plane spec's server is https://{index_host}
CONTROL_HOST_URL = "https://api.pinecone.io"


def sdk_headers(version: str) -> dict[str, str]:
    """What the SDK of API ``version`` sends with every request."""
    return {"Api-Key": "test-key", "X-Pinecone-Api-Version": version}


@functools.cache
def load_api(name: str) -> OpenAPI:
    """One of the reference specs, by file name without ``.oas.yaml`` (``db_data_2026-07``); read once."""
    return OpenAPI.from_file_path(str(REFERENCE / f"{name}.oas.yaml"))


def checked_call(
    api: OpenAPI,
    base: str,
    host_url: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    query: dict[str, Any] | None = None,
    body: Any = None,
    expect: int = 200,
    valid_request: bool = True,
) -> Any:
    """Send one request to ``base``, the server's own address; check it (when ``valid_request``) and its response
    against ``api`` as sent to ``host_url``, the spec's server; return the response JSON."""
    response = httpx.request(method, base + path, params=query, json=body, headers=headers, timeout=10)
    assert response.status_code == expect, response.text
    request = MockRequest(host_url, method, path, args=query, headers=headers, data=response.request.content or None)
    if valid_request:
        api.validate_request(request)
    api.validate_response(
        request, MockResponse(response.content, status_code=response.status_code, headers=dict(response.headers))
    )
    return response.json() if response.content else None


def dense_document_index(name: str) -> IndexSpec:
    """A document index of one 4-dimensional dense field, ``embedding`` (cosine)."""
    schema = read_schema({"fields": {"embedding": {"type": "dense_vector", "dimension": 4, "metric": "cosine"}}})
    assert isinstance(schema, DocumentSchema)
    return document_index(name, schema)
