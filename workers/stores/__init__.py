"""Store adapters: one ``Store`` protocol (``base.py``) and its implementations, opened by ``open_store``."""

from __future__ import annotations

from nsmigrate.orchestrator.connections.database_urls import KeptEngines
from nsmigrate.orchestrator.connections.keys import DEFAULT_ALLOWED_KEY_VARS
from nsmigrate.orchestrator.errors import StoreError
from nsmigrate.orchestrator.settings import DEFAULTS, Settings
from nsmigrate.orchestrator.spec.stores import PgvectorStoreSpec, PineconeStoreSpec
from nsmigrate.workers.stores.base import DEFAULT_NAMESPACE, IdPage, Record, Store, iter_all_ids

__all__ = [
    "DEFAULT_NAMESPACE",
    "IdPage",
    "Record",
    "Store",
    "iter_all_ids",
    "open_retrying_store",
    "open_store",
]


def open_store(
    spec: PineconeStoreSpec | PgvectorStoreSpec,
    allowed_key_vars: str = DEFAULT_ALLOWED_KEY_VARS,
    engines: KeptEngines | None = None,
) -> Store:
    """The adapter for ``spec`` (by ``spec.kind``). Nothing connects yet: clients are created on first use, in the
    process that uses them (after Celery's fork), and secrets are read from the environment then, from the variables
    ``allowed_key_vars`` (the ``Settings`` field) lets a spec name. ``engines``: a pgvector store's engine is taken
    from there, and kept there when the store is closed."""
    if spec.kind == "pinecone" and spec.documents is not None:
        from nsmigrate.orchestrator.records.documents import DocumentFields
        from nsmigrate.workers.stores.pinecone.document_index import PineconeDocumentStore

        return PineconeDocumentStore(spec, DocumentFields.of(spec.documents), allowed_key_vars=allowed_key_vars)
    if spec.kind == "pinecone":
        from nsmigrate.workers.stores.pinecone.store import PineconeStore

        return PineconeStore(spec, allowed_key_vars=allowed_key_vars)
    if spec.kind == "pgvector" and spec.documented:
        from nsmigrate.workers.stores.pgvector.documented import DocumentedPgvectorStore

        return DocumentedPgvectorStore(spec, engines=engines)
    if spec.kind == "pgvector":
        from nsmigrate.workers.stores.pgvector.store import PgvectorStore

        return PgvectorStore(spec, engines=engines)
    raise StoreError(f"unknown store kind {getattr(spec, 'kind', None)!r}", hint="use `pinecone` or `pgvector`")


def open_retrying_store(
    spec: PineconeStoreSpec | PgvectorStoreSpec, settings: Settings = DEFAULTS, engines: KeptEngines | None = None
) -> Store:
    """``open_store`` wrapped in a ``GuardedStore`` without a rate budget: every call backs off and retries on
    429/5xx (``settings.one_off_*``), and a host that does not answer fails fast. For planning and CLI calls outside
    the fleet."""
    from nsmigrate.workers.stores import guarded  # imported on use: it brings the retry and rate-limit machinery

    return guarded.GuardedStore(
        open_store(spec, settings.allowed_key_vars, engines),
        attempts=settings.one_off_attempts,
        max_wait_s=settings.one_off_max_wait_s,
        retry_after_cap_s=settings.retry_after_cap_s,
        no_answer_attempts=settings.one_off_no_answer_attempts,
    )
