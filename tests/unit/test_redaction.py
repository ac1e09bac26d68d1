"""The one redaction of connection URLs (``orchestrator.redaction``): every secret hidden, everything else readable."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.redaction import redact_url, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://app:s3cret@db:5432/jobs", "postgresql+psycopg://app:***@db:5432/jobs"),
        ("postgresql+psycopg://app@db/jobs?password=s3cret", "postgresql+psycopg://app@db/jobs?password=***"),
        (
            "postgresql://app@db/jobs?sslmode=require&pass=s3cret&application_name=x",
            "postgresql://app@db/jobs?sslmode=require&pass=***&application_name=x",
        ),
        ("postgresql://app:p@ss@w0rd@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),  # raw "@" in the password
        ("postgresql://app:a/b?c#d@db/jobs", "postgresql://app:***@db/jobs"),  # raw "/", "?", "#" too
        ("redis://:s3cret@broker:6379/0", "redis://:***@broker:6379/0"),
        ("redis://broker:6379/0?password=s3cret", "redis://broker:6379/0?password=***"),
        (
            "rediss://default:s3cret@broker:6380/0?ssl_cert_reqs=none",
            "rediss://default:***@broker:6380/0?ssl_cert_reqs=none",
        ),
        ("https://host/path?token=abc&x=1&api_key=k", "https://host/path?token=***&x=1&api_key=***"),
        ("host=db user=app password=s3cret dbname=jobs", "host=db user=app password=*** dbname=jobs"),
        ("host=db password='s3 cret' dbname=jobs", "host=db password=*** dbname=jobs"),
        ("postgresql+psycopg://app@db:5432/jobs", "postgresql+psycopg://app@db:5432/jobs"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_a_url_is_shown_without_its_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("text", "url", "secrets"),
    [
        (  # a parser that split the user info at the password's first "@" took its tail for the host
            "failed to resolve host 'ss-tail@db': Name or service not known",
            "postgresql://app:p@ss-tail@db:5432/jobs",
            ["ss-tail", "p@ss"],
        ),
        (
            "Could not parse SQLAlchemy URL from string 'postgresql://app:s3cret@db:x/jobs'",
            "postgresql://app:s3cret@db:x/jobs",
            ["s3cret"],
        ),
        ("invalid password 's3cret' for broker", "redis://broker/0?password=s3cret", ["s3cret"]),
        ("bad dsn: password=s3cret", "host=db password=s3cret", ["s3cret"]),
    ],
)
def test_an_error_about_a_url_loses_every_secret_of_it(text: str, url: str, secrets: list[str]) -> None:
    shown = scrub(text, url)

    assert all(secret not in shown for secret in secrets), shown
    assert "***" in shown
