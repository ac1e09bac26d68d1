"""Seed 000's refactor into a **document index** (Pinecone API 2026-07).

The seed-shaped data set (805 vectors of dimension 3072: 30 UUID twin namespaces and the default namespace) is
loaded into a legacy serverless vector index. The shipped spec ``migrations/seeds-documents.yaml`` has the job create
a document index from the schema it derives (the dense field ``embedding``, the full-text field ``chunk_text``) and
write every record as a document under ``creator_{creator}_twin_{twin}``; each namespace is verified by count, ids,
every field of every document against its source record, and searches on the dense field. The demo then shows
where everything landed and searches one twin's documents: the same top-k as the source's own query over what the
twin's namespace was made from. It exits 0 only when the job verified and the search agreed.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.creator_namespaces import use_mapping_file
from nsmigrate.cli.demo.harness import DemoOptions, DemoStack, JobOutcome, demo_stack
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate_sandbox.pinecone_server import DOCUMENT_LAG_S, IndexSpec
from nsmigrate_sandbox.seed import SeedData, seed_dataset, write_twins_csv

JOB = "seeds-documents"
TOP_K = 5


def run(options: DemoOptions) -> int:
    spec_path = catalogue()[JOB]
    shipped = load_yaml(spec_path.read_text(), str(spec_path))
    source_name, target_name = shipped["source"]["index"], shipped["target"]["index"]
    seed = seed_dataset()
    console.print(f"[bold]nsmigrate demo documents[/]: job {JOB!r} from {spec_path}")
    indexes = [IndexSpec(source_name, dimension=seed.dimension, metric="cosine")]
    with demo_stack(indexes, options) as demo:
        seed.load_into(demo.stack.pinecone, source_name)
        console.print(
            f"loaded the seed data set into legacy serverless vector index {source_name!r}: {seed.total} vectors "
            f"(dimension {seed.dimension}) in {len(seed.namespaces)} namespaces; document index {target_name!r} "
            f"does not exist yet: {target_name not in demo.stack.pinecone.names()}; its reads (list, search, counts) "
            f"will lag writes by {document_lag_s(demo):g} s, as Pinecone's do"
        )
        twins_csv = write_twins_csv(seed.twins, demo.stack.workdir / "seed-twins.csv")
        outcome = demo.run_job(demo.write_spec(spec_path, lambda data: use_mapping_file(data, twins_csv)))
        print_landing(demo, outcome, f"legacy vector index {source_name!r}", target_name)
        same = _same_search(demo, seed, source_name, target_name)
        return outcome.code if same else 1


def document_lag_s(demo: DemoStack) -> float:
    """How long the local data plane's document reads lag writes: Pinecone's minute unless the sandbox was told."""
    lag_s = demo.stack.pinecone.freshness_lag_s
    return DOCUMENT_LAG_S if lag_s is None else lag_s


def print_landing(demo: DemoStack, outcome: JobOutcome, source: str, target_name: str) -> None:
    """Each source namespace, where it went, how many documents are there, and its verdict; then the index."""
    # What landed, as stored: a lagging read (counts, list, search) may trail the job's last writes by up to the lag,
    # and the job can end sooner (verification's fetches do not lag).
    target_counts = demo.stack.pinecone.service(target_name).store.counts(latest=True)
    table = Table(title=f"{source} → document index {target_name!r}")
    for column in ("source namespace", "vectors", "→ namespace", "documents there", "verification"):
        table.add_column(column, justify="right" if column in ("vectors", "documents there") else "left")
    for run in sorted(
        jobs_and_runs.runs_of(demo.db, outcome.job_id), key=lambda r: (r.source_namespace != "", r.source_namespace)
    ):
        report: dict[str, Any] = run.verification or {}
        verdict = "passed" if report.get("passed") else "FAILED" if report else "not verified"
        where = (
            display_namespace(run.target_namespace)
            if run.target_namespace is not None
            else _routed(run.target_namespaces)
        )
        there = str(target_counts.get(run.target_namespace, 0)) if run.target_namespace is not None else ""
        table.add_row(
            display_namespace(run.source_namespace),
            str(run.source_count),
            where,
            there,
            f"{verdict}: {report.get('summary', '')}",
        )
    console.print(table)
    described = demo.stack.pinecone.service(target_name).spec.documents
    assert described is not None  # the job created a document index
    schema = ", ".join(f"{name}: {field['type']}" for name, field in described.fields_json().items())
    console.print(
        f"document index {target_name!r} at {demo.stack.pinecone.host(target_name)} (schema: {schema}): "
        f"{sum(target_counts.values())} documents in {len(target_counts)} namespaces, verified in "
        f"{outcome.elapsed_s:.1f} s; the source is kept (cleanup mode {outcome.spec.cleanup.mode!r})."
    )


def _routed(namespaces: list[str]) -> str:
    shown = ", ".join(sorted(namespaces)[:2])
    return f"routed record by record into {len(namespaces)} namespaces ({shown}, …)"


def _same_search(demo: DemoStack, seed: SeedData, source_name: str, target_name: str) -> bool:
    """Search one twin's documents on the dense field with one of its vectors, and the source the same way: its UUID
    namespace and the default namespace's vectors of that twin, merged by score (what the twin's namespace was made
    from). Whether both return the same top-k."""
    twin = max((ns for ns in seed.namespaces if ns), key=lambda ns: len(seed.namespaces[ns]))
    namespace = f"creator_{seed.twins[twin]}_twin_{twin}"
    record_id, values, _metadata = seed.namespaces[twin][0]
    vector = [float(v) for v in values]
    source = demo.index(source_name)
    own = source.query(vector=vector, top_k=TOP_K, namespace=twin).matches
    routed = source.query(vector=vector, top_k=TOP_K, namespace="", filter={"twin_id": {"$eq": twin}}).matches
    expected = [m.id for m in sorted([*own, *routed], key=lambda m: -float(m.score))[:TOP_K]]
    return same_top_k(
        demo,
        target_name,
        namespace,
        record_id,
        vector,
        expected,
        f"its UUID namespace {twin} and the default namespace's twin_id",
    )


def same_top_k(
    demo: DemoStack,
    target_name: str,
    namespace: str,
    record_id: str,
    vector: list[float],
    expected: list[str],
    what: str,
) -> bool:
    """Search ``namespace`` of the document index on the dense field with ``vector``; whether its top-k ids are
    ``expected`` (what the source's own query found: ``what``)."""
    clause = {"type": "dense_vector", "fields": ["embedding"], "values": vector}
    found = demo.index(target_name).documents.search(
        namespace=namespace, score_by=[clause], top_k=TOP_K, include_fields=["chunk_text"]
    )
    hits = [m.to_dict() for m in found.matches]
    console.print(f"search {namespace} of {target_name!r} by the dense field with the vector of {record_id!r}:")
    for hit in hits:
        console.print(f"  {hit['_id']} ({hit['_score']:.3f}): {str(hit.get('chunk_text', ''))[:60]!r}")
    same = [h["_id"] for h in hits] == expected
    verdict = "the same top-k as the source" if same else f"[red]NOT the source's top-k[/] {expected}"
    console.print(f"{len(hits)} documents, {verdict} ({what})")
    return same
