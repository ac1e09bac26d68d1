"""The store identity's normal form (``orchestrator.spec.store_identity``): spelling taken out, stores kept
apart."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.selection import same_store
from nsmigrate.orchestrator.spec.jobspec import parse_spec
from nsmigrate.orchestrator.spec.store_identity import host_identity, spec_identity
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5081", "loopback:5081"),
        ("http://localhost:5081", "loopback:5081"),
        ("HTTP://LocalHost:5081/", "loopback:5081"),
        ("http://localhost.:5081", "loopback:5081"),
        ("http://[::1]:5081", "loopback:5081"),
        ("http://127.4.5.6:5081", "loopback:5081"),
        ("http://[::ffff:127.0.0.1]:5081", "loopback:5081"),
        ("http://0.0.0.0:5081", "loopback:5081"),
        ("http://db.localhost:5081", "loopback:5081"),
        ("https://idx-ABC.svc.region-1.pinecone.example", "idx-abc.svc.region-1.pinecone.example:443"),
        ("https://idx-abc.svc.region-1.pinecone.example.:443/", "idx-abc.svc.region-1.pinecone.example:443"),
        ("idx-abc.svc.region-1.pinecone.example", "idx-abc.svc.region-1.pinecone.example:443"),
        ("http://example.com", "example.com:80"),
        ("http://example.com:8080/some/path", "example.com:8080/some/path"),  # a server's index under a path
        ("http://example.com:8080//some/./path/", "example.com:8080/some/path"),
        ("http://LOCALHOST:8080/indexes/a?x=1#f", "loopback:8080/indexes/a"),
        ("http://[2001:db8::1]:5081", "[2001:db8::1]:5081"),
        ("http://user@example.com:81", "example.com:81"),
    ],
)
def test_host_identity_takes_the_spelling_out(url: str, expected: str) -> None:
    assert host_identity(url) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://127.0.0.1:5081", "http://127.0.0.1:5082"),  # another port, another server
        ("http://example.com", "https://example.com"),  # their default ports differ
        ("https://idx-a.svc.pinecone.io", "https://idx-b.svc.pinecone.io"),
        ("http://10.0.0.1:5081", "http://127.0.0.1:5081"),
        ("http://h:5081/indexes/a", "http://h:5081/indexes/b"),  # two indexes served under paths of one port
        ("http://h:5081/indexes/a", "http://h:5081/Indexes/a"),  # a server reads a path's case
        ("http://h:5081/indexes/a", "http://h:5081"),
    ],
)
def test_different_servers_stay_apart(a: str, b: str) -> None:
    assert host_identity(a) != host_identity(b)


def pinecone(**fields: Any) -> PineconeStoreSpec:
    return PineconeStoreSpec(kind="pinecone", **fields)


def pgvector(**fields: Any) -> PgvectorStoreSpec:
    return PgvectorStoreSpec(kind="pgvector", **fields)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (pinecone(host="http://127.0.0.1:5081"), pinecone(host="http://localhost:5081/"), True),
        (pinecone(host="http://127.0.0.1:5081/indexes/a/"), pinecone(host="http://localhost:5081/indexes/a"), True),
        (pinecone(host="http://127.0.0.1:5081/indexes/a"), pinecone(host="http://127.0.0.1:5081/indexes/b"), False),
        (pinecone(host="http://127.0.0.1:5081"), pinecone(host="http://127.0.0.1:5081", api_key_env="OTHER"), True),
        (pinecone(index="idx"), pinecone(index="idx"), True),
        (pinecone(index="idx"), pinecone(index="idx", api_key_env="OTHER_PROJECT_KEY"), False),
        (pinecone(index="idx"), pinecone(index="idx", control_host="http://127.0.0.1:5080"), False),
        (pinecone(index="idx"), pinecone(host="https://idx-abc.svc.pinecone.io"), False),  # until resolved
        (pgvector(table="emb"), pgvector(table="emb", schema="documented"), True),  # the same tables
        (pgvector(table="emb"), pgvector(table="emb", layout="single_table"), False),
        (pgvector(table="emb"), pgvector(table="other"), False),
        (pgvector(table="emb"), pgvector(table="emb", database_url_env="OTHER_URL"), False),  # until resolved
    ],
)
def test_spec_identity(a: Any, b: Any, same: bool) -> None:
    assert (spec_identity(a) == spec_identity(b)) is same


def test_the_servers_identities_decide_over_the_specs() -> None:
    spec = parse_spec(
        {
            "name": "x",
            "source": {"kind": "pinecone", "index": "idx"},
            "target": {"kind": "pinecone", "host": "https://idx-abc.svc.pinecone.io"},
        }
    )
    resolved = Inventory("idx", 8, {}, identity="pinecone:idx-abc.svc.pinecone.io:443")
    elsewhere = Inventory("other", 8, {}, identity="pinecone:idx-other.svc.pinecone.io:443")
    unasked = Inventory("idx", 8, {})
    assert same_store(spec, resolved, resolved)
    assert not same_store(spec, resolved, elsewhere)
    assert not same_store(spec, unasked, resolved)  # one not asked: only the specs, which differ
    assert not same_store(spec, resolved, None)
