"""The cut-over inside one index, by namespace alias: the seeds' refactor of their 30 twin namespaces into
``creator_{c}_twin_{t}`` namespaces (``migrations/creator-namespaces.yaml`` on a serverless copy of the seed index,
with ``cutover.aliases``), whose application reads each twin through an alias ``live.<twin>`` with the plain SDK — no
nsmigrate code, no job table.

The runbook: the aliases made (pointing at the old namespaces), a step refused before a check and one out of order,
the check, 5 % with a short soak, a breach injected on the new namespaces and the automatic roll back (every alias
reads its old namespace again, read back through the alias), then a clean rollout to 100 %. A search through each
alias must return the same top-k before the first repoint and after the last.
"""

from __future__ import annotations

from typing import Any

from nsmigrate.cli.console import console
from nsmigrate.cli.demo.creator_namespaces import use_mapping_file
from nsmigrate.cli.demo.harness import DemoStack
from nsmigrate.cli.demo.runbook import BREACH_LATENCY_MS, LIMITS, Runbook
from nsmigrate.migrations import catalogue
from nsmigrate.orchestrator.cutover.aliases import AliasRoute, alias_routes
from nsmigrate.orchestrator.cutover.rules import ROLLOUT_STEPS
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate_sandbox.pinecone_server import Faults
from nsmigrate_sandbox.seed import SeedData, write_twins_csv

#: The serverless index the seed data is copied into for this part (a pod index serves no aliases).
INDEX = "seeds"
SPEC = "creator-namespaces"
#: The aliases' name template: the application reads twin T through `live.T`.
TEMPLATE = "live.{source}"
#: Matches a search through an alias compares before and after the repoint.
TOP_K = 10


def run_aliases(demo: DemoStack, book: Runbook, seed: SeedData) -> bool:
    """Play the alias cut-over on ``demo``; whether every step answered as the runbook says."""
    console.print(f"\n[bold]1. inside one index, by namespace alias[/]: {SPEC} in {INDEX!r}, read through {TEMPLATE}")
    seed.load_into(demo.stack.pinecone, INDEX)
    twins_csv = write_twins_csv(seed.twins, demo.stack.workdir / "seed-twins.csv")
    outcome = demo.run_job(demo.write_spec(catalogue()[SPEC], lambda data: _in_place(data, twins_csv)))
    if outcome.code != 0:
        return book.miss(f"job {SPEC} did not verify (exit code {outcome.code})")
    job_id, job = outcome.job_id, str(outcome.job_id)
    runs = [(r.source_namespace, r.target_namespace) for r in jobs_and_runs.runs_of(demo.db, job_id)]
    routes, _ = alias_routes(TEMPLATE, runs)
    made = f"{len(routes)} aliases the application reads through, at the old namespaces"
    book.step(made, 0, "cutover", "aliases", job)
    before = _searches(demo, routes)
    reads_new = ("cutover", "set", job, "--reads", "new", "--percent")
    book.step("the rails: no step without a passing load check", 1, *reads_new, "5")
    book.check(demo.db, job_id)
    book.step("the rails: a first step of 25 % is refused (5 % comes first)", 1, *reads_new, "25")
    book.step("5 % of the aliases to their new namespaces", 0, *reads_new, "5")
    book.soak(job_id)
    _breach(demo, book, job, routes)
    for percent in ROLLOUT_STEPS[1:]:
        book.step(f"{percent} % of the aliases to their new namespaces", 0, *reads_new, str(percent))
        book.soak(job_id)
    if book.ok:
        _same_answers(book, before, _searches(demo, routes))
    book.step("the job's status: the rollout and what the watch's reads saw", 0, "status", job)
    return book.ok


def _in_place(data: dict[str, Any], twins_csv: Any) -> None:
    """The shipped spec on a serverless copy of the seed index (which lists its ids: no sweep), cut over by alias;
    the twins' namespaces only. The default namespace is routed record by record into many namespaces, so no alias
    can serve it, and its records would join the twins' new namespaces, where a search rightly finds more."""
    use_mapping_file(data, twins_csv)
    data["namespaces"]["exclude"] = [*data["namespaces"].get("exclude", []), "__default__"]
    for role in ("source", "target"):
        data[role]["index"] = INDEX
        data[role].pop("enumerate", None)
    data["cutover"] = {**LIMITS, "aliases": TEMPLATE}


def _searches(demo: DemoStack, routes: list[AliasRoute]) -> dict[str, tuple[str, list[str]]]:
    """Each alias → (the namespace that answered, the top-k ids) of a search through it with the plain SDK."""
    index = demo.index(INDEX)
    probe = [1.0] * (index.describe_index_stats().dimension or 1)
    answers = {r.name: index.query(vector=probe, top_k=TOP_K, namespace=r.name) for r in routes}
    return {name: (str(answer.namespace), [m.id for m in answer.matches]) for name, answer in answers.items()}


def _breach(demo: DemoStack, book: Runbook, job: str, routes: list[AliasRoute]) -> None:
    """The new namespaces serve every read slowly; the watch must move the aliases back, read back through them."""
    if not book.ok:
        return
    slow = tuple(sorted(r.new for r in routes))
    console.print(f"\n[bold]a breach on the target[/]: the new namespaces answer {BREACH_LATENCY_MS} ms late")
    demo.stack.pinecone.set_faults(INDEX, Faults(latency_ms=BREACH_LATENCY_MS, latency_namespaces=slow))
    try:
        watch = ("cutover", "watch", job, "--duration", "120")
        book.step("the watch sees it and moves the aliases back to the old namespaces", 1, *watch)
    finally:
        demo.stack.pinecone.set_faults(INDEX, Faults())
    served = {namespace for namespace, _ in _searches(demo, routes).values()}
    if book.ok and served != {r.old for r in routes}:
        book.miss(f"after the roll back, the aliases serve {sorted(served - {r.old for r in routes})}")
    elif book.ok:
        console.print(f"every one of the {len(routes)} aliases reads its old namespace again (read through it)")


def _same_answers(
    book: Runbook, before: dict[str, tuple[str, list[str]]], after: dict[str, tuple[str, list[str]]]
) -> None:
    moved = [name for name in before if before[name][0] != after[name][0]]
    same = [name for name in moved if before[name][1] == after[name][1]]
    console.print(
        f"\n[bold]independent check[/]: {len(moved)} of {len(before)} aliases moved to their new namespaces; a "
        f"search through each returns the same top-{TOP_K} before and after the repoint: {len(same)} of {len(moved)}"
    )
    if len(moved) != len(before) or len(same) != len(moved):
        book.miss("a search through an alias answered otherwise after the repoint")
