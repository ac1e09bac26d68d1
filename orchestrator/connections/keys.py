"""Keys stay home: which environment variables a spec may name as a Pinecone key, and where a key may be sent.

A spec is text anyone can write, and the process that plans or runs it (a fleet's worker) holds other secrets in its
environment. So a spec names only key variables the operator allowed (``NSMIGRATE_ALLOWED_KEY_VARS``: shell-style
patterns), and a key travels only over TLS, except to this machine (loopback), and never to a host that carries
credentials of its own. Both are checked where the key is read, in every process, before any request is sent.
"""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.redaction import secret_parameters

#: The variables a spec may name by default: Pinecone's own, and any other that says it holds a Pinecone key.
DEFAULT_ALLOWED_KEY_VARS = "PINECONE_API_KEY,PINECONE_API_KEY_*,*_PINECONE_API_KEY,*_PINECONE_KEY"


def allowed_patterns(allowed_key_vars: str) -> list[str]:
    """The patterns of the comma-separated setting, blanks left out."""
    return [p.strip() for p in allowed_key_vars.split(",") if p.strip()]


def key_var_refusal(name: str, allowed_key_vars: str) -> str | None:
    """Why a spec may not name ``name`` as its key variable under the setting ``allowed_key_vars``, or None."""
    patterns = allowed_patterns(allowed_key_vars)
    if any(fnmatchcase(name, p) for p in patterns):
        return None
    return (
        f"api_key_env {name} is not a key variable the operator allowed (NSMIGRATE_ALLOWED_KEY_VARS: "
        f"{', '.join(patterns) or 'none'}); no key was read or sent — name the variable that holds the Pinecone key, "
        "or have the operator add it to NSMIGRATE_ALLOWED_KEY_VARS where the spec is planned and run"
    )


def credentials_refusal(url: str) -> str | None:
    """Why ``url`` may not name a store: credentials inside it (they would be sent, and shown wherever the store's
    name is), or None."""
    if "@" in urlsplit(url).netloc:
        return "holds credentials (user@ or user:password@); give the bare host: the key comes from api_key_env"
    secrets = secret_parameters(url)
    if secrets:
        shown = ", ".join(f"{name}=…" for name in secrets)
        return f"holds a secret in its query string ({shown}); give the bare host: the key comes from api_key_env"
    return None


def key_destination_refusal(url: str) -> str | None:
    """Why an API key may not be sent to ``url`` (a data-plane or control-plane address), or None: credentials
    inside the URL, or plain http to a host that is not loopback (the key would cross the network readable)."""
    refusal = credentials_refusal(url)
    if refusal is not None:
        return refusal
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        return (
            f"is plain http to {parts.hostname}, which is not loopback: the API key is only sent over TLS "
            "(https://…), or over http to a loopback address (127.0.0.1, localhost, ::1)"
        )
    return None


def check_service_url(url: str, url_env: str) -> None:
    """Refuse (``SpecError``) to send a key to the service URL held in ``url_env`` (a Supabase project) unless over
    TLS or to loopback, and without credentials in it; the URL itself is not shown."""
    refusal = key_destination_refusal(url)
    if refusal is not None:
        raise SpecError(f"the URL in {url_env} {refusal}", hint=f"set {url_env} to the https:// URL")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost`` or an address of 127.0.0.0/8 or ::1."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
