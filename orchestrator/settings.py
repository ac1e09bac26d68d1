"""One typed settings object, read once at the entry point and passed down: every value an operator may tune for the
whole installation (a job's own choices are in its spec, ``orchestrator.spec.jobspec``; the outside world's facts in
``orchestrator.limits``). Each is documented in ``docs/manual.md``'s settings table.

Environment variables (prefix ``NSMIGRATE_``) or a ``.env`` file. Secrets (Pinecone API keys, Supabase keys) are not
settings: specs name the environment variable that holds them and the store adapters read it when they connect, if
``allowed_key_vars`` lets a spec name it.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nsmigrate.orchestrator.connections.keys import DEFAULT_ALLOWED_KEY_VARS
from nsmigrate.orchestrator.connections.redis_urls import credentials_in_userinfo
from nsmigrate.orchestrator.redaction import password_problem


class Settings(BaseSettings):
    # hide_input_in_errors: pydantic's own text of a refused value repeats it, and a URL holds a password.
    model_config = SettingsConfigDict(
        env_prefix="NSMIGRATE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/nsmigrate",
        description="SQLAlchemy URL of the job table database (Postgres).",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker, locks and rate buckets.")
    visibility_timeout_s: int = Field(3600, description="Redis redelivers an unacked task after this; > any batch.")
    batch_max_lost_attempts: int = Field(
        3,
        ge=1,
        description="A copy batch whose worker died this many times while it ran (killed: out of memory, SIGKILL; its "
        "host lost), each time handed out again by Redis, is not started again: it ends failed with that reason, "
        "for `nsmigrate retry` once the cause is fixed, instead of being redelivered for ever.",
    )
    lister_lock_ttl_s: float = Field(
        30,
        gt=0,
        description="A lister's lock expires this long after its worker died (a live lister keeps it "
        "fresh), so a resumed or redelivered lister can take over a namespace from a killed one.",
    )
    cleanup_lock_ttl_s: float = Field(
        30,
        gt=0,
        description="A cleanup's lock on its namespace run expires this long after its worker died (a live cleanup "
        "keeps it fresh), so a redelivered cleanup, or `nsmigrate cleanup`, takes up a run the dead one left cleaning.",
    )
    namespace_lock_ttl_s: float = Field(
        60,
        gt=0,
        description="A namespace's lock (a deletion holds it alone, a write beside other writes) expires this long "
        "after its holder died; a live deletion keeps it fresh, a write holds it for one request.",
    )
    namespace_lock_wait_s: float = Field(
        300,
        gt=0,
        description="How long a deletion or write waits for a namespace another one holds before it fails (retried "
        "as a store request is).",
    )
    worker_heartbeat_s: float = Field(
        2.0,
        gt=0,
        description="How often a worker publishes its heartbeat event (one Redis PUBLISH), from which Flower knows it "
        "is alive: Flower shows a worker offline after twice this without one, and one that started before Flower "
        "only from its next heartbeat. Nothing of nsmigrate's own reads it.",
    )
    retry_attempts: int = Field(8, ge=1, description="Attempts per store request on 429/5xx before the batch fails.")
    retry_max_wait_s: float = Field(30, gt=0, description="Longest backoff between two attempts (Retry-After wins).")
    retry_after_cap_s: float = Field(
        600, gt=0, description="A Retry-After longer than this is taken as this: a bogus header must not park a worker."
    )
    one_off_attempts: int = Field(
        6,
        ge=1,
        description="Attempts per store request on 429/5xx outside the fleet's tasks (a command, the fleet planner).",
    )
    one_off_max_wait_s: float = Field(10, gt=0, description="Longest backoff between two such attempts.")
    one_off_no_answer_attempts: int = Field(
        3,
        ge=1,
        description="Attempts of such a request when the host does not answer at all (refused, unresolvable, timed "
        "out): a wrong host fails fast.",
    )
    identity_marker_timeout_s: float = Field(
        20,
        gt=0,
        description="How long a marker written through a cleanup's or rollback's source may take to be readable "
        "(proving two Pinecone hosts apart, orchestrator.spec.store_identity); after it the deletion is "
        "refused.",
    )
    erasure_settle_timeout_s: float = Field(
        30,
        gt=0,
        description="How long an erasure polls for a deletion to show in the store's counts and reads before it "
        "reports the place as not confirmed.",
    )
    rate_guard_s: float = Field(
        0.1,
        ge=0,
        description="Seconds added to the rate budget's 1 s window: absorbs jitter between a worker's "
        "admission and its request reaching the server, so the server never sees more than the budget in 1 s.",
    )
    plan_read_threads: int = Field(
        16,
        ge=1,
        description="Store requests in flight at once while a job is planned (inventories, each namespace's id "
        "checks), all within the spec's rate budget; enough for the few chains a plan has, few enough for one process.",
    )
    sync_threads: int = Field(
        8,
        ge=1,
        description="Namespaces `nsmigrate sync` scans at once (each lists its source and fetches both sides, within "
        "the spec's rate budget); a job of many namespaces would otherwise wait out each one's round trips in turn.",
    )
    import_write_threads: int = Field(
        8,
        ge=1,
        description="Namespaces a `strategy: import` job writes as import files at once (each lists, fetches and "
        "uploads its own files; the fetches within the spec's read budget): one after the other, the files take the "
        "sum of every namespace's round trips and uploads.",
    )
    small_group_max_runs: int = Field(
        16,
        ge=1,
        description="Small namespaces (one list page and one batch) sent in one task at most; they go "
        "`small_group_threads` at a time, so many more would hold one worker thread for long against a slow data "
        "plane.",
    )
    small_group_min_tasks: int = Field(
        64,
        ge=1,
        description="A job's small namespaces are cut into no fewer tasks than this (or one per namespace): fewer "
        "tasks than the fleet's threads leave some idle (the default fleet has 32 copy threads).",
    )
    whole_reads: bool = Field(
        False,
        description="Read a small namespace listed whole in one page by one query (values and metadata, from the "
        "namespace's query budget) instead of a fetch (the index's 100 a second), kept only when it returned every "
        "listed id: a job of many small namespaces is then bound by its listing. A query reads as the listing does, "
        "up to the index's lag behind its writes, where a fetch reads the latest: for a source the application no "
        "longer writes.",
    )
    small_group_threads: int = Field(
        8,
        ge=1,
        description="Runs of one small-namespace task listed and copied at once: one after the other, a job of many "
        "small namespaces used a fraction of its fetch budget in its first second. A busy worker is handed its "
        "tasks slowly (its consumer waits for the interpreter behind the threads already running), so the first "
        "second's runs come sooner from fewer tasks of more threads: 8 started 80 runs 0.2 s after the first task "
        "came, 4 took 0.4-0.6 s.",
    )
    pgvector_copy_chunk_rows: int = Field(
        5000,
        ge=1,
        description="Rows per INSERT … SELECT transaction of `nsmigrate pgvector copy/move/legacy` (each one a point "
        "a stopped copy resumes from).",
    )
    cutover_check_in_flight: int = Field(
        32,
        ge=1,
        description="Queries `nsmigrate cutover check` keeps in flight at once to hold its pace (--qps).",
    )
    collection_control_plane_outage_s: float = Field(
        3600,
        gt=0,
        description="How long the Pinecone control plane may fail on end (5xx, 429, no answer) while a `strategy: "
        "collection` job polls it before the job's step gives up, its runs `list_failed` (`nsmigrate retry` goes on). "
        "Waiting for a collection or an index that is still Initializing is not bounded: a big pod index takes hours.",
    )
    allowed_key_vars: str = Field(
        DEFAULT_ALLOWED_KEY_VARS,
        description="The environment variables a spec may name as its Pinecone key (api_key_env): comma-separated "
        "shell-style patterns. A spec naming any other is refused before a key is read "
        "(orchestrator.connections.keys).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="How a worker writes its log: `text` (Celery's lines) or `json` (one object per line, with the "
        "job, namespace, batch and run of the task that logged it; `nsmigrate worker --log-format` overrides it).",
    )
    flower_user: str = Field("admin", description="Flower basic-auth user.")
    flower_password_env: str = Field("NSMIGRATE_FLOWER_PASSWORD", description="Env var holding Flower's password.")

    @field_validator("database_url")
    @classmethod
    def _database_password_readable(cls, url: str) -> str:
        """Refused when a raw character cuts its password short (the URL is never repeated)."""
        problem = password_problem(url)
        if problem is not None:
            raise ValueError(f"the job table's URL cannot be read: {problem}")
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_credentials_in_userinfo(cls, url: str) -> str:
        """A ``?password=`` (or ``?username=``) moved into the user info, where kombu reads it too; refused when a raw
        character cuts its password short (redis-py would show a piece of it as the port)."""
        problem = password_problem(url)
        if problem is not None:
            raise ValueError(f"the Redis URL cannot be read: {problem}")
        return credentials_in_userinfo(url)


#: The defaults, the environment not read: for the parameters of functions an entry point's settings override.
DEFAULTS = Settings.model_construct()


def load_settings(**overrides: object) -> Settings:
    """Build the settings once (entry points only); ``overrides`` win over the environment."""
    return Settings(**overrides)  # type: ignore[arg-type]


#: Tasks one worker process runs at once: its thread count under `--pool threads`, 1 in a prefork child. Set by
#: `nsmigrate worker`; sizes the process's job-table and broker pools, so no task waits for a connection.
TASK_SLOTS_ENV = "NSMIGRATE_TASK_SLOTS"


def task_slots() -> int:
    try:
        return max(1, int(os.environ.get(TASK_SLOTS_ENV, "1")))
    except ValueError:
        return 1
