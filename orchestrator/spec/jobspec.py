"""The declarative job spec (YAML), validated with pydantic.

A bad spec fails with one ``SpecError`` that lists every problem with its field path, e.g.
``target.host: a host needs its scheme, e.g. https://… or http://127.0.0.1:5081``. Nothing is written before the spec
validates. Secrets are never in a spec: it names the environment variable that holds them (``api_key_env``).

See ``migrations/README.md`` for the format with examples, and ``migrations/*.yaml`` for the shipped jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.limits import (
    FETCH_MAX_IDS,
)
from nsmigrate.orchestrator.records.namespaces import ID_RULE, identifier_problem
from nsmigrate.orchestrator.spec.bulk_import import BulkImport, import_strategy_problems
from nsmigrate.orchestrator.spec.convert import convert_refusals
from nsmigrate.orchestrator.spec.cutover import Cutover, one_pinecone_index
from nsmigrate.orchestrator.spec.rate_budget import RateBudget
from nsmigrate.orchestrator.spec.stores import (
    EnvName,
    PgvectorStoreSpec,
    SqlName,
    StoreSpec,
    TextRecords,
    _Model,
)
from nsmigrate.orchestrator.spec.yamlfile import load_yaml

#: Chains listing one namespace at once, at most and by default (the spec's ``max_list_chains``; a lister's threads);
#: the fleet's list budget (``rate.list_rps``) bounds how fast they go together.
MAX_CHAINS = 16


class NamespaceSelection(_Model):
    """Which source namespaces take part: shell-style globs; ``""`` or ``__default__`` is the default namespace.
    A name without glob characters must exist in the source, or the plan is refused."""

    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class CreatorMapping(_Model):
    """Where the twin → creator mapping comes from."""

    source: Literal["file", "supabase", "inline"] = "file"
    path: str | None = Field(default=None, description="file: CSV (twin_id,creator_id) or YAML {twin_id: creator_id}.")
    url_env: EnvName = Field(default="SUPABASE_URL", description="supabase: env var holding the project URL.")
    key_env: EnvName = Field(default="SUPABASE_KEY", description="supabase: env var holding the service key.")
    twins_table: str = "twins"
    twins: dict[str, str] = Field(default_factory=dict, description="inline: {twin_id: creator_id}.")

    @model_validator(mode="after")
    def _complete(self) -> CreatorMapping:
        if self.source == "file" and not self.path:
            raise ValueError("source `file` needs `path` (a CSV twin_id,creator_id or a YAML mapping)")
        if self.source == "inline" and not self.twins:
            raise ValueError("source `inline` needs `twins: {twin_id: creator_id}`")
        return self


class SourceTable(_Model):
    """The seeds' ``sources`` table: a vector of the default namespace with neither a twin id nor a creator id is
    routed by the value of its metadata key ``key_field``, looked up here → twin → creator. ``file``: CSV with the
    columns ``key_column`` and ``twin_column``; ``postgres``: a table in the database named by ``database_url_env``;
    ``supabase``: the table read through the ``supabase`` client, paged."""

    source: Literal["file", "postgres", "supabase"] = "supabase"
    key_field: str = Field(default="source_id", min_length=1, description="The metadata key looked up.")
    path: str | None = Field(default=None, description="file: CSV; relative to the spec file.")
    database_url_env: EnvName = Field(default="NSMIGRATE_SOURCES_URL", description="postgres: env var with its URL.")
    url_env: EnvName = Field(default="SUPABASE_URL", description="supabase: env var holding the project URL.")
    key_env: EnvName = Field(default="SUPABASE_KEY", description="supabase: env var holding the service key.")
    table: SqlName = "sources"
    key_column: SqlName = "id"
    twin_column: SqlName = "twin_id"

    @model_validator(mode="after")
    def _needs_path(self) -> SourceTable:
        if self.source == "file" and not self.path:
            raise ValueError("source `file` needs `path` (a CSV with the key and twin columns)")
        return self


class OwnerTable(_Model):
    """Seed 000's owners table: a vector of the default namespace with no twin id, no creator id and no sources key
    is looked up by its vector id in ``table`` (read through the real ``supabase`` client, paged, whole, at plan
    time): ``creator_column`` names its creator and, when given, ``twin_column`` its twin. Found: filed under that
    twin's (or the creator's own) namespace; not found: ``routing.unresolved`` decides."""

    source: Literal["supabase"] = "supabase"
    url_env: EnvName = Field(default="SUPABASE_URL", description="supabase: env var holding the project URL.")
    key_env: EnvName = Field(default="SUPABASE_KEY", description="supabase: env var holding the service key.")
    table: SqlName = "vector_owners"
    id_column: SqlName = Field(default="vector_id", description="The column holding the vector id.")
    creator_column: SqlName = Field(default="creator_id", description="The column holding its creator id.")
    twin_column: SqlName | None = Field(
        default=None, description="The column holding its twin id, if the table has one."
    )


class Routing(_Model):
    """How a source namespace becomes a target namespace.

    - ``same``: the same name (index → index copies, pod → serverless).
    - ``explicit``: ``map: {source: target}``; every selected namespace must be in the map.
    - ``creator``: the UUID namespace is a twin id → ``creator_{creator_id}_twin_{twin_id}``; vectors of the default
      namespace are routed one by one: by their ``twin_id_field`` metadata, else their ``creator_id_field`` (to
      ``creator_{creator_id}``), else ``sources`` (a metadata key → twin), else they are unresolved and go where
      ``unresolved`` says. ``override_creator`` puts every twin under one creator (e.g. the test creator
      ``sainath.no.1``).
    """

    mode: Literal["same", "explicit", "creator"] = "same"
    map: dict[str, str] = Field(default_factory=dict)
    creators: CreatorMapping | None = None
    override_creator: str | None = None
    twin_id_field: str = "twin_id"
    unknown_twin: Literal["fail", "review", "public"] = Field(
        default="fail",
        description="A twin that has no creator: refuse the plan (fail) or send its vectors to the review namespace "
        "or (shared with everyone) `public`.",
    )
    creator_id_field: str = Field(default="creator_id", description="Default namespace: the creator id metadata key.")
    sources: SourceTable | None = Field(default=None, description="Default namespace: metadata key → twin lookup.")
    owners: OwnerTable | None = Field(
        default=None, description="Default namespace: vector id → creator (and twin), for vectors without metadata."
    )
    review_namespace: str = Field(
        default="review",
        min_length=1,
        description="Default namespace: where vectors that resolve to no twin or creator go, for a person to file "
        "(with `unresolved: review`).",
    )
    unresolved: Literal["review", "creator", "drop-with-report"] = Field(
        default="review",
        description="Default namespace: what happens to vectors that resolve to no twin and no creator: `review` "
        "(the review namespace, for a person to file), `creator` (the creator-wide namespace of unresolved_creator, "
        "or of override_creator), `drop-with-report` (not copied, counted in the plan, listed in the "
        "verification report, kept in the source: cleanup never deletes them).",
    )
    unresolved_creator: str | None = Field(
        default=None,
        description="With `unresolved: creator`: the creator whose namespace creator_{id} receives the unresolved "
        "vectors, with the real twin → creator mapping for the rest (seed 002: the test creator sainath.no.1).",
    )

    @field_validator("review_namespace")
    @classmethod
    def _review(cls, value: str) -> str:
        if value.startswith("creator_") or value == "__default__":
            # A creator_… name would read as that creator's own namespace: erased with them, searched for nobody else.
            raise ValueError(
                f"{value!r} cannot be the review namespace: it must not look like a creator's or be the default; to "
                "file unresolved vectors under a creator, set `unresolved: creator` with `override_creator`"
            )
        return value

    @field_validator("override_creator", "unresolved_creator")
    @classmethod
    def _creator_id(cls, value: str | None) -> str | None:
        # Caught here, with its field path, rather than as a plan error later.
        problem = identifier_problem("creator_id", value) if value is not None else None
        if problem:
            raise ValueError(f"{problem} ({ID_RULE})")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Routing:
        if self.mode == "explicit" and not self.map:
            raise ValueError("mode `explicit` needs `map: {source_namespace: target_namespace}`")
        if self.mode == "creator" and self.creators is None and self.override_creator is None:
            raise ValueError(
                "mode `creator` needs `creators:` (where the twin → creator mapping is) or `override_creator`"
            )
        if self.unresolved == "creator" and self.override_creator is None and self.unresolved_creator is None:
            raise ValueError(
                "`unresolved: creator` files unresolved vectors under a creator's namespace creator_{id}: name it "
                "with `unresolved_creator` (or `override_creator`), or choose `unresolved: review` or "
                "`drop-with-report`"
            )
        if self.unresolved_creator is not None and self.unresolved != "creator":
            raise ValueError(
                f"`unresolved_creator: {self.unresolved_creator}` is used only with `unresolved: creator`: set it, "
                "or remove unresolved_creator"
            )
        return self


class Enrichment(_Model):
    """Metadata the copy sets on every target vector (source metadata is kept as it is)."""

    creator_fields: bool = Field(
        default=True, description="Set creator_id and twin_id on vectors written into a twin namespace."
    )
    migrated_from: bool = Field(default=True, description="Set migrated_from = '<source store>/<source namespace>'.")
    constants: dict[str, str | int | float | bool] = Field(default_factory=dict)


#: The largest ``verify.tolerance`` under which a copy counts as equal for a deletion (cleanup, rollback): float32
#: rounding of any value under 8,000 in magnitude stays below it, so an exact copy always passes; a larger tolerance
#: would prove equal a copy whose values differ, and delete on that proof.
DELETION_MAX_TOLERANCE = 1e-3


class Verification(_Model):
    counts: bool = True
    ids: bool = True
    contents: Literal["all", "sample", "none"] = "all"
    sample_size: int = Field(default=200, gt=0)
    query_samples: int = Field(default=0, ge=0, description="Sample queries whose top-k ids must match; 0 = off.")
    top_k: int = Field(default=10, gt=0, le=1000)
    # Not 1: ANN indexes are approximate and a different index type may reorder near-ties at the edge of the top k,
    # so exact equality of every list would fail correct copies.
    query_min_overlap: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Smallest mean share of the source's top-k ids the target's answers hold, or verification fails.",
    )
    count_timeout_s: float = Field(default=60, gt=0, description="How long to poll counts until they are stable.")
    freshness_timeout_s: float = Field(
        default=120,
        gt=0,
        le=3600,
        description="How long verification and cleanup wait for the target's lagging reads (list, query, counts) to "
        "reflect the job's writes, by LSN or by polling; reads still behind then fail verification (Pinecone: "
        "'documents become searchable within approximately one minute').",
    )
    tolerance: float = Field(
        default=1e-6,
        ge=0,
        description="Largest allowed |source - target| per vector value; at most 1e-3 where the job may delete "
        "(cleanup, rollback).",
    )
    latency_samples: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Queries timed after the copy, as the application will query (a twin's creator searched across "
        "its twins through the tenant guard); P50/P95 in the report. Every run of a job of up to 32 namespaces (or "
        "with latency_p95_ms) times them, a sample of about 32 runs of a larger one. 0 = off.",
    )
    latency_p95_ms: float | None = Field(
        default=None, gt=0, description="Fail verification when the P95 is above this (in milliseconds)."
    )
    text_search_samples: int = Field(
        default=50, ge=0, description="Integrated target: records searched by their own text; 0 = off."
    )
    text_search_min_hit_rate: float = Field(
        default=0.9, ge=0, le=1, description="Share of those searches whose top_k must contain the record."
    )


class Cleanup(_Model):
    """``never``: the source is kept. ``manual``: `nsmigrate cleanup JOB` may delete verified source namespaces.
    ``auto``: deleted right after verification passes (the job is finished with the verdicts, the cleanups after)."""

    mode: Literal["never", "manual", "auto"] = "never"


class Backup(_Model):
    """Export each source namespace to Parquet before anything is copied."""

    enabled: bool = False
    directory: str = "backups"


class Reembed(_Model):
    """Re-embed while copying: each record's vector is made anew from the text in source metadata field
    ``text_from`` by ``embedder`` (a registered name such as ``hashing``, or ``package.module:factory``: see
    ``workers.transfer.embedders``), ``dimension`` wide. For a model change, which changes the dimension: the target
    is a plain vector index of that dimension. Metadata is kept; a record without text is reported by id, never
    written."""

    embedder: str = Field(default="hashing", min_length=1, description="A registered name or package.module:factory.")
    text_from: str = Field(default="text", min_length=1, description="The source metadata field holding the text.")
    dimension: int = Field(gt=0, le=20000, description="The dimension of the new vectors (the target's).")
    missing_text: Literal["fail", "skip"] = Field(
        default="fail", description="A source record without text: fail verification (fail) or accept it (skip)."
    )

    @field_validator("embedder")
    @classmethod
    def _shipped_or_a_path(cls, name: str) -> str:
        # Caught here, not by the first batch: a misspelt name would fail every batch after the job was written.
        if ":" not in name and name not in SHIPPED_EMBEDDERS:
            shipped = ", ".join(SHIPPED_EMBEDDERS)
            raise ValueError(f"no embedder named {name!r}: use {shipped}, or a dotted path package.module:factory")
        return name


#: The embedders nsmigrate ships (``workers.transfer.embedders``); any other is named ``package.module:factory``.
SHIPPED_EMBEDDERS = ("hashing",)


#: The most a batch between two of the application's tables may hold, and its size unless the spec sets one: its rows
#: pass as they are, one COPY or INSERT … SELECT whatever its size, while every batch costs the job table, a message
#: and a transaction a side; a namespace goes in even batches of at most this (``orchestrator.listing.table_batches``).
TABLE_BATCH_MAX_IDS = 10_000


def _application_tables(store: Any) -> bool:
    """Whether a store spec, given as a mapping or a model, is the application's pgvector tables (``schema:
    documented``)."""
    if isinstance(store, PgvectorStoreSpec):
        return store.documented
    return (
        isinstance(store, dict)
        and store.get("kind") == "pgvector"
        and store.get("schema", store.get("schema_")) == "documented"
    )


class JobSpec(_Model):
    """A migration job. ``name`` identifies the job: running a spec whose job exists resumes it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)  # `import:` is bulk_import

    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")
    description: str = ""
    strategy: Literal["fleet", "collection", "import", "convert"] = Field(
        default="fleet",
        description="fleet: workers list, fetch and upsert. collection: Pinecone copies a pod index into a new "
        "serverless index (a collection, then an index from it); nsmigrate drives and verifies it. import: workers "
        "write the records as Pinecone import files to object storage (`import:`), Pinecone imports them into new "
        "namespaces; nsmigrate tracks and verifies it. convert: Pinecone converts a serverless index into a new "
        "document index (a snapshot); nsmigrate drives it, syncs what was written after the snapshot and verifies it.",
    )
    bulk_import: BulkImport | None = Field(default=None, alias="import", description="strategy import: see BulkImport.")
    source: StoreSpec
    target: StoreSpec
    namespaces: NamespaceSelection = Field(default_factory=NamespaceSelection)
    routing: Routing = Field(default_factory=Routing)
    enrich: Enrichment = Field(default_factory=Enrichment)
    batch_size: int = Field(
        default=100,
        gt=0,
        le=TABLE_BATCH_MAX_IDS,
        description="Ids per copy batch (Pinecone fetch takes ≤ 1,000); between two pgvector stores of schema "
        "documented up to 10,000 (the default there), a namespace cut into even batches of at most this.",
    )
    max_batches_in_flight: int = Field(
        default=32, gt=0, le=10000, description="Queued+running batches per namespace (table copies: parallel_upserts)."
    )
    parallel_upserts: int = Field(
        default=2,
        gt=0,
        le=16,
        description="Upsert requests one copy batch has in flight at once; between two databases' pgvector tables, "
        "the COPY streams a table's only batch goes in at once (each of 200 rows or more).",
    )
    max_list_chains: int = Field(
        default=MAX_CHAINS,
        gt=0,
        le=MAX_CHAINS,
        description="Id-prefix chains that list a namespace of 5,000+ ids at once (1: one chain, never split).",
    )
    rate: RateBudget = Field(default_factory=RateBudget)
    allow_id_overwrite: bool = Field(
        default=False, description="Allow two sources to write the same id into one target namespace (last write wins)."
    )
    verify: Verification = Field(default_factory=Verification)
    auto_verify: bool = Field(default=True, description="Verify each namespace as soon as its copy finishes.")
    cleanup: Cleanup = Field(default_factory=Cleanup)
    cutover: Cutover = Field(default_factory=Cutover)
    backup: Backup = Field(default_factory=Backup)
    reembed: Reembed | None = Field(
        default=None, description="Make every vector anew from its text (a model change); see Reembed."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_enrichment_by_default(cls, data: Any) -> Any:
        # A collection or a conversion copies records unchanged: its jobs enrich nothing unless told (and then are
        # refused below), so every path that writes for them (a sync) and their verification expect the records as
        # they are.
        if isinstance(data, dict) and data.get("strategy") in ("collection", "convert"):
            enrich = dict(data.get("enrich") or {})
            enrich.setdefault("creator_fields", False)
            enrich.setdefault("migrated_from", False)
            data = {**data, "enrich": enrich}
        return data

    @model_validator(mode="before")
    @classmethod
    def _table_copies_in_whole_batches(cls, data: Any) -> Any:
        # Between two of the application's pgvector tables a batch passes as rows (``TABLE_BATCH_MAX_IDS``), a COPY
        # stream into its table; as many at once as a table's only batch takes (more contend: bench/README.md).
        if (
            isinstance(data, dict)
            and data.get("reembed") is None
            and _application_tables(data.get("source"))
            and _application_tables(data.get("target"))
        ):
            given = data.get("parallel_upserts")
            valid = isinstance(given, int) and not isinstance(given, bool) and given > 0  # else refused by its name
            streams = given if valid else cls.model_fields["parallel_upserts"].default
            data = {"batch_size": TABLE_BATCH_MAX_IDS, "max_batches_in_flight": streams, **data}
        return data

    @field_validator("batch_size")
    @classmethod
    def _batch_fits_a_fetch(cls, value: int, info: ValidationInfo) -> int:
        tables = _application_tables(info.data.get("source")) and _application_tables(info.data.get("target"))
        if value > FETCH_MAX_IDS and not tables:
            raise ValueError(
                f"Input should be less than or equal to {FETCH_MAX_IDS} (the ids of one fetch); up to "
                f"{TABLE_BATCH_MAX_IDS} between two pgvector stores of schema documented"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.source.kind == "pinecone" and self.source.create is not None:
            raise ValueError("source.create: only a target index can be created; the source must exist")
        if self.strategy == "collection":
            self._collection_strategy_fits()
        if self.strategy == "convert" and convert_refusals(self):
            raise ValueError(
                f"strategy `convert` does not fit this spec: {'; '.join(convert_refusals(self))}. Pinecone converts a "
                "serverless index into a new document index as it is; use strategy `fleet` to rename, route, select "
                "or enrich"
            )
        self._text_fits()
        if self.strategy == "import" and import_strategy_problems(self):
            raise ValueError(f"strategy `import` needs {'; '.join(import_strategy_problems(self))}")
        if self.strategy != "import" and self.bulk_import is not None:
            raise ValueError("`import:` is read by strategy `import` only: set strategy: import, or leave it out")
        if self.cutover.aliases is not None and not one_pinecone_index(self.source, self.target):
            raise ValueError(
                "cutover.aliases: an alias points only at a namespace of its own index, so a cut-over by alias needs "
                "source and target to be one Pinecone index (the same `index` or `host`); across indexes, "
                "applications read through DualWriteIndex (leave cutover.aliases out)"
            )
        if self.cleanup.mode == "auto" and not self.auto_verify:
            raise ValueError("cleanup.mode `auto` needs auto_verify: true (cleanup only ever follows verification)")
        return self

    @property
    def cleanup_unchecked(self) -> list[str]:
        """The checks a deletion relies on that this spec's verification turns off or loosens, e.g.
        ``["verify.ids: false"]``: without ids and counts checked, a target that lost vectors passes verification;
        with a tolerance above ``DELETION_MAX_TOLERANCE``, a copy whose values differ is proved equal."""
        off = [f"verify.{name}: false" for name in ("ids", "counts") if not getattr(self.verify, name)]
        if self.verify.tolerance > DELETION_MAX_TOLERANCE:
            off.append(f"verify.tolerance: {self.verify.tolerance:g}, above {DELETION_MAX_TOLERANCE:g}")
        return off

    @property
    def text_records(self) -> TextRecords | None:
        """How records are written as text, when the target is an integrated index."""
        return self.target.records if self.target.kind == "pinecone" else None

    @property
    def text_from(self) -> str | None:
        """The source metadata field the job embeds from (integrated target or re-embedding), else None."""
        text = self.text_records or self.reembed
        return text.text_from if text is not None else None

    def _text_fits(self) -> None:
        if self.source.kind == "pinecone" and self.source.records is not None:
            raise ValueError("source.records: only a target is written as text records; read the source as it is")
        if self.text_records is not None and self.reembed is not None:
            raise ValueError(
                "give target.records (an integrated index embeds the text) or reembed (nsmigrate embeds it into a "
                "vector index), not both"
            )
        if self.strategy == "collection" and (self.text_records is not None or self.reembed is not None):
            raise ValueError("strategy `collection` copies records unchanged: target.records and reembed need `fleet`")
        create = self.target.create if self.target.kind == "pinecone" else None
        if self.reembed is not None and create is not None and create.dimension not in (None, self.reembed.dimension):
            raise ValueError(
                f"target.create.dimension {create.dimension} differs from reembed.dimension {self.reembed.dimension}: "
                "the target holds the re-embedded vectors (leave target.create.dimension out)"
            )

    def _collection_strategy_fits(self) -> None:
        """Pinecone restores a collection as it is: every namespace, under its own name, records unchanged."""
        if self.source.kind != "pinecone" or self.source.index is None:
            raise ValueError("strategy `collection` needs a Pinecone source named by `index` (a pod-based index)")
        if self.target.kind != "pinecone" or self.target.index is None:
            raise ValueError("strategy `collection` needs a Pinecone target named by `index` (the index to create)")
        refusals = []
        if self.routing.mode != "same":
            refusals.append("routing (an index made from a collection keeps every namespace's name)")
        if self.namespaces != NamespaceSelection():
            refusals.append("namespaces (a collection copies every namespace)")
        if self.enrich.constants or self.enrich.creator_fields or self.enrich.migrated_from:
            refusals.append("enrich (a collection copies records unchanged)")
        if self.cleanup.mode != "never":
            refusals.append("cleanup (retire the pod index yourself once reads moved to the new index)")
        if refusals:
            raise ValueError(
                f"strategy `collection` cannot apply {'; '.join(refusals)}: use strategy `fleet` for renames, "
                "enrichment or a partial selection"
            )


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid job spec {origin}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"] if p not in ("pinecone", "pgvector")) or "(top level)"
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown field (a typo?); see migrations/README.md for the fields"
        elif e["type"] in ("union_tag_not_found", "union_tag_invalid"):
            message = "a store needs `kind: pinecone` or `kind: pgvector`"
        lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def parse_spec(data: dict[str, Any], origin: str = "") -> JobSpec:
    """Validate a spec given as a dict; raises SpecError naming each bad field."""
    if not isinstance(data, dict):
        raise SpecError(
            f"invalid job spec {origin}: the top level must be a mapping of fields, got {type(data).__name__}"
        )
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_format_errors(e, origin)) from e
    reserved = [key for key in spec.enrich.constants if key.startswith("$")] if spec.target.kind == "pinecone" else []
    if reserved:
        # For a new spec only, as below: a job already written loads as it was (its upserts name the key instead).
        raise SpecError(
            f"invalid job spec {origin}:\n  enrich.constants: key {', '.join(map(repr, reserved))} starts with '$', "
            "which Pinecone reserves for filter operators and refuses as a metadata key; rename it"
        )
    unchecked = spec.cleanup_unchecked
    if spec.cleanup.mode != "never" and unchecked:
        # Checked here, for a new spec, and not by the model: a job already written loads as it was, and its
        # cleanup refuses instead (``workers.steps.cleaning``).
        raise SpecError(
            f"invalid job spec {origin}:\n  cleanup.mode: `{spec.cleanup.mode}` would delete the source after a "
            f"verification that does not prove an equal copy ({', '.join(unchecked)}): a target that lost vectors "
            "or holds other values would pass it; set verify.ids and verify.counts to true and verify.tolerance to "
            f"at most {DELETION_MAX_TOLERANCE:g}, or cleanup.mode to `never`"
        )
    return spec


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate a YAML spec file; raises SpecError with the file name and field paths."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec file {p} does not exist", hint="give the path of a YAML job spec, e.g. migrations/…")
    return spec_from_text(p.read_text(), origin=str(p))


def spec_from_text(text: str, origin: str) -> JobSpec:
    """Validate a spec file's text (``origin``: its path, for messages); raises SpecError."""
    return parse_spec(load_yaml(text, origin=f"spec file {origin}"), origin=origin)


def spec_to_json(spec: JobSpec) -> dict[str, Any]:
    """The spec as stored in the job table (it holds env var names only, never secrets)."""
    return spec.model_dump(mode="json", by_alias=True)
