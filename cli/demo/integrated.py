"""Seed 001: the seed vectors' text moves into an **integrated** index, which embeds ``chunk_text`` itself.

The seed-shaped data set (805 vectors of dimension 3072 in 31 namespaces, each with its ``text`` metadata) is loaded
into a serverless index of the local data plane. The shipped spec ``migrations/seeds-integrated.yaml`` has the job
create the integrated index (``create_index_for_model``: the model embeds ``chunk_text``), writes every record as text
with ``upsert_records`` (96 per request) and verifies each namespace by ids, text, fields and a search of sampled
records by their own text. The demo then searches the new index by text, as the production runtime does.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, JobOutcome, demo_stack
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import SeedData, seed_dataset

JOB = "seeds-integrated"


def run(options: DemoOptions) -> int:
    spec_path = catalogue()[JOB]
    shipped = load_yaml(spec_path.read_text(), str(spec_path))
    source_name, target_name = shipped["source"]["index"], shipped["target"]["index"]
    field = shipped["target"]["records"]["field"]
    seed = seed_dataset()
    console.print(f"[bold]nsmigrate demo integrated[/]: job {JOB!r} from {spec_path}")
    with demo_stack([IndexSpec(source_name, dimension=seed.dimension, metric="cosine")], options) as demo:
        seed.load_into(demo.stack.pinecone, source_name)
        console.print(
            f"loaded the seed data set into serverless index {source_name!r}: {seed.total} vectors "
            f"(dimension {seed.dimension}) in {len(seed.namespaces)} namespaces, each with its `text` metadata; "
            f"index {target_name!r} does not exist yet: {target_name not in demo.stack.pinecone.names()}"
        )
        outcome = demo.run_job(demo.write_spec(spec_path))
        _print_landing(demo, outcome, source_name, target_name)
        _show_search(demo, seed, target_name, field)
        return outcome.code


def _print_landing(demo: DemoStack, outcome: JobOutcome, source_name: str, target_name: str) -> None:
    # As stored, not as the index's lagging reads see them yet (``documents.print_landing`` says why).
    source_counts = demo.stack.pinecone.service(source_name).store.counts(latest=True)
    target_counts = demo.stack.pinecone.service(target_name).store.counts(latest=True)
    reports = {run.source_namespace: run.verification or {} for run in jobs_and_runs.runs_of(demo.db, outcome.job_id)}
    table = Table(title=f"vector index {source_name!r} → integrated index {target_name!r}")
    for column in ("namespace", f"{source_name} (vectors)", f"{target_name} (text records)", "verification"):
        table.add_column(column, justify="left" if column in ("namespace", "verification") else "right")
    for ns in sorted(source_counts, key=lambda n: (n != "", -source_counts[n], n)):
        report = reports.get(ns, {})
        verdict = "passed" if report.get("passed") else "FAILED" if report else "not verified"
        row = (display_namespace(ns), str(source_counts[ns]), str(target_counts.get(ns, 0)))
        table.add_row(*row, f"{verdict}: {report.get('summary', '')}")
    console.print(table)
    for event in jobs_status.events_of(demo.db, outcome.job_id):
        if event["action"] == "target_index_created":
            shape = (event["detail"] or {}).get("shape", {})
            console.print(
                f"created integrated index {target_name!r} (audit log): model {shape.get('model')}, "
                f"text field {shape.get('text_field')!r}, {shape.get('cloud')}/{shape.get('region')}"
            )
        elif event["action"] == "records_not_written":
            detail = event["detail"] or {}
            console.print(f"[red]not written[/] ({detail.get('reason')}): {detail.get('ids')}")
    embed = demo.stack.pinecone.service(target_name).spec.embed
    assert embed is not None  # the job created it for a model
    stats = demo.stack.pinecone.stats(target_name)
    console.print(
        f"{target_name!r} embeds {embed.field!r} with {embed.model} ({embed.dimension}-dim {embed.metric}) at "
        f"{demo.stack.pinecone.host(target_name)}: {sum(target_counts.values())} of {sum(source_counts.values())} "
        f"records in {len(target_counts)} namespaces, written with {stats['requests'].get('upsert_records', 0)} "
        f"upsert_records requests (≤ 96 records each) and verified in {outcome.elapsed_s:.1f} s. The vector index "
        "is kept."
    )


def _show_search(demo: DemoStack, seed: SeedData, target_name: str, field: str) -> None:
    """Search the integrated index by text, as the runtime does: a record's own text, then two of its words."""
    index = demo.index(target_name)
    namespace = max(seed.namespaces, key=lambda ns: (ns != "", len(seed.namespaces[ns])))
    vector_id, _values, metadata = seed.namespaces[namespace][0]
    text = str(metadata["text"])
    fetched: dict[str, Any] = dict(index.fetch(ids=[vector_id], namespace=namespace).vectors[vector_id].metadata or {})
    console.print(f"record {vector_id!r} in {display_namespace(namespace)} as the integrated index keeps it: {fetched}")
    for query in (text, " ".join(text.split()[:2])):
        hits = index.search(namespace=namespace or "__default__", top_k=3, inputs={"text": query}, fields=[field])
        shown = ", ".join(f"{h.id} ({h.score:.2f}: {h.fields.get(field)!r})" for h in hits.result.hits)
        console.print(f"search {display_namespace(namespace)} for {query!r}: {shown}")
