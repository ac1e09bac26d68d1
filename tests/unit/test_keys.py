"""Keys stay home (``orchestrator.connections.keys``): which variables a spec may name as its key, and where a key may
go."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.connections.keys import (
    DEFAULT_ALLOWED_KEY_VARS,
    credentials_refusal,
    key_destination_refusal,
    key_var_refusal,
)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("PINECONE_API_KEY", True),
        ("PINECONE_API_KEY_PROD", True),
        ("TEAM_A_PINECONE_API_KEY", True),
        ("NSMIGRATE_TEST_PINECONE_KEY", True),
        ("SUPABASE_KEY", False),
        ("AWS_SECRET_ACCESS_KEY", False),
        ("NSMIGRATE_FLOWER_PASSWORD", False),
        ("NSMIGRATE_DATABASE_URL", False),
        ("PINECONE_API_KEYS", False),  # not the pattern PINECONE_API_KEY_*
        ("pinecone_api_key", False),  # patterns match case-sensitively, as variable names are
    ],
)
def test_the_default_allows_only_variables_that_say_they_hold_a_pinecone_key(name: str, allowed: bool) -> None:
    assert (key_var_refusal(name, DEFAULT_ALLOWED_KEY_VARS) is None) is allowed


@pytest.mark.parametrize(
    ("setting", "name", "allowed"),
    [
        ("VEC_*", "VEC_KEY", True),
        ("VEC_*", "PINECONE_API_KEY", False),  # the setting replaces the default
        (" PINECONE_API_KEY , ,OTHER ", "OTHER", True),  # blanks and empty items are ignored
        ("", "PINECONE_API_KEY", False),  # an empty setting allows none
    ],
)
def test_the_setting_replaces_the_default(setting: str, name: str, allowed: bool) -> None:
    refusal = key_var_refusal(name, setting)

    assert (refusal is None) is allowed
    if refusal is not None:
        assert f"api_key_env {name} is not a key variable the operator allowed" in refusal
        assert "NSMIGRATE_ALLOWED_KEY_VARS" in refusal


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://idx-abc.svc.pinecone.io", None),
        ("https://api.pinecone.io", None),
        ("idx-abc.svc.pinecone.io", None),  # the control plane's answer: the SDK adds https
        ("http://127.0.0.1:5081", None),
        ("http://127.9.9.9:5081", None),
        ("http://localhost:5081", None),
        ("http://LOCALHOST.:5081", None),
        ("http://[::1]:5081", None),
        ("http://10.0.0.5:5081", "plain http to 10.0.0.5"),
        ("http://localhost.example.com", "plain http to localhost.example.com"),
        ("http://127.0.0.1.nip.io", "plain http to 127.0.0.1.nip.io"),
        ("http://[::2]:5081", "plain http to ::2"),
        ("https://user:pw@idx.svc.pinecone.io", "holds credentials"),
        ("https://token@idx.svc.pinecone.io", "holds credentials"),
        ("http://user:pw@127.0.0.1:5081", "holds credentials"),
    ],
)
def test_a_key_goes_only_over_tls_or_to_loopback_and_never_with_credentials(url: str, refused: str | None) -> None:
    refusal = key_destination_refusal(url)

    assert (refusal is None) if refused is None else (refusal is not None and refused in refusal)
    assert "pw" not in (refusal or "")


def test_credentials_alone_are_what_a_spec_refuses_when_it_is_read() -> None:
    assert credentials_refusal("http://10.0.0.5:5081") is None  # refused where a key would be sent, not in the spec
    assert credentials_refusal("https://u:pw@h") is not None
