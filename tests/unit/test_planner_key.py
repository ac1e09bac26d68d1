"""The planner's Redis key names a job table by its URL without the URL's secrets (issue 27, case 10)."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.messaging.submissions import database_fingerprint

URL = "postgresql+psycopg://app:s3cret@db.internal:5432/jobs"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (URL, "postgresql+psycopg://app:0ther@db.internal:5432/jobs"),
        (URL, "postgresql+psycopg://app:p@ss@db.internal:5432/jobs"),
        ("postgresql://app@db.internal/jobs?password=s3cret", "postgresql://app@db.internal/jobs?password=0ther"),
    ],
)
def test_the_fingerprint_does_not_depend_on_the_password(one: str, other: str) -> None:
    # Were the password hashed in, anyone reading Redis could test guesses against the key offline.
    assert database_fingerprint(one) == database_fingerprint(other)


def test_other_job_tables_keep_other_fingerprints() -> None:
    assert database_fingerprint(URL) != database_fingerprint(URL.replace("/jobs", "/jobs2"))
    assert database_fingerprint(URL) != database_fingerprint(URL.replace("db.internal", "db2.internal"))
    assert database_fingerprint(URL) != database_fingerprint(URL.replace("app:", "other:"))
