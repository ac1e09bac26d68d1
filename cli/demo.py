"""``nsmigrate demo``: the seeds' creator-namespace job, end to end, on embedded services.

It starts the local stack, loads the seed-shaped data set (805 vectors of dimension 3072: 30 UUID twin namespaces
plus 376 vectors in the default namespace), writes the twin → creator mapping, points the shipped spec
``migrations/creator-namespaces.yaml`` at the sandbox, runs it on a real worker pool with Flower watching, and prints
what landed where. Nothing outside this machine is touched. The only module of the product that uses the sandbox.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pinecone import Pinecone
from rich.table import Table

from cli import waits
from cli.console import console
from cli.fleet import open_store
from cli.render import print_plan, watch_job
from migrations import catalogue
from orchestrator import jobs, launch
from orchestrator.dispatch import Dispatcher
from orchestrator.records import display_namespace
from orchestrator.settings import load_settings
from orchestrator.spec import parse_spec
from sandbox.pinecone_server import IndexSpec
from sandbox.seed import seed_dataset, write_twins_csv
from sandbox.stack import SANDBOX_API_KEY, Stack, start_stack

app = typer.Typer(add_completion=False)

DEMO_JOB = "creator-namespaces"


def sandbox_spec(spec_path: Path, stack: Stack, twins_csv: Path | None) -> dict[str, Any]:
    """The shipped spec with its Pinecone stores pointed at the sandbox's control plane (and the mapping file)."""
    data = yaml.safe_load(spec_path.read_text())
    for role in ("source", "target"):
        if data[role].get("kind", "pinecone") == "pinecone":
            data[role]["control_host"] = stack.pinecone.control_host
    creators = (data.get("routing") or {}).get("creators")
    if creators and creators.get("source") == "file" and twins_csv is not None:
        creators["path"] = str(twins_csv)
    return data


def run_demo(*, keep: bool = False, copy_concurrency: int = 8) -> int:
    """Run the demo; returns the exit code of its watch (0: every namespace copied and verified)."""
    spec_path = catalogue()[DEMO_JOB]
    shipped = yaml.safe_load(spec_path.read_text())
    index_name = shipped["source"]["index"]
    seed = seed_dataset()
    console.print(f"[bold]nsmigrate demo[/]: job {DEMO_JOB!r} from {spec_path}")
    console.print("starting Redis, Postgres (pgvector), the local Pinecone data plane, workers and Flower …")
    stack = start_stack([IndexSpec(index_name, dimension=seed.dimension, metric="cosine", kind="pod")])
    try:
        seed.load_into(stack.pinecone, index_name)
        console.print(
            f"loaded the seed data set into index {index_name!r}: {seed.total} vectors "
            f"(dimension {seed.dimension}) in {len(seed.namespaces)} namespaces"
        )
        twins_csv = write_twins_csv(seed.twins, stack.workdir / "seed-twins.csv")
        spec_file = stack.workdir / f"{DEMO_JOB}.yaml"
        spec_file.write_text(yaml.safe_dump(sandbox_spec(spec_path, stack, twins_csv), sort_keys=False))

        os.environ.update({k: v for k, v in stack.env().items() if k.startswith(("NSMIGRATE_", "PINECONE_"))})
        stack.start_worker("list,verify,cleanup", 4, name="control")
        stack.start_worker("copy", copy_concurrency, name="copy")
        flower_url = stack.start_flower()

        settings = load_settings()
        db = jobs.Database(settings.database_url)
        spec = parse_spec(yaml.safe_load(spec_file.read_text()), origin=str(spec_file))
        prepared = launch.prepare(spec, open_store, spec_file.parent)
        print_plan(prepared)
        started = time.monotonic()
        job_id = launch.launch(db, Dispatcher(settings), prepared)
        console.print(
            f"job {job_id} started; watch it in Flower at {flower_url} (user admin, password {stack.flower_password})"
        )
        code = watch_job(db, job_id, waits.settled(db, job_id), timeout_s=600)
        elapsed = time.monotonic() - started
        _print_landing(stack, index_name)
        status = jobs.job_status(db, job_id)
        console.print(
            f"copied {status.totals.copied} of {status.totals.source} vectors in "
            f"{elapsed:.1f} s; the source namespaces are kept (cleanup mode "
            f"{spec.cleanup.mode!r}: only verified namespaces can be deleted, with `nsmigrate cleanup`)."
        )
        if keep:
            console.print(
                f"[bold]running until Ctrl-C[/]: Flower {flower_url}; NSMIGRATE_DATABASE_URL="
                f"{settings.database_url} NSMIGRATE_REDIS_URL={settings.redis_url}"
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        db.dispose()
        return code
    finally:
        stack.stop()


def _print_landing(stack: Stack, index_name: str) -> None:
    index = Pinecone(api_key=SANDBOX_API_KEY).Index(host=stack.pinecone.host(index_name))
    stats = index.describe_index_stats()
    table = Table(title=f"index {index_name!r} after the job: creator namespaces")
    table.add_column("namespace")
    table.add_column("vectors", justify="right")
    creator_namespaces = sorted(ns for ns in stats.namespaces if ns.startswith("creator_") or ns == "public")
    for ns in creator_namespaces:
        table.add_row(ns, str(stats.namespaces[ns].vector_count))
    console.print(table)
    if creator_namespaces:
        sample_ns = creator_namespaces[0]
        # A pod index cannot list ids: one query returns an id of the namespace.
        matches = index.query(vector=[1.0] * stats.dimension, top_k=1, namespace=sample_ns).matches
        vid = matches[0].id if matches else None
        if vid is not None:
            meta = index.fetch(ids=[vid], namespace=sample_ns).vectors[vid].metadata or {}
            console.print(
                f"example vector {vid!r} in {sample_ns}: metadata { {k: meta[k] for k in sorted(meta) if k != 'text'} }"
            )
    console.print(
        f"{len(creator_namespaces)} creator namespaces; source namespaces still present: "
        f"{len([ns for ns in stats.namespaces if not ns.startswith('creator_')])} "
        f"(including {display_namespace('')})"
    )


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the sandbox, workers and Flower running until Ctrl-C.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Copy worker concurrency (prefork processes).")] = 8,
) -> None:
    """Run the seeds' creator-namespace job end to end on embedded services (no accounts, no Docker): a local
    Pinecone data plane with the seed-shaped data set, Redis, Postgres, a worker pool and Flower."""
    raise typer.Exit(run_demo(keep=keep, copy_concurrency=workers))
