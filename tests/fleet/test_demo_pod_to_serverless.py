"""`nsmigrate demo pod-to-serverless` end to end (tests/demos.py): the pod index's ids found by a sweep, every
namespace copied and verified."""

from __future__ import annotations

import pytest

from tests.demos import play


@pytest.mark.timeout(600)
def test_demo_pod_to_serverless_runs_end_to_end_and_verifies() -> None:
    play("pod-to-serverless")
