"""What a user is shown of a plan, as plain data: a table of namespace runs and the lines under it, and the same plan
with stable keys for `plan --json` and `run --json` (``PlanSummary.data``, ``PLAN_KEYS``).

Made where the plan is made (the command's own process, or the fleet's planner, ``workers.fleet.plan_server``) and
sent as JSON when the planner made it; ``cli.render.print_plan`` draws it. So a plan reads the same wherever it was
made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from nsmigrate.orchestrator.records.namespaces import creator_namespace, display_namespace

if TYPE_CHECKING:  # the reading commands render summaries without loading the planner or the spec models
    from nsmigrate.orchestrator.planning.plan import Plan
    from nsmigrate.orchestrator.planning.prepared import Prepared
    from nsmigrate.orchestrator.spec.jobspec import JobSpec

#: Columns shown left-aligned; the rest are numbers.
TEXT_COLUMNS = ("source namespace", "target namespace", "ids by")


@dataclass(frozen=True)
class PlanSummary:
    title: str
    columns: list[str]
    rows: list[list[str]]
    #: Lines printed under the table, in order: totals and estimate, target index, strategy (or another that would
    #: apply), routes.
    lines: list[str]
    warnings: list[str] = field(default_factory=list)
    #: The plan with stable keys (``plan_data``): what `plan --json` prints.
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        # Its fields as they are, for the answer's JSON: ``asdict`` deep-copied every row and namespace, a fifth of a
        # second of the fleet's planner for 2,000 namespaces, while the job's first tasks started.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def document(self) -> dict[str, Any]:
        """`plan --json`'s document: ``data`` with the lines a person reads (``notes``) and the warnings."""
        return {**self.data, "notes": list(self.lines), "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanSummary:
        return cls(
            title=str(data["title"]),
            columns=[str(c) for c in data["columns"]],
            rows=[[str(cell) for cell in row] for row in data["rows"]],
            lines=[str(line) for line in data["lines"]],
            warnings=[str(w) for w in data.get("warnings", [])],
            data=dict(data.get("data") or {}),
        )


#: The keys of `plan --json`'s document, and of each of its namespaces: documented in docs/manual.md (JSON output),
#: kept by tests/integration/test_cli_json.py.
PLAN_KEYS = ("name", "source", "target", "namespaces", "totals", "estimate", "notes", "warnings")
NAMESPACE_KEYS = ("source_namespace", "target_namespace", "vectors", "batches", "ids_by", "creator_id", "twin_id")


def plan_data(name: str, source: str, target: str, plan: Plan) -> dict[str, Any]:
    """A plan with stable keys: namespaces as stored ("" is the default one; a ``target_namespace`` of None is routed
    per vector), counts, and the estimate of its requests, units, bytes and seconds."""
    est = plan.estimate
    namespaces = [
        {
            "source_namespace": r.source_namespace,
            "target_namespace": r.target_namespace,
            "vectors": r.vector_count,
            "batches": r.batches,
            "ids_by": r.enumeration,
            "creator_id": r.creator_id,
            "twin_id": r.twin_id,
        }
        for r in plan.runs
    ]
    return {
        "name": name,
        "source": source,
        "target": target,
        "namespaces": namespaces,
        "totals": {"namespaces": len(plan.runs), "vectors": plan.total_vectors, "batches": plan.total_batches},
        "estimate": {**asdict(est), "sweep_queries": list(est.sweep_queries)},
    }


def summarize(prepared: Prepared) -> PlanSummary:
    plan = prepared.plan
    enumerated = any(run.enumeration != "list" for run in plan.runs)
    columns = ["source namespace", "target namespace", "vectors", "batches"]
    columns += ["ids by", "sweep queries", "sweep RUs"] if enumerated else []
    rows = []
    for run in plan.runs:
        target = (
            display_namespace(run.target_namespace)
            if run.target_namespace is not None
            else "(routed per vector by twin id)"
        )
        row = [display_namespace(run.source_namespace), target, str(run.vector_count), str(run.batches)]
        if enumerated:
            least, most = run.sweep_queries
            queries = "" if run.enumeration != "sweep" else str(least) if least == most else f"{least}–{most}"
            units = f"≥{run.sweep_read_units:g}" if run.enumeration == "sweep" else ""
            row += [run.enumeration, queries, units]
        rows.append(row)
    est = plan.estimate
    sweep = est.sweep_queries
    shown = str(sweep[0]) if sweep[0] == sweep[1] else f"{sweep[0]}–{sweep[1]}"
    sweeps = f", {shown} sweep queries" if sweep[1] else ""
    lines = [
        f"{len(plan.runs)} namespaces, {plan.total_vectors} vectors, {plan.total_batches} batches; "
        f"requests: {est.list_requests} list{sweeps}, {est.fetch_requests} fetch, {est.upsert_requests} upsert; "
        f"≈{est.read_units} read units, ≈{est.write_units} write units; "
        f"≈{est.duration_s:.1f} s at the configured budgets"
    ]
    if prepared.target_index is not None:
        lines.append(prepared.target_index.describe())
    if prepared.spec.strategy == "collection":
        from nsmigrate.orchestrator.planning.collection_strategy import describe_strategy

        lines.append(describe_strategy(prepared.spec))
    if prepared.spec.strategy == "convert":
        from nsmigrate.orchestrator.planning.convert_strategy import describe_strategy as describe_convert

        lines.append(describe_convert(prepared.spec))
    lines += prepared.notes
    # Pinecone copies by itself in a collection or a conversion: no upsert or import to compare.
    native = prepared.spec.strategy in ("collection", "convert")
    if prepared.spec.target.kind == "pinecone" and not native and plan.total_vectors:
        from nsmigrate.orchestrator.limits import IMPORT_RECOMMENDED_RECORDS
        from nsmigrate.orchestrator.planning.import_strategy import compare
        from nsmigrate.orchestrator.settings import DEFAULTS

        # Upsert or import: shown for every import job, and for a fleet job big enough for the choice to matter.
        if prepared.spec.strategy == "import" or plan.total_vectors >= IMPORT_RECOMMENDED_RECORDS // 10:
            sizes = [run.vector_count for run in plan.runs]  # the workers' default threads: planned elsewhere
            lines += compare(prepared.spec, est, sizes, est.dimension, DEFAULTS.import_write_threads)
    lines.extend(route_lines(plan.routes, prepared.spec))
    return PlanSummary(
        title=f"plan for job {prepared.spec.name!r}: {prepared.source_label} → {prepared.target_label}",
        columns=columns,
        rows=rows,
        lines=lines,
        warnings=list(plan.warnings),
        data=plan_data(prepared.spec.name, prepared.source_label, prepared.target_label, plan),
    )


def route_lines(routes: Mapping[str, Mapping[str, int]], spec: JobSpec) -> list[str]:
    """Per routed namespace, how many vectors take each route; then, for the routes a person may ask about (the
    owners table, the creator given to unresolved vectors), how many and why."""
    routing = spec.routing
    lines = []
    for ns, counts in routes.items():
        taken = ", ".join(f"{route} {n}" for route, n in counts.items())
        lines.append(f"routes of {display_namespace(ns)} ({sum(counts.values())} vectors): {taken}")
        if counts.get("owner") and routing.owners is not None:
            lines.append(
                f"  owner {counts['owner']}: no twin_id, creator_id or sources key; their vector ids are rows of the "
                f"owners table {routing.owners.table!r}"
            )
        who = routing.unresolved_creator or routing.override_creator
        for route in ("unresolved_creator", "override_creator"):
            if counts.get(route) and who is not None:
                given = f", unresolved_creator: {who}" if route == "unresolved_creator" else ""
                lines.append(
                    f"  {route} {counts[route]}: resolved by no route (no twin_id, creator_id, sources key or owners "
                    f"row) → {creator_namespace(who)!r} (routing.unresolved: creator{given})"
                )
    return lines
