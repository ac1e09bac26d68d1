"""Seeds 000–002: the UUID-per-twin namespaces of one index become ``creator_{creator}_twin_{twin}`` namespaces.

The seed-shaped data set (805 vectors of dimension 3072: 30 UUID twin namespaces plus 376 vectors in the default
namespace) is loaded into the local data plane, the twin → creator mapping is written as a file, and the shipped
spec ``migrations/creator-namespaces.yaml`` runs against them on a real worker pool and is verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, demo_stack
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import seed_dataset, write_twins_csv

JOB = "creator-namespaces"


def run(options: DemoOptions) -> int:
    spec_path = catalogue()[JOB]
    index_name = load_yaml(spec_path.read_text(), str(spec_path))["source"]["index"]
    seed = seed_dataset()
    console.print(f"[bold]nsmigrate demo {JOB}[/]: job {JOB!r} from {spec_path}")
    with demo_stack([IndexSpec(index_name, dimension=seed.dimension, metric="cosine", kind="pod")], options) as demo:
        seed.load_into(demo.stack.pinecone, index_name)
        console.print(
            f"loaded the seed data set into index {index_name!r}: {seed.total} vectors "
            f"(dimension {seed.dimension}) in {len(seed.namespaces)} namespaces"
        )
        twins_csv = write_twins_csv(seed.twins, demo.stack.workdir / "seed-twins.csv")
        outcome = demo.run_job(demo.write_spec(spec_path, lambda data: use_mapping_file(data, twins_csv)))
        _print_landing(demo, index_name)
        console.print(
            f"copied {outcome.status.totals.copied} of {outcome.status.totals.source} vectors in "
            f"{outcome.elapsed_s:.1f} s; the source namespaces are kept (cleanup mode "
            f"{outcome.spec.cleanup.mode!r}: only verified namespaces can be deleted, with `nsmigrate cleanup`)."
        )
        return outcome.code


def use_mapping_file(data: dict[str, Any], twins_csv: Path) -> None:
    creators = (data.get("routing") or {}).get("creators")
    if creators and creators.get("source") == "file":
        creators["path"] = str(twins_csv)


def _print_landing(demo: DemoStack, index_name: str) -> None:
    index = demo.index(index_name)
    stats = index.describe_index_stats()
    table = Table(title=f"index {index_name!r} after the job: creator namespaces")
    table.add_column("namespace")
    table.add_column("vectors", justify="right")
    shared = ("public", "review")
    creator_namespaces = sorted(ns for ns in stats.namespaces if ns.startswith("creator_") or ns in shared)
    for ns in creator_namespaces:
        table.add_row(ns, str(stats.namespaces[ns].vector_count))
    console.print(table)
    if creator_namespaces:
        sample_ns = creator_namespaces[0]
        # A pod index cannot list ids: one query returns an id of the namespace.
        matches = index.query(vector=[1.0] * (stats.dimension or 1), top_k=1, namespace=sample_ns).matches
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
