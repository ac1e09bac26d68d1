"""One typed settings object, read once at the entry point and passed down.

Environment variables (prefix ``NSMIGRATE_``) or a ``.env`` file. Secrets (Pinecone API keys, Supabase keys) are not
settings: specs name the environment variable that holds them and the store adapters read it when they connect, if
``allowed_key_vars`` lets a spec name it.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.connections.keys import DEFAULT_ALLOWED_KEY_VARS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NSMIGRATE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/nsmigrate",
        description="SQLAlchemy URL of the job table database (Postgres).",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker, locks and rate buckets.")
    visibility_timeout_s: int = Field(3600, description="Redis redelivers an unacked task after this; > any batch.")
    lister_lock_ttl_s: float = Field(
        30,
        gt=0,
        description="A lister's lock expires this long after its worker died (a live lister keeps it "
        "fresh), so a resumed or redelivered lister can take over a namespace from a killed one.",
    )
    max_batches_in_flight: int = Field(64, description="Default bound on queued+running copy batches per namespace.")
    retry_attempts: int = Field(8, ge=1, description="Attempts per store request on 429/5xx before the batch fails.")
    retry_max_wait_s: float = Field(30, gt=0, description="Longest backoff between two attempts (Retry-After wins).")
    rate_guard_s: float = Field(
        0.1,
        ge=0,
        description="Seconds added to the rate budget's 1 s window: absorbs jitter between a worker's "
        "admission and its request reaching the server, so the server never sees more than the budget in 1 s.",
    )
    allowed_key_vars: str = Field(
        DEFAULT_ALLOWED_KEY_VARS,
        description="The environment variables a spec may name as its Pinecone key (api_key_env): comma-separated "
        "shell-style patterns. A spec naming any other is refused before a key is read "
        "(orchestrator.connections.keys).",
    )
    flower_user: str = Field("admin", description="Flower basic-auth user.")
    flower_password_env: str = Field("NSMIGRATE_FLOWER_PASSWORD", description="Env var holding Flower's password.")


def load_settings(**overrides: object) -> Settings:
    """Build the settings once (entry points only); ``overrides`` win over the environment."""
    return Settings(**overrides)  # type: ignore[arg-type]
