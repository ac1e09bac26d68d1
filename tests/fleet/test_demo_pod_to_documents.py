"""`nsmigrate demo pod-to-documents` end to end (tests/demos.py): seed 003's pod index into a document index the job
creates, verified without a second `verify`, and a search on the dense field that returns the pod's top-k."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_pod_to_documents_lands_every_namespace_in_a_document_index_and_searches_it() -> None:
    out = play("pod-to-documents")

    assert "805 documents in 31 namespaces" in out, out[-3000:]
    assert "FAILED" not in out and "not verified" not in out
    assert "the same top-k as the source" in out
