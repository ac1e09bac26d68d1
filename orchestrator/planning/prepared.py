"""A plan ready to become a job (``Prepared``): the spec, its plan, the stores' labels, the target index to create
and when planning passed its steps. ``launch.prepare`` makes it; the summary, the command and the plan server read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nsmigrate.orchestrator.planning.plan import Plan
from nsmigrate.orchestrator.planning.target_indexes import TargetIndex
from nsmigrate.orchestrator.spec.jobspec import JobSpec


@dataclass(frozen=True)
class Prepared:
    spec: JobSpec
    plan: Plan
    source_label: str
    target_label: str
    #: The target index the spec asks nsmigrate to create (``target.create``), and whether it exists already.
    target_index: TargetIndex | None = None
    #: When planning passed its steps (``PLANNING_MARKS``, epoch seconds), kept in the job's ``job_created`` event:
    #: how long the user waited before the job existed, and on what.
    marks: dict[str, float] = field(default_factory=dict)
    #: Lines the plan shows about another way to do the job (whether Pinecone's convert would apply, and why not).
    notes: tuple[str, ...] = ()


#: The steps of planning timed in ``Prepared.marks``: the spec handed to the fleet's planner by the command (only when
#: the fleet plans), the spec validated, the first request sent to a store, the plan and its job-wide checks done.
PLANNING_MARKS = ("spec_submitted", "spec_parsed", "first_store_request", "plan_done")
