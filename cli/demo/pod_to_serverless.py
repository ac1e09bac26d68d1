"""Seed 003: a pod index moves to serverless, the way a real pod allows.

The seed-shaped data set (805 vectors of dimension 3072 in 31 namespaces) is loaded into a **pod** index of the local
data plane, which refuses ``list`` and the ``/namespaces`` endpoints as Pinecone's pods do. The shipped spec
``migrations/pod-to-serverless.yaml`` finds the pod's ids by a sweep, has the job create the serverless target index
(and wait until it is ready), copies every namespace under its name and verifies each one against the pod's counts.
"""

from __future__ import annotations

from pinecone import NotFoundError
from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, JobOutcome, demo_stack
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.jobs import status as jobs_status
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import seed_dataset

JOB = "pod-to-serverless"


def run(options: DemoOptions) -> int:
    spec_path = catalogue()[JOB]
    shipped = load_yaml(spec_path.read_text(), str(spec_path))
    pod_name, target_name = shipped["source"]["index"], shipped["target"]["index"]
    seed = seed_dataset()
    console.print(f"[bold]nsmigrate demo {JOB}[/]: job {JOB!r} from {spec_path}")
    with demo_stack([IndexSpec(pod_name, dimension=seed.dimension, metric="cosine", kind="pod")], options) as demo:
        seed.load_into(demo.stack.pinecone, pod_name)
        console.print(
            f"loaded the seed data set into pod index {pod_name!r}: {seed.total} vectors "
            f"(dimension {seed.dimension}) in {len(seed.namespaces)} namespaces; "
            f"index {target_name!r} does not exist yet: {target_name not in demo.stack.pinecone.names()}"
        )
        _show_refusal(demo, pod_name)
        outcome = demo.run_job(demo.write_spec(spec_path))
        _print_landing(demo, outcome, pod_name, target_name)
        return outcome.code


def _show_refusal(demo: DemoStack, pod_name: str) -> None:
    """What a pod answers when asked to list: why the spec sweeps instead."""
    try:
        demo.index(pod_name).list_paginated(namespace="", limit=1)
    except NotFoundError as e:
        console.print(f"the pod index refuses to list ids, as Pinecone's pods do: {e.status_code} {e.message!r}")
    else:  # the sandbox must never be kinder than Pinecone
        console.print("[red]the pod index listed ids: the local data plane is not behaving like a pod[/]")


def _print_landing(demo: DemoStack, outcome: JobOutcome, pod_name: str, target_name: str) -> None:
    pod_counts = {ns: s.vector_count for ns, s in demo.index(pod_name).describe_index_stats().namespaces.items()}
    target = demo.index(target_name)
    target_counts = {ns: s.vector_count for ns, s in target.describe_index_stats().namespaces.items()}
    reports = {run.source_namespace: run.verification or {} for run in jobs_and_runs.runs_of(demo.db, outcome.job_id)}
    table = Table(title=f"pod index {pod_name!r} → serverless index {target_name!r}")
    for column in ("namespace", f"{pod_name} (pod)", f"{target_name} (serverless)", "verification"):
        table.add_column(column, justify="left" if column in ("namespace", "verification") else "right")
    for ns in sorted(pod_counts, key=lambda n: (n != "__default__", -pod_counts[n], n)):
        report = reports.get("" if ns == "__default__" else ns, {})
        verdict = "passed" if report.get("passed") else "FAILED" if report else "not verified"
        table.add_row(ns, str(pod_counts[ns]), str(target_counts.get(ns, 0)), f"{verdict}: {report.get('summary', '')}")
    console.print(table)
    for event in jobs_status.events_of(demo.db, outcome.job_id):
        if event["action"] == "target_index_created":
            detail = {k: v for k, v in (event["detail"] or {}).items() if k != "host"}
            console.print(f"created target index {target_name!r} (audit log): {detail}")
    described = demo.stack.pinecone.service(target_name).spec
    console.print(
        f"{target_name!r} is a {described.kind} index, dimension {described.dimension}, metric {described.metric}, "
        f"at {demo.stack.pinecone.host(target_name)}; it holds {sum(target_counts.values())} of the pod's "
        f"{sum(pod_counts.values())} vectors in {len(target_counts)} namespaces, copied and verified in "
        f"{outcome.elapsed_s:.1f} s. The pod index is kept: switch reads "
        "to the serverless index, then retire the pod (see the README's cut-over order)."
    )
    example = next((ns for ns in target_counts if ns != "__default__"), None)
    if example is not None:
        vid = target.list_paginated(namespace=example, limit=1).vectors[0].id  # serverless lists
        if vid is not None:
            meta = target.fetch(ids=[vid], namespace=example).vectors[vid].metadata or {}
            shown = {k: meta[k] for k in sorted(meta) if k != "text"}
            console.print(f"example vector {vid!r} in {display_namespace(example)}: metadata {shown}")
