"""The stores a job spec names, validated: a Pinecone index (PineconeStoreSpec: by host or name, its key's
variable, ids from a catalogue or by enumeration for a pod, the index to create, records as text) or pgvector tables
(PgvectorStoreSpec); and the model base every part of a spec shares (unknown fields refused).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nsmigrate.orchestrator import pgvector_layout
from nsmigrate.orchestrator.connections.keys import credentials_refusal
from nsmigrate.orchestrator.limits import (
    DOCUMENT_FIELD_MAX_BYTES,
    DOCUMENT_RESERVED_PREFIXES,
    QUERY_MAX_TOP_K,
)
from nsmigrate.orchestrator.redaction import redact_text, redact_url

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # always fullmatch: "$" would accept a trailing "\n"


class _Model(BaseModel):
    # Unknown keys are typos far more often than intent: refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_env_name(value: str, field: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"{field} must be the NAME of an environment variable (like PINECONE_API_KEY), not a value; "
            "put the secret in the environment and name it here"
        )
    return value


def _env_field(value: str, info: ValidationInfo) -> str:
    return _check_env_name(value, info.field_name or "url_env")


def _sql_identifier(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise ValueError(f"{value!r} must be a lower-case SQL identifier (a-z, 0-9, _)")
    return value


EnvName = Annotated[str, AfterValidator(_env_field)]
SqlName = Annotated[str, AfterValidator(_sql_identifier)]


class IdCatalogue(_Model):
    """Where the ids of a source that cannot list them are kept: rows of (namespace, id), e.g. the chunk table an
    application writes next to its vectors. ``file``: a CSV with a ``namespace,id`` header (the default namespace as
    ``__default__`` or empty); ``postgres``: a table in the database named by ``database_url_env``; ``supabase``: a
    table read through the ``supabase`` client. Read in pages ordered by id."""

    source: Literal["file", "postgres", "supabase"] = "file"
    path: str | None = Field(default=None, description="file: CSV namespace,id; relative to the spec file.")
    database_url_env: EnvName = Field(default="NSMIGRATE_CATALOGUE_URL", description="postgres: env var with its URL.")
    url_env: EnvName = Field(default="SUPABASE_URL", description="supabase: env var holding the project URL.")
    key_env: EnvName = Field(default="SUPABASE_KEY", description="supabase: env var holding the service key.")
    table: SqlName = Field(default="vector_ids", description="postgres/supabase: the table of (namespace, id) rows.")
    namespace_column: SqlName = "namespace"
    id_column: SqlName = "id"

    @model_validator(mode="after")
    def _complete(self) -> IdCatalogue:
        if self.source == "file" and not self.path:
            raise ValueError("source `file` needs `path` (a CSV with a namespace,id header)")
        return self


class Enumeration(_Model):
    """How the ids of a Pinecone source are found. ``list`` pages them (serverless indexes only); a pod index cannot
    list, so it needs ``catalogue`` (the ids kept elsewhere, ``catalogue:``) or ``sweep`` (queries with random
    vectors, ``top_k`` ids each, until every namespace's count in describe_index_stats is covered, at most
    ``max_queries`` per namespace; a namespace the sweep cannot cover fails its verification)."""

    mode: Literal["list", "catalogue", "sweep"] = "list"
    catalogue: IdCatalogue | None = None
    top_k: int = Field(default=QUERY_MAX_TOP_K, gt=0, le=QUERY_MAX_TOP_K, description="sweep: ids per query.")
    max_queries: int = Field(default=1000, gt=0, le=1_000_000, description="sweep: queries per namespace, at most.")

    @model_validator(mode="after")
    def _complete(self) -> Enumeration:
        if self.mode == "catalogue" and self.catalogue is None:
            raise ValueError("mode `catalogue` needs `catalogue:` (source file, postgres or supabase)")
        if self.mode != "catalogue" and self.catalogue is not None:
            raise ValueError(f"`catalogue:` is only read with mode `catalogue`, not `{self.mode}`")
        return self


class CreateIndex(_Model):
    """A Pinecone target index nsmigrate creates (serverless) when it does not exist yet; an existing index of the
    same dimension and metric is used as it is. Dimension and metric default to the source's (with ``reembed``: its
    dimension). With ``model`` it is an **integrated** index that embeds text itself (``create_index_for_model``;
    its text field is ``target.records.field``); dimension and metric then default to the model's."""

    cloud: Literal["aws", "gcp", "azure"] = "aws"
    region: str = Field(default="us-east-1", min_length=1, description="The cloud region, e.g. us-east-1.")
    dimension: int | None = Field(default=None, gt=0, le=20000, description="Default: the source's dimension.")
    metric: Literal["cosine", "dotproduct", "euclidean"] | None = Field(
        default=None, description="Default: the source's metric."
    )
    deletion_protection: Literal["enabled", "disabled"] = "disabled"
    tags: dict[str, str] = Field(default_factory=dict, description="Index tags, e.g. {team: search}.")
    ready_timeout_s: float = Field(default=600, gt=0, description="How long `run` waits for the index to be ready.")
    model: str | None = Field(
        default=None,
        min_length=1,
        description="An embedding model Pinecone hosts, e.g. llama-text-embed-v2: create an integrated index.",
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag in value.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", key):
                raise ValueError(f"tag key {key!r} must be 1-80 letters, digits, '_' or '-'")
            if not re.fullmatch(r"[A-Za-z0-9;@_\-.+ ]{1,120}", tag):
                raise ValueError(f"tag {key}: value {tag!r} must be 1-120 letters, digits, spaces or ;@_-.+")
        return value


class TextRecords(_Model):
    """As a target: an **integrated** index, which embeds each record's text itself. Records are written with the
    records API (``upsert_records``, at most 96 per request): the text of source metadata field ``text_from`` goes into
    the index's text field ``field`` (its ``field_map``), every other metadata field is kept as a field, ids are kept.
    A record without text cannot be written: its id is reported per namespace, and ``missing_text`` says whether that
    fails verification (``fail``, the default) or is accepted (``skip``)."""

    text_from: str = Field(default="text", min_length=1, description="The source metadata field holding the text.")
    field: str = Field(default="chunk_text", min_length=1, description="The index's text field (its field_map).")
    missing_text: Literal["fail", "skip"] = Field(
        default="fail", description="A source record without text: fail verification (fail) or accept it (skip)."
    )


def _document_field(value: str) -> str:
    if not value or value.startswith(DOCUMENT_RESERVED_PREFIXES) or len(value.encode()) > DOCUMENT_FIELD_MAX_BYTES:
        raise ValueError(
            f"{value!r} cannot name a document field: 1-{DOCUMENT_FIELD_MAX_BYTES} bytes, not starting with '_' or '$'"
        )
    return value


DocumentFieldName = Annotated[str, AfterValidator(_document_field)]


class DocumentMapping(_Model):
    """A **document index** (API 2026-07) and how records map onto its documents: the record's id becomes ``_id``,
    its values the ``dense_field``, its sparse values the ``sparse_field``, each metadata key a top-level field of
    the same name (``rename`` gives it another). ``text_fields`` are metadata keys written as full-text ``string``
    fields (``chunk_text``, or any column holding text); an index nsmigrate creates (``create``) declares them in its
    schema. A metadata key a document refuses (starting with ``_`` or ``$``, or the name of the dense or sparse
    field) refuses the plan, naming the ``rename`` that fixes it; nothing is ever dropped. Read back, a document is
    the record it was written from (renames undone), so verification, cleanup, sync and rollback compare records."""

    dense_field: DocumentFieldName = Field(default="embedding", description="The dense_vector field.")
    sparse_field: DocumentFieldName | None = Field(
        default=None, description="The sparse_vector field, for records with sparse values (hybrid search)."
    )
    text_fields: list[DocumentFieldName] = Field(
        default_factory=list, description="Fields of text with full-text search, e.g. [chunk_text]."
    )
    rename: dict[str, DocumentFieldName] = Field(
        default_factory=dict, description="Metadata key → document field name, e.g. {_source: source}."
    )

    @model_validator(mode="after")
    def _distinct(self) -> DocumentMapping:
        vectors = {f for f in (self.dense_field, self.sparse_field) if f is not None}
        if self.sparse_field == self.dense_field:
            raise ValueError("dense_field and sparse_field must be two different fields")
        clash = sorted(vectors & set(self.text_fields))
        if clash:
            raise ValueError(f"{clash} cannot be a text field and a vector field at once")
        names = list(self.rename.values())
        twice = sorted({n for n in names if names.count(n) > 1} | (vectors & set(names)))
        if twice:
            raise ValueError(f"rename gives two keys, or a key and a vector field, the same name: {twice}")
        return self


class PineconeStoreSpec(_Model):
    """A Pinecone index, by data-plane ``host`` or by ``index`` name (resolved through the control plane)."""

    kind: Literal["pinecone"] = "pinecone"
    index: str | None = Field(default=None, description="Index name, resolved to its host through the control plane.")
    host: str | None = Field(
        default=None, description="Data-plane host with scheme, e.g. https://idx-abc.svc.….pinecone.io"
    )
    control_host: str | None = Field(default=None, description="Control-plane URL override (local sandbox only).")
    api_key_env: EnvName = Field(default="PINECONE_API_KEY", description="Name of the env var holding the API key.")
    max_namespaces: int | None = Field(
        default=None,
        gt=0,
        description="As a target: the namespaces its index may hold (your plan's limit); default: "
        "100,000, Pinecone's serverless limit on the Standard and Enterprise plans (Starter: 100, Builder: 1,000).",
    )
    enumerate: Enumeration = Field(
        default_factory=Enumeration,
        description="How its ids are found: list (serverless), catalogue or sweep (pod indexes cannot list).",
    )
    create: CreateIndex | None = Field(
        default=None, description="As a target: create this serverless index if it does not exist (needs `index`)."
    )
    records: TextRecords | None = Field(
        default=None, description="As a target: an integrated index; records are written as text (see TextRecords)."
    )
    documents: DocumentMapping | None = Field(
        default=None, description="A document index (API 2026-07) and how records map onto documents."
    )

    # Field validators (not one model validator) so that an error's path names the field: `target.host: …`.
    @field_validator("host", "control_host")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{redact_text(value)!r} needs its scheme, e.g. https://… or http://127.0.0.1:5081")
        refusal = credentials_refusal(value)
        if refusal is not None:  # the URL is not echoed: it holds a password
            raise ValueError(f"the address {refusal}")
        return value

    @model_validator(mode="after")
    def _one_address(self) -> PineconeStoreSpec:
        if (self.index is None) == (self.host is None):
            raise ValueError("give exactly one of `index` (an index name) or `host` (its data-plane URL)")
        if self.create is not None and self.index is None:
            raise ValueError("`create` needs `index: NAME` (the index to create), not `host`")
        if self.documents is not None and (self.records is not None or self.enumerate.mode != "list"):
            raise ValueError("a document index (`documents`) is written as documents and lists its ids: no `records`")
        if self.documents is not None and self.create is not None and self.create.model is not None:
            raise ValueError("`create.model` makes an integrated index; a document index is created from `documents`")
        if self.create is not None and self.create.model is not None and self.records is None:
            raise ValueError(
                "`create.model` makes an integrated index: give `records: {text_from, field}` too (which source "
                "metadata field holds the text, and the index's text field)"
            )
        return self

    @property
    def label(self) -> str:
        """How this store is named in scopes, plans, messages and ``migrated_from`` (never contains a key: the host
        is shown through the one redaction, query string included)."""
        return self.index or redact_url(self.host or "").split("://", 1)[-1]


class PgvectorStoreSpec(_Model):
    """A Postgres + pgvector store: one legacy table with a namespace column, or one table per namespace."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["pgvector"] = "pgvector"
    database_url_env: EnvName = Field(
        default="NSMIGRATE_PGVECTOR_URL", description="Env var holding the SQLAlchemy URL."
    )
    layout: Literal["single_table", "table_per_namespace"] = "table_per_namespace"
    table: str = Field(
        default="embeddings", description="single_table: the table; table_per_namespace: the name prefix."
    )
    namespace_column: str = Field(
        default="namespace", description="single_table only: the column naming the namespace."
    )
    dimension: int | None = Field(default=None, gt=0, le=16000, description="Needed to create tables in a new target.")
    schema_: Literal["generic", "documented"] = Field(
        default="generic",
        alias="schema",
        description="generic: (id, embedding, metadata) tables. documented: the application's "
        "embeddings_{namespace} tables "
        "(orchestrator.pgvector_layout), namespaces found from the tables themselves; table_per_namespace only.",
    )
    vector_index: Literal["ivfflat", "hnsw", "none"] = Field(
        default="ivfflat",
        description="documented: the cosine ANN index built on each target table after its load (with the b-tree "
        "indexes and ANALYZE), when the namespace is verified; above 2,000 dimensions always HNSW over halfvec.",
    )
    ivfflat_lists: int = Field(
        default=pgvector_layout.DEFAULT_LISTS,
        gt=0,
        le=32768,
        description="documented, vector_index ivfflat: its lists (the application's layout says 100).",
    )

    @field_validator("table", "namespace_column")
    @classmethod
    def _sql_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", value):
            raise ValueError(f"{value!r} must be a lower-case SQL identifier (a-z, 0-9, _), ≤ 41 characters")
        return value

    @model_validator(mode="after")
    def _documented_layout(self) -> PgvectorStoreSpec:
        if self.schema_ == "documented" and self.layout != "table_per_namespace":
            raise ValueError(
                "schema `documented` is one table per namespace (layout: table_per_namespace); its legacy single "
                "table is read as the default namespace"
            )
        return self

    @property
    def documented(self) -> bool:
        return self.schema_ == "documented"

    @property
    def index(self) -> pgvector_layout.VectorIndex:
        """The ANN index a documented target's tables get."""
        return pgvector_layout.VectorIndex(self.vector_index, self.ivfflat_lists)

    @property
    def label(self) -> str:
        return f"pgvector:{self.table}_*" if self.documented else f"pgvector:{self.table}"


StoreSpec = Annotated[PineconeStoreSpec | PgvectorStoreSpec, Field(discriminator="kind")]

_STORE_SPEC: TypeAdapter[Any] = TypeAdapter(StoreSpec)


def store_spec_from_json(data: dict[str, Any]) -> PineconeStoreSpec | PgvectorStoreSpec:
    """A store spec (Pinecone or pgvector) from its JSON in the job table."""
    spec: PineconeStoreSpec | PgvectorStoreSpec = _STORE_SPEC.validate_python(data)
    return spec
