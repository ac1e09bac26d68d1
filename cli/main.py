"""The root command, ``nsmigrate``: its command groups load lazily, so ``--help`` imports none of them.

``COMMANDS`` names each command's module and its one-line help (the first paragraph of its docstring; a test keeps
the two equal). A command's module, and whatever it needs (Celery, a store SDK, pyarrow), is imported only when that
command runs or shows its own ``--help`` (click's "lazily loading subcommands" pattern).

Every command reads its connection settings once from the environment (``NSMIGRATE_DATABASE_URL``,
``NSMIGRATE_REDIS_URL``; see ``orchestrator.settings``) or from ``--database-url`` / ``--redis-url``.
Errors are printed as one clear message with what to do, and exit with code 2 (bad input) or 1 (refused or failed).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup

from nsmigrate.cli import plain_params
from nsmigrate.cli.console import print_error
from nsmigrate.orchestrator.errors import NsmigrateError

plain_params.install()  # strings, paths and flags read without loading pydantic


class Entry(NamedTuple):
    module: str
    help: str


#: Every command, in the order ``--help`` lists them: its module and its one-line help.
COMMANDS: dict[str, Entry] = {
    "plan": Entry(
        "nsmigrate.cli.run",
        "Dry run: validate SPEC, read the source inventory and show what would be migrated. Writes nothing.",
    ),
    "run": Entry(
        "nsmigrate.cli.run",
        "Plan SPEC, write the job table and enqueue the work; prints the job id. An unfinished job of the same name is "
        "resumed instead, with the spec it was started with (see --resume). With `backup.enabled` in the spec, the "
        "planned source namespaces are exported to Parquet first, and a failed backup starts nothing. A running "
        "fleet's planner does the planning when it can (see --plan-here).",
    ),
    "status": Entry(
        "nsmigrate.cli.jobs", "Show a job's state, per-namespace progress, failed batches and verification results."
    ),
    "report": Entry(
        "nsmigrate.cli.jobs",
        "Print the full verification (and cleanup) reports of JOB's namespaces as JSON: counts, missing and extra ids, "
        "content mismatches, query equivalence and latency. Exit code 0 when every reported namespace passed and is "
        "still verified (or cleaned): a report of a namespace copied or being verified again since is an earlier one.",
    ),
    "jobs": Entry("nsmigrate.cli.jobs", "List the jobs in the job table."),
    "events": Entry("nsmigrate.cli.jobs", "Show a job's audit log (who did what, when)."),
    "watch": Entry("nsmigrate.cli.jobs", "Live progress of a running job (like `run --wait`)."),
    "retry": Entry(
        "nsmigrate.cli.actions",
        "Re-enqueue the failed batches and failed listers of JOB (only those), e.g. once a fault is gone.",
    ),
    "resume": Entry(
        "nsmigrate.cli.actions",
        "Re-enqueue all unfinished work of JOB (after workers, Redis or the orchestrator died). Safe to repeat.",
    ),
    "cancel": Entry(
        "nsmigrate.cli.actions",
        "Cancel JOB: queued batches are skipped by the workers, a cleanup under way stops before its next chunk; "
        "nothing is deleted.",
    ),
    "verify": Entry(
        "nsmigrate.cli.actions",
        "(Re-)verify the copied namespaces of JOB: counts, id sets, contents. Exit code 0 = all passed.",
    ),
    "cleanup": Entry(
        "nsmigrate.cli.actions",
        "Delete the SOURCE namespaces of JOB that passed verification (and only those, only if the spec allows it and "
        "the source has not changed since). Every deletion and refusal is written to the audit log.",
    ),
    "sync": Entry(
        "nsmigrate.cli.actions",
        "Copy what appeared or changed in the source since JOB copied it (writes during the migration), then verify "
        "again. Run it right before cutting over; ids deleted in the source are reported (see --propagate-deletes), "
        "and so are source namespaces the job's selection takes that it has no run for (made after its plan; "
        "--new-namespaces adds them).",
    ),
    "rollback": Entry(
        "nsmigrate.cli.actions",
        "Undo migrate JOB: restore its original namespaces from the targets where they are missing (after cleanup), "
        "verify every original against its migrated copy, and only then remove the namespaces JOB created. Refuses, "
        "with nothing deleted, when an original cannot be verified. Recorded as a job of kind `rollback`; safe to "
        "re-run.",
    ),
    "cutover": Entry(
        "nsmigrate.cli.cutover",
        "Cut over a migrated job's traffic: `check` load-tests the target, `set` moves the applications' reads to it "
        "step by step (5 → 25 → 50 → 100 %, each after a passing check and a soak, and back at once). Applications "
        "read through nsmigrate.DualWriteIndex (following what `publish` puts in Redis), or, inside one index, "
        "through the namespace aliases `aliases` creates; `watch` measures a live step and rolls it back on a breach.",
    ),
    "export": Entry(
        "nsmigrate.cli.backup",
        "Export namespaces of SPEC's source store to Parquet (one file per namespace plus manifest.json): a backup to "
        "restore with `nsmigrate import`. Only reads from the store. The export is recorded in the job table (a "
        "`backup_written` event), so `nsmigrate erase` finds it and erases a creator's rows from it too.",
    ),
    "import": Entry(
        "nsmigrate.cli.backup",
        "Upsert exported vectors into SPEC's target store (or its source, with --to-source). Every file is checked "
        "first (an intact nsmigrate export, the same dimension, an empty target namespace unless --overwrite): if any "
        "check fails, nothing is written. --overwrite shows how many stored vectors each namespace would have replaced "
        "and asks before writing (--yes: does not ask).",
    ),
    "erase": Entry(
        "nsmigrate.cli.erasure",
        "Erase a creator's (or one twin's, --twin) data from every place nsmigrate knows: namespaces in every store "
        "of the job table, their vectors in shared namespaces, backups. Matched exactly (`a.1` never touches `a.10`), "
        "run as a job of kind `erase`, checked afterwards, with a receipt in the audit log and a file.",
    ),
    "pgvector": Entry(
        "nsmigrate.cli.pgvector",
        "Namespaces of the application's pgvector layout: one table embeddings_{namespace} per namespace "
        "(names: lowercase "
        "letters, digits and _, at most 50 characters, not backup/temp/tmp/system/admin; the default namespace is "
        "embeddings_default). Every copy runs inside Postgres; a move or the legacy migration renames its source to a "
        "backup table, never drops it.",
    ),
    "worker": Entry(
        "nsmigrate.cli.services", "Run a worker consuming the given queues (one pool per queue in production)."
    ),
    "flower": Entry(
        "nsmigrate.cli.services",
        "Run Flower (task monitor) with basic auth: user $NSMIGRATE_FLOWER_USER (admin), password from the env var "
        "named by NSMIGRATE_FLOWER_PASSWORD_ENV (default NSMIGRATE_FLOWER_PASSWORD).",
    ),
    "metrics": Entry(
        "nsmigrate.cli.metrics",
        "Serve the job table's Prometheus gauges on http://ADDRESS:PORT/metrics: namespaces per job and state, the "
        "job's vectors (source, listed, copied, failed) and its failed batches, read at each scrape with the same "
        "summary `nsmigrate status` shows. Workers serve the fleet's counters themselves (`nsmigrate worker "
        "--metrics-port`).",
    ),
    "demo": Entry(
        "nsmigrate.cli.demo",
        "Play a seed scenario end to end on embedded services (no accounts, no Docker): a local Pinecone data plane "
        "with the seed-shaped data set, Redis, Postgres and a worker pool (with --keep, Flower too). Exit code 0 "
        "only when the scenario's verification passed.",
    ),
}


@functools.cache
def _commands_of(module: str) -> dict[str, Any]:
    """The commands of a command-group module (its typer ``app``), by name; imports the module."""
    with _collector_paused():
        command = typer.main.get_command(importlib.import_module(module).app)
    if isinstance(command, TyperGroup):
        return dict(command.commands)
    return {command.name or "": command}


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Load a command's modules with the cyclic garbage collector paused, then freeze what is loaded.

    A command's modules (for a worker: Celery, SQLAlchemy, pydantic, the SDK) are some 120,000 long-lived objects and
    almost no garbage: the collector's hundreds of passes while they load free next to nothing and cost about a sixth
    of the import's CPU, which every worker, Flower and command start pays. Frozen (``gc.freeze``), they stay out of
    every later collection too, as a worker's pool already keeps them (``workers.fleet.app``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def load_command(name: str) -> Any:
    """The real command ``name``, its module imported."""
    return _commands_of(COMMANDS[name].module)[name]


class LazyGroup(TyperGroup):
    """The root group: lists commands from ``COMMANDS`` and imports a command's module only to run it (or show its
    own help). Known errors (``NsmigrateError``) become one clear message and their exit code (``exit_code``: 2 bad
    input, 1 refused) inside the app itself, so that ``nsmigrate``, ``python -m nsmigrate`` and
    ``typer.testing.CliRunner`` all behave the same."""

    _summaries_only = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Stand-ins carrying the one-line help: the group's help lists them, typo suggestions read their names.
        self.commands = {name: TyperCommand(name, help=entry.help) for name, entry in COMMANDS.items()}

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if self._summaries_only:
            return self.commands[cmd_name]
        return load_command(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._summaries_only = True  # listing the commands needs their one line only, not their modules
        try:
            super().format_help(ctx, formatter)
        finally:
            self._summaries_only = False

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        self._summaries_only = True  # completing a command's name needs its one line only, not its module
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._summaries_only = False

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NsmigrateError as e:
            print_error(str(e))
            raise typer.Exit(e.exit_code) from e


app = typer.Typer(
    cls=LazyGroup,
    name="nsmigrate",
    help="Migrate vector data between Pinecone namespaces/indexes and pgvector tables with a Celery fleet: "
    "plan a job from a YAML spec, run it on workers, watch it, re-run failed batches, verify, then clean up.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from nsmigrate.workers.build_info import version_text  # only when asked: it loads the Pinecone client

        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print nsmigrate's version, the Pinecone API version it speaks and the Celery and kombu it runs on.",
        ),
    ] = False,
) -> None:
    """The commands are in ``COMMANDS``; typer needs a callback to make this a group."""


def main() -> None:
    """Console-script entry point: known errors become one clear line instead of a traceback."""
    # The app reports NsmigrateError itself (see LazyGroup); this catches one raised outside a command.
    try:
        app()
    except NsmigrateError as e:
        print_error(str(e))
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
