"""Seed 003 into a **document index** (Pinecone API 2026-07): a pod index, which Pinecone's convert cannot take.

The seed-shaped data set (805 vectors of dimension 3072 in 31 namespaces) is loaded into a pod index of the local
data plane, which cannot list its ids. The shipped spec ``migrations/pod-to-documents.yaml`` finds them by a sweep,
has the job create a document index from the schema it derives, writes every namespace under its name as documents
and verifies each one: count, ids, every field of every document, and searches on the dense field against the pod's
queries. The demo then searches one namespace of each and exits 0 only when the job verified and both agreed.
"""

from __future__ import annotations

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.documents import TOP_K, document_lag_s, print_landing, same_top_k
from nsmigrate.cli.demo.harness import DemoOptions, demo_stack
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.seed import seed_dataset

JOB = "pod-to-documents"


def run(options: DemoOptions) -> int:
    spec_path = catalogue()[JOB]
    shipped = load_yaml(spec_path.read_text(), str(spec_path))
    pod_name, target_name = shipped["source"]["index"], shipped["target"]["index"]
    seed = seed_dataset()
    console.print(f"[bold]nsmigrate demo {JOB}[/]: job {JOB!r} from {spec_path}")
    indexes = [IndexSpec(pod_name, dimension=seed.dimension, metric="cosine", kind="pod")]
    with demo_stack(indexes, options) as demo:
        seed.load_into(demo.stack.pinecone, pod_name)
        console.print(
            f"loaded the seed data set into pod index {pod_name!r}: {seed.total} vectors (dimension "
            f"{seed.dimension}) in {len(seed.namespaces)} namespaces; reads of the document index lag writes by "
            f"{document_lag_s(demo):g} s, as Pinecone's do"
        )
        outcome = demo.run_job(demo.write_spec(spec_path))
        print_landing(demo, outcome, f"pod index {pod_name!r}", target_name)
        namespace = max((ns for ns in seed.namespaces if ns), key=lambda ns: len(seed.namespaces[ns]))
        record_id, values, _metadata = seed.namespaces[namespace][0]
        vector = [float(v) for v in values]
        expected = [m.id for m in demo.index(pod_name).query(vector=vector, top_k=TOP_K, namespace=namespace).matches]
        same = same_top_k(demo, target_name, namespace, record_id, vector, expected, f"the pod's query of {namespace}")
        return outcome.code if same else 1
