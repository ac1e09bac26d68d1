"""`nsmigrate demo pgvector` end to end (tests/demos.py): each step of the round trip verified, and the seed-shaped
3072-d rows get an ANN index, which answers the similarity search."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_pgvector_runs_end_to_end_and_verifies() -> None:
    output = play("pgvector")

    assert "similarity search served by hnsw over halfvec(3072)" in output
    assert "Index Scan using embeddings_default_vector_idx" in output
