"""``nsmigrate demo [SCENARIO]``: each seed scenario, end to end, on embedded services (no accounts, no Docker).

A scenario is one module of this package with a ``run(options: DemoOptions) -> int`` function, listed in
``SCENARIOS``. It starts what it needs through ``cli.demo.harness``, runs its job(s) on a real worker pool, prints
what landed where, and returns 0 only when verification passed. This package is the only part of the product that
uses the sandbox (the import-linter contract in ``pyproject.toml`` says so).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

if TYPE_CHECKING:  # the harness imports the whole stack: `nsmigrate demo --help` needs only the list below
    from nsmigrate.cli.demo.harness import DemoOptions


class Scenario(NamedTuple):
    module: str  # a module of this package with run(options: DemoOptions) -> int
    summary: str


#: Every scenario, in the order ``nsmigrate demo --help`` lists them; the first is the default.
SCENARIOS: dict[str, Scenario] = {
    "creator-namespaces": Scenario(
        "creator_namespaces",
        "seeds 000–002: 30 UUID twin namespaces and the default namespace → creator_{creator}_twin_{twin} "
        "namespaces (migrations/creator-namespaces.yaml), verified.",
    ),
    "pod-to-serverless": Scenario(
        "pod_to_serverless",
        "seed 003: the 805 seed vectors in a pod index that cannot list → a serverless index the job creates; "
        "ids found by a sweep, every namespace copied and verified (migrations/pod-to-serverless.yaml).",
    ),
    "pgvector": Scenario(
        "pgvector",
        "seed 004: the application's legacy embeddings table (its own DDL, 300 chunks of dimension 3072) → "
        "embeddings_default with its documented indexes (HNSW over halfvec for 3072 dimensions) and a second "
        "namespace table inside Postgres → a Pinecone index → back into roundtrip_* tables, each step verified; the "
        "round trip compared record by record and a similarity search answered by the HNSW index "
        "(migrations/pgvector-to-pinecone.yaml, migrations/pinecone-to-pgvector.yaml).",
    ),
    "integrated": Scenario(
        "integrated",
        "seed 001: the 805 seed vectors' text → an integrated index the job creates (its model embeds chunk_text), "
        "written with upsert_records, verified by ids, text, fields and a text search "
        "(migrations/seeds-integrated.yaml).",
    ),
    "documents": Scenario(
        "documents",
        "seed 000 into a document index (API 2026-07): the 805 seed vectors of a legacy serverless index → "
        "creator_{creator}_twin_{twin} namespaces of a document index the job creates from a derived schema; every "
        "field of every document verified against its source record, and a search on the dense field that returns "
        "the source's top-k (migrations/seeds-documents.yaml).",
    ),
    "pod-to-documents": Scenario(
        "pod_to_documents",
        "seed 003 into a document index (API 2026-07): the 805 seed vectors of a pod index (ids found by a sweep) → "
        "the same namespaces of a document index the job creates, which Pinecone's convert cannot do; verified, "
        "and a search on the dense field that returns the pod's top-k (migrations/pod-to-documents.yaml).",
    ),
    "erase": Scenario(
        "erase",
        "seeds 000–002: every twin filed under the test creator sainath.no.1 (with a backup), one twin erased; then "
        "creator a.1 erased everywhere (namespaces, old UUID namespaces, default namespace, copies, backup) while "
        "a.10 stays; each erasure with its receipt.",
    ),
    "cutover": Scenario(
        "cutover",
        "cut-over, twice: inside one index by namespace alias (the seeds' 30 twin namespaces refactored into "
        "creator_{creator}_twin_{twin}, read through live.<twin>) and across indexes by DualWriteIndex (an application "
        "dual-writing during the copy, then reading); each with a refused early step, a load check, short watched "
        "soaks, a breach injected on the target that the watch rolls back by itself, and a clean rollout to 100 %; "
        "exits 0 only when every step held, a search through each alias answered the same top-10 before and after "
        "its repoint, and the new index holds every write (an independent check).",
    ),
}
DEFAULT_SCENARIO = next(iter(SCENARIOS))


def _scenario_list() -> str:
    lines = "\n\n".join(f"{name}: {scenario.summary}" for name, scenario in SCENARIOS.items())
    return f"Scenarios (default: {DEFAULT_SCENARIO}):\n\n{lines}"


app = typer.Typer(add_completion=False)


@app.command(epilog=_scenario_list())
def demo(
    scenario: Annotated[
        str, typer.Argument(help="The scenario to play (listed below).", show_default=True)
    ] = DEFAULT_SCENARIO,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Also start Flower, the job pages and the workers' metrics, and keep everything running after the "
            "scenario until Ctrl-C.",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(help="Copy worker concurrency (prefork processes).")] = 8,
) -> None:
    """Play a seed scenario end to end on embedded services (no accounts, no Docker): a local Pinecone data plane
    with the seed-shaped data set, Redis, Postgres and a worker pool (with --keep, Flower too). Exit code 0 only when
    the scenario's verification passed."""
    if scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"no scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)} (see `nsmigrate demo --help`)",
            param_hint="SCENARIO",
        )
    if importlib.util.find_spec("nsmigrate_sandbox") is None:
        raise typer.BadParameter(
            "the demo runs on embedded services that are not installed: install them with "
            "`pip install 'nsmigrate[sandbox]'` from a checkout of nsmigrate (or run `make demo` there, which does)",
            param_hint="SCENARIO",
        )
    from nsmigrate.cli.demo.harness import DemoOptions

    code = run_scenario(scenario, DemoOptions(keep=keep, copy_concurrency=workers))
    # Everything the scenario started is stopped. What is left is its data (hundreds of MB of vectors in the
    # in-process data plane), which the interpreter would free object by object for seconds: leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_scenario(name: str, options: DemoOptions) -> int:
    """Run scenario ``name`` (a key of ``SCENARIOS``); its exit code: 0 only when its verification passed."""
    module = importlib.import_module(f"{__name__}.{SCENARIOS[name].module}")
    code: int = module.run(options)
    return code
