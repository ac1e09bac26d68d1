"""Where numbers live (``docs/architecture.md``): a number an operator may want to change is a setting
(``orchestrator.settings``) or a spec field, a fact of the outside world is in ``orchestrator.limits``, and every
other module-level number is a working constant of its module, listed here with the reason it stays one. A new
numeric constant fails this test until it is made a setting or a spec field, or added below with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "orchestrator", "workers")
#: Facts of the outside world, each declared with its source.
LIMITS = "orchestrator/limits.py"

WORKING: dict[str, str] = {
    "workers/context.py:GUARDED_KEPT": "guarded stores a worker process keeps: a few jobs' source and target each",
    "workers/transfer/write_fence.py:WRITABLE_SHARE_OF_TIMEOUT": "hosts' clocks beside the visibility timeout",
    # strategy import: the plan's guess of a record's size in the files, and the rows of one file
    "orchestrator/planning/import_strategy.py:BYTES_PER_VALUE": "a float32 value in a Parquet file",
    "orchestrator/planning/costs.py:BYTES_PER_JSON_VALUE": "a float32's decimal text in an upsert or a JSONL file",
    "orchestrator/planning/import_strategy.py:RECORD_OVERHEAD_BYTES": "id, metadata and framing of one record",
    "orchestrator/planning/import_strategy.py:WRITE_MB_PER_S_PER_THREAD": "the plan's guess of one writing thread",
    "orchestrator/spec/bulk_import.py:DEFAULT_ROWS_PER_FILE": "the spec's default: files far below Pinecone's 10 GB",
    "workers/steps/bulk_import.py:CANCEL_WAIT_S": "how long a cancel waits for Pinecone to end the import it cancelled",
    "orchestrator/spec/jobspec.py:TABLE_BATCH_MAX_IDS": "the spec's largest and default batch between two tables",
    "workers/stores/pgvector/documented.py:MIN_STREAM_ROWS": "rows worth a COPY stream's own statements",
    "workers/stores/pgvector/documented.py:SPARE_CONNECTIONS": "extra COPY streams a worker process runs per store",
    # the demos' own scenarios
    "cli/demo/cutover.py:MAX_WRITES": "the demo application's writes during the copy",
    "cli/demo/cutover.py:FOLLOW_TIMEOUT_S": "how long the demo waits for reads to follow a rollout",
    "cli/demo/cutover.py:APP_CACHE_S": "how old the demo application's copy of the rollout may be",
    "cli/demo/cutover.py:COUNT_TIMEOUT_S": "the demo spec's count wait: the local data plane's counts are exact",
    "orchestrator/cutover/breach.py:MIN_WINDOW_SAMPLES": "reads a breach window needs before a P95 means anything",
    "cli/demo/runbook.py:SOAK_S": "the demo spec's cutover.min_step_s: each rollout step soaks seconds, not minutes",
    "cli/demo/runbook.py:BREACH_LATENCY_MS": "the breach the demo injects on the target, above its P95 limit",
    "cli/demo/cutover.py:COMPARE_SHARE": "the share of the demo application's reads compared with the other side",
    "cli/demo/cutover.py:READ_PAUSE_S": "the demo application's pace of reads",
    "cli/demo/cutover_aliases.py:TOP_K": "matches a search through an alias compares before and after its repoint",
    "cli/demo/harness.py:JOB_TIMEOUT_S": "how long a demo watches its job",
    "cli/demo/documents.py:TOP_K": "how many documents the demo's search shows and compares with the source's",
    "orchestrator/planning/document_checks.py:SAMPLE_IDS": "records read per namespace for their keys: one page",
    "orchestrator/records/documents.py:SHOWN_KEYS": "how many refused keys one message names",
    "cli/demo/pgvector.py:DIMENSION": "the seed data's dimension",
    "cli/demo/pgvector.py:ROWS": "the demo table's size",
    # what a page or a command shows
    "cli/actions.py:REFUSED_NAMES_SHOWN": "namespaces a repeated refusal names in full",
    "orchestrator/launch.py:DIFFERENCES_SHOWN": "the changed fields a refused `run` names in full",
    "orchestrator/spec/differences.py:VALUE_CHARS": "how much of one changed value a refused `run` shows",
    "cli/libpq.py:_CONNECTION_OK": "libpq's ConnStatusType value for a connection made (libpq-fe.h)",
    "cli/libpq.py:_PGRES_TUPLES_OK": "libpq's ExecStatusType value for rows answered (libpq-fe.h)",
    "cli/console.py:EXIT_INTERRUPTED": "the exit code after Ctrl-C: what shells report for a process SIGINT ended",
    "cli/job_page.py:RELOAD_S": "the job page's reload interval",
    "cli/job_page.py:PAGE_RUNS": "namespaces one page lists",
    "cli/job_page.py:PAGE_EVENTS": "events one page lists",
    "cli/job_page.py:THROUGHPUT_SAMPLES": "the page's throughput history, bounded",
    "cli/job_page.py:THROUGHPUT_JOBS": "jobs whose throughput history is kept, bounded",
    "cli/metrics.py:NEWEST_JOBS": "default of `nsmigrate metrics --jobs`",
    "cli/render.py:SUMMARY_ROWS": "namespaces shown one by one before a summary",
    "cli/render.py:READ_SHARE_INVERSE": "a waiting command's share of the job table's time",
    "cli/services.py:FLOWER_MAX_TASKS": "default of `nsmigrate flower --max-tasks`",
    "cli/services.py:FLOWER_WAIT_FOR_WORKERS_S": "default of `nsmigrate flower`'s wait for a worker",
    "cli/handoff.py:POLL_S": "one blocking wait of the command for the plan server's answer",
    "cli/waits.py:MIN_POLL_S": "floor of a waiting command's pause as its job's copy ends",
    "cli/wakes.py:_SHORTEST_S": "the shortest BLPOP timeout: Redis reads 0 as for ever",
    "workers/steps/next_steps.py:WAKE_TTL_S": "how long a job's wake-ups wait for a command, far above its poll",
    "workers/steps/next_steps.py:WAKE_KEEP": "wake-ups kept per job: a long job's waiting command needs only its last",
    "workers/steps/listing.py:START_BEFORE_SLOT_S": "a small run is started this long before its fetch slot",
    "workers/steps/whole_reads.py:EXTRA_RECORDS": "records a whole read asks beyond those listed, for late writes",
    "workers/steps/freshness.py:_LISTINGS_SHOWN_COMPLETE": "a write during the first listing is found by the second",
    "orchestrator/planning/crossings.py:CROSSINGS_SHOWN": "crossings a plan's warnings name in full",
    "orchestrator/jobs/erasure_ledger.py:EVENT_IDS": "ids a write_held_back event names (its count is whole)",
    "workers/stores/pgvector/retired.py:PAGE_ROWS": "rows read per request while a retired table is searched",
    "orchestrator/routing/route.py:_EXAMPLES": "records an error lists",
    "orchestrator/tenancy/creator_mapping.py:_SHOWN": "problems an error lists",
    "orchestrator/records/namespaces.py:SHOWN": "names an error lists",
    "orchestrator/verification/comparisons.py:ID_CAP": "ids a report lists (the counts are complete)",
    "orchestrator/verification/comparisons.py:MISMATCH_CAP": "mismatches a report lists (the counts are complete)",
    "workers/steps/verifying.py:ROUTED_FETCHES_AT_ONCE": "a routed chunk's target fetches in flight, within budget",
    "workers/transfer/concurrent_calls.py:CALL_THREADS": "threads a process keeps for calls beside its tasks' own",
    "orchestrator/records/report_values.py:_OLD_CUT": "where older reports cut a quoted value: a fact of theirs",
    "workers/transfer/namespace_locks.py:POLL_S": (
        "a namespace lock's waiter asks again: a chunk holds it for a few requests"
    ),
    "workers/stores/pinecone/rest.py:_MESSAGE_MAX_CHARS": "server text kept in an error",
    "workers/stores/pinecone/http11.py:KEEPALIVE_EXPIRY_S": "idle connections closed as httpx's transport closed them",
    "workers/stores/pinecone/http11.py:_MAX_LINE": "longest answer line read: a bound against a broken server",
    "workers/stores/pinecone/http11.py:_MAX_HEADERS": "most answer header lines read: a bound against a broken server",
    "workers/stores/pinecone/http11.py:_JOINED_BODY_MAX": "a request body sent with its head in one write",
    "workers/stores/pinecone/http11.py:_READ_BUFFER": "a connection's read buffer: an answer's head and small bodies",
    # a protocol or a format: both sides must agree, so no one installation may change it alone
    "orchestrator/pgvector_rows.py:_TIME_DIGITS": "Postgres's most fractional digits of a time type: its default",
    "orchestrator/cutover/published.py:ROLLOUT_MAX_AGE_S": "the documented promise: reads follow a rollout in 2 s",
    "orchestrator/cutover/published.py:WRITE_UNDER_WAY_S": "a cleanup's wait for a dual write sent on the old layout",
    "orchestrator/cutover/dualwrite.py:COMPARE_SHARE": "the default of DualWriteIndex's compare_share (a parameter)",
    "orchestrator/cutover/dualwrite.py:COMPARE_THREADS": "an application's threads that compare and report",
    "orchestrator/cutover/dualwrite.py:COMPARE_IN_FLIGHT": "bounds an application's comparing reads waiting at once",
    "orchestrator/cutover/dualwrite.py:REPORTS_PER_WINDOW": "reports per breach window: the watch judges fresh reads",
    "orchestrator/cutover/dualwrite.py:MIN_REPORT_S": "the shortest time between an application's two reports",
    "orchestrator/cutover/dualwrite.py:QUERIES_PER_REPORT": "filtered queries one report records, bounded",
    "orchestrator/cutover/following.py:PENDING_KEPT": "bounds what an application keeps while Redis cannot take it",
    "orchestrator/cutover/published.py:PUBLISH_LOCK_S": "a publisher's lock, far above its few reads and one write",
    "orchestrator/cutover/published.py:MOVE_LOCK_S": "a move of reads' lock: every alias repointed, in under a minute",
    "orchestrator/cutover/published.py:READS_KEPT": "bounds the applications' read reports kept in Redis",
    "orchestrator/cutover/published.py:QUERIES_KEPT": "bounds the recorded queries kept in Redis (each a vector)",
    "orchestrator/cutover/read_metrics.py:SAMPLES_PER_REPORT": "bounds one report's samples (the counts stay whole)",
    "orchestrator/cutover/read_metrics.py:TRAFFIC_PER_REPORT": "bounds one report's namespaces",
    "orchestrator/messaging/submissions.py:HEARTBEAT_EVERY_S": "the plan server's heartbeat, shared with commands",
    "orchestrator/messaging/submissions.py:HEARTBEAT_TTL_S": "the plan server's heartbeat, shared with commands",
    "orchestrator/messaging/submissions.py:TAKE_TIMEOUT_S": "the hand-off protocol between command and plan server",
    "orchestrator/messaging/submissions.py:TAKEN_REFRESH_S": "the hand-off protocol between command and plan server",
    "orchestrator/messaging/submissions.py:TAKEN_TTL_S": "the hand-off protocol between command and plan server",
    "orchestrator/messaging/submissions.py:REPLY_TTL_S": "the hand-off protocol between command and plan server",
    "orchestrator/models.py:SCHEMA_VERSION": "the job table's schema version",
    "orchestrator/packed_ids.py:_WORTH_COMPRESSING": "where zlib starts to pay, a property of zlib",
    "orchestrator/pgvector_layout.py:NAME_MAX": "the layout's names must fit Postgres identifiers with the prefix",
    "orchestrator/records/namespaces.py:MAX_ID_CHARS": "the namespace convention's id length",
    "workers/stores/pgvector/store.py:_HASH_LEN": "the layout's shortened table names",
    "orchestrator/launch.py:_SOURCE_DIMENSION": "a marker value, not a quantity",
    # defaults of a spec field (the spec is where a job changes them)
    "orchestrator/pgvector_layout.py:DEFAULT_LISTS": "the documented DDL's ivfflat lists; the spec's ivfflat_lists",
    "orchestrator/spec/rate_budget.py:DEFAULT_RATE_SHARE": "the default budget's share of the limits; the spec's rate",
    "orchestrator/spec/rate_budget.py:DEFAULT_LIST_RATE_SHARE": "the default list budget's share; the spec's rate",
    "orchestrator/spec/jobspec.py:DELETION_MAX_TOLERANCE": "a safety rule, not a tunable: looser is not an equal copy",
    "orchestrator/spec/jobspec.py:MAX_CHAINS": "the spec's max_list_chains default",
    # estimates' guesses and an algorithm's working sizes, measured or derived where they are used
    "orchestrator/listing/pod_enumeration.py:_BYTES_PER_GB": "a unit",
    "orchestrator/listing/pod_enumeration.py:_STORED_BYTES_PER_VALUE": "float32, as the index stores a value",
    "orchestrator/listing/pod_enumeration.py:_STORED_BYTES_PER_VECTOR": "the estimate's guess of id and metadata",
    "orchestrator/listing/pod_enumeration.py:_EUCLIDEAN_REACH": "geometry of a euclidean sweep",
    "orchestrator/listing/prefix_chains.py:SPLIT_MIN_IDS": "below it the probes cost more than they save",
    "orchestrator/listing/prefix_chains.py:PREFIXES_PER_CHAIN": "keeps a chain's threads busy to the end",
    "orchestrator/listing/prefix_chains.py:MAX_PROBES": "bounds one split's probing",
    "orchestrator/planning/costs.py:BYTES_PER_VECTOR_OVERHEAD": "the estimate's guess of a vector's id and metadata",
    "orchestrator/planning/reads.py:PAGES_AHEAD": "bounds planning's memory for a routed namespace",
    "orchestrator/jobs/jobs_and_runs.py:ROWS_PER_INSERT": "rows per INSERT, sends per round trip",
    "orchestrator/jobs/jobs_and_runs.py:JOB_CREATION_LOCK": "an advisory lock's key, distinct from the schema's",
    "orchestrator/recovery.py:PLANNING_LOCK": "an advisory lock's key, distinct from the schema's and job creation's",
    "orchestrator/launch.py:FIRST_SENDS": "a launch's first round trip: a task for each of a default fleet's threads",
    "orchestrator/tenancy/creator_mapping.py:SUPABASE_PAGE_ROWS": "rows asked per request (the server may send fewer)",
    "orchestrator/tenancy/tenant_guard.py:SEARCH_THREADS": "one search's fan-out over a creator's twins",
    "workers/stores/backup/parquet.py:IMPORT_BATCH_ROWS": (
        "rows read per import step, split again under the upsert limits"
    ),
    "workers/transfer/chunking.py:RECORD_OVERHEAD_BYTES": "JSON framing of one record",
    "workers/transfer/chunking.py:ENVELOPE_BYTES": "JSON framing of one upsert request",
    "workers/steps/cutover_check.py:QUERIES_PER_NAMESPACE": "one page of ids drawn as queries",
    "workers/steps/cutover_check.py:COLD_SHOWN": "the slowest cold namespaces a check's report names",
    "workers/steps/cutover_warm.py:WARM_QUERIES": "queries that warm one namespace: the first cold, the last warm",
    "orchestrator/cutover/filters.py:SHOWN_IDS": "ids of each side a differing filtered query's report names",
    "workers/steps/erasing.py:CHECKED_IDS": "ids fetched again after an erasure's delete (a sample)",
    "workers/steps/latency.py:LATENCY_RUNS": "runs timed when a job sets no latency limit",
    "workers/stores/enumeration.py:_SWEEPS_KEPT": "bounds one process's memory of sweeps",
    "workers/stores/pgvector/store.py:_UNION_CHUNK": "tables counted per query",
    # polls and timings inside one process, far below anything an operator sees
    "orchestrator/jobs/database.py:IDLE_IN_TRANSACTION_S": "a cut-off client's locks released, far above any step",
    "orchestrator/connections/liveness.py:PING_AFTER_IDLE_S": "shorter than any outage that leaves no word on a socket",
    "orchestrator/planning/collection_strategy.py:POLL_MAX_S": "backoff of polling a collection step",
    "orchestrator/planning/collection_strategy.py:FIRST_POLL_S": "backoff of polling a collection step",
    "orchestrator/planning/target_indexes.py:READY_POLL_S": "backoff of polling a new index, as the SDK polls",
    "orchestrator/planning/target_indexes.py:FIRST_POLL_S": "backoff of polling a new index",
    "workers/fleet/app.py:BROKER_TEARDOWN_S": "how long a worker treats errors as the broker's loss",
    "workers/stores/identity.py:_MARKER_POLL_S": "between reads of a marker (the timeout is a setting)",
    "workers/stores/identity.py:PROOF_KEPT_S": "how long a job's proof of two indexes stands in a worker",
    "workers/fleet/tuning.py:EVENT_FLUSH_S": "how late buffered task events reach Flower",
    "workers/fleet/tuning.py:THREAD_POOL_TICK_S": "a busy threads worker's event loop wake-up",
    "workers/steps/verifying.py:COUNT_POLL_INTERVAL_S": "between count readings",
    "workers/steps/freshness.py:POLL_START_S": "the first pause between two looks at lagging reads",
    "workers/steps/freshness.py:POLL_MAX_S": "the longest pause between two looks at lagging reads",
    "workers/steps/freshness.py:RECORD_TTL_S": "how long a run's write LSNs stay in Redis: past its cleanup",
    "workers/steps/step_chain.py:STEP_LOCK_TTL_S": "a dead step's lock outlives it: far below the visibility timeout",
    "workers/steps/step_chain.py:CHAIN_TTL_S": "how long a stepped job's chain token outlives its last step",
}


def _numeric(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    return False


def numeric_constants(source: str) -> list[str]:
    """Names of the module-level constants (UPPER_CASE, maybe ``_``-prefixed) that ``source`` sets to a number."""
    found = []
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id.lstrip("_").isupper() and _numeric(value):
                found.append(target.id)
    return found


def module_constants() -> set[str]:
    """``path:NAME`` of every module-level numeric constant of the packages, ``orchestrator.limits`` left out."""
    return {
        f"{path.relative_to(ROOT).as_posix()}:{name}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.relative_to(ROOT).as_posix() != LIMITS
        for name in numeric_constants(path.read_text())
    }


def test_every_module_level_number_is_a_listed_working_constant() -> None:
    unlisted = sorted(module_constants() - WORKING.keys())
    assert not unlisted, (
        f"new module-level numbers {unlisted}: a number an operator may want to change is a setting "
        "(orchestrator/settings.py, the manual's table) or a spec field; a fact of the outside world goes in "
        "orchestrator/limits.py; a working constant of its module is added to WORKING with its reason"
    )


def test_the_list_names_no_constant_that_is_gone() -> None:
    assert not sorted(WORKING.keys() - module_constants()), "remove these from WORKING: they are gone"


def test_the_scan_sees_numbers_in_every_form_a_constant_takes() -> None:
    source = "A = 1\n_B: float = 0.5\nC = -2\nD = 1e9\nE = 60 * 60\nname = 3\nF = 'x'\nG = True\nH = (1, 2)\n"
    assert numeric_constants(source) == ["A", "_B", "C", "D", "E"]
