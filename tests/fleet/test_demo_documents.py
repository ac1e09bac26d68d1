"""`nsmigrate demo documents` end to end (tests/demos.py): seed 000's refactor from a legacy serverless vector index
into a document index the job creates, verified without a second `verify`, and a search on the dense field that
returns the source's top-k."""

from __future__ import annotations

import re

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_documents_lands_every_namespace_in_a_document_index_and_searches_it() -> None:
    out = play("documents")

    assert "805 documents in" in out, out[-3000:]
    assert len(set(re.findall(r"creator_[\w.-]+_twin_[\w-]+", out))) >= 30
    assert "FAILED" not in out and "not verified" not in out
    assert "the same top-k as the source" in out
