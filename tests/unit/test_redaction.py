"""The one redaction of connection URLs (``orchestrator.redaction``): every secret hidden, everything else readable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.redaction import redact_text, redact_url, scrub, secret_parameters
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec


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
        (  # SQLAlchemy's host of a raw "@", shown alone by a message that names it
            "host 'pQ7zr2' unknown, user catalog, password Xk9",
            "postgresql+psycopg://catalog:Xk9@pQ7zr2@127.0.0.1:5432/app",
            ["pQ7zr2", "Xk9"],
        ),
        (  # urllib's port of a raw "/" (redis-py's from_url)
            "Port could not be cast to integer value as 'Xk9'",
            "redis://nsm:Xk9/pQ7zr2@127.0.0.1:6379/0",
            ["Xk9"],
        ),
        ("invalid password 's3cret' for broker", "redis://broker/0?password=s3cret", ["s3cret"]),
        ("bad dsn: password=s3cret", "host=db password=s3cret", ["s3cret"]),
    ],
)
def test_an_error_about_a_url_loses_every_secret_of_it(text: str, url: str, secrets: list[str]) -> None:
    shown = scrub(text, url)

    assert all(secret not in shown for secret in secrets), shown
    assert "***" in shown


def test_a_short_piece_of_a_password_is_hidden_only_as_a_whole_word() -> None:
    shown = scrub("postgresql at 127.0.0.1 said p is wrong", "postgresql://app:p@ss@127.0.0.1/jobs")

    assert shown == "postgresql at 127.0.0.1 said *** is wrong"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Pinecone refused describe_index_stats (404) [store=127.0.0.1:5081/?password=hunter2 op=stats]",
            "Pinecone refused describe_index_stats (404) [store=127.0.0.1:5081/?password=*** op=stats]",
        ),
        ("'idx.example.io?api_key=hunter2' needs its scheme", "'idx.example.io?api_key=***' needs its scheme"),
        (
            "could not reach http://u:hunter2@h:1/x?token=hunter2&b=1, giving up",
            "could not reach http://u:***@h:1/x?token=***&b=1, giving up",
        ),
        (
            "index at https://h/indexes/a (path kept) answered 503",
            "index at https://h/indexes/a (path kept) answered 503",
        ),
    ],
)
def test_a_text_shows_no_secret_of_any_url_or_address_in_it(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_every_error_and_every_store_label_passes_the_redaction() -> None:
    host = "http://127.0.0.1:5081/?api_key=hunter2"
    label = PineconeStoreSpec.model_construct(host=host, index=None).label  # as a stored spec may still hold it
    assert label == "127.0.0.1:5081/?api_key=***"
    error = StoreError(f"Pinecone refused {host}", hint=f"check {host}", store=host.split("://")[1])
    assert "hunter2" not in str(error) and "hunter2" not in error.message + error.hint + str(error.ids)


@pytest.mark.parametrize("query", ["?password=hunter2", "/?api_key=hunter2", "/x?region=eu&token=hunter2"])
def test_a_store_address_with_a_secret_in_its_query_string_is_refused_without_echoing_it(query: str) -> None:
    with pytest.raises(ValidationError) as refused:
        PineconeStoreSpec(host=f"https://idx-abc.svc.example.io{query}")
    [error] = refused.value.errors()  # what nsmigrate shows of it (pydantic's own text repeats the input)
    assert "holds a secret in its query string" in error["msg"] and "hunter2" not in error["msg"]
    assert secret_parameters(f"https://h{query}") == [query.rpartition("&")[2].split("=")[0].strip("/?")]
    assert PineconeStoreSpec(host="https://h/x?region=eu").label == "h/x?region=eu"  # nothing secret: as it is
