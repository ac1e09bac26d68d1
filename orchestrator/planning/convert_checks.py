"""Planning a copy into a document index with Pinecone's convert in mind: the plan of a ``strategy: convert`` job
(``prepare_convert``: the control plane's word on both indexes, then the keys a document would refuse, read from a
sample of the source), and the line a fleet plan into a document index shows about convert (``convert_note``).
The decisions themselves are ``orchestrator.planning.convert_strategy``'s; the stores and the control plane are passed
in, as ``launch`` opens them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.planning.convert_strategy import convert_offer, plan_convert
from nsmigrate.orchestrator.planning.document_checks import check_document_keys
from nsmigrate.orchestrator.planning.plan import Inventory
from nsmigrate.orchestrator.planning.prepared import Prepared
from nsmigrate.orchestrator.planning.target_indexes import IndexControl, TargetIndex
from nsmigrate.orchestrator.spec.jobspec import JobSpec

if TYPE_CHECKING:
    from nsmigrate.orchestrator.store import Store


def prepare_convert(
    spec: JobSpec,
    source: Store,
    source_inv: Inventory,
    target_label: str,
    control: IndexControl | None,
    marks: dict[str, float],
) -> Prepared:
    """The plan of a ``strategy: convert`` job (``convert_strategy.plan_convert``), with the keys a document would
    refuse found in a sample of the source (convert renames nothing, so those refuse it)."""
    if control is None:
        raise PlanError("strategy `convert` needs the Pinecone control plane, and none was given")
    described = control.describe_index(str(spec.source.index))  # the spec made sure: one project, named indexes
    existing = control.describe_index(str(spec.target.index))
    plan, target_index = plan_convert(spec, source_inv, described, existing)
    try:
        check_document_keys(spec, source, [r.source_namespace for r in plan.runs])
    except PlanError as e:
        raise PlanError(
            f"strategy `convert` cannot take these records: {e.message}",
            hint=f"Pinecone's convert writes each metadata key under its own name; use strategy `fleet` and {e.hint}",
            **e.ids,
        ) from e
    marks["plan_done"] = time.time()
    return Prepared(spec, plan, source.name, target_label, target_index, marks)


def converts_to(spec: JobSpec, control: IndexControl | None) -> bool:
    """Whether a plan says if Pinecone's convert would do the job: a fleet copy into a Pinecone document index."""
    return spec.strategy == "fleet" and control is not None and getattr(spec.target, "documents", None) is not None


def convert_note(spec: JobSpec, control: IndexControl | None, source_label: str, target: TargetIndex | None) -> str:
    """Whether Pinecone's convert would do this fleet job, or why not (``convert_strategy.convert_offer``)."""
    assert control is not None
    named = spec.source.kind == "pinecone" and spec.source.index is not None
    described = control.describe_index(str(spec.source.index)) if named else None
    # A target the plan does not create exists (the plan checked it); one named by host cannot be asked.
    existing = str(spec.target.index) if target is None or target.action == "use" else None
    return convert_offer(spec, described, source_label, existing, source_asked=named)
