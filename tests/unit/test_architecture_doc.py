"""docs/architecture.md stays true: its state diagrams are the transition tables edge for edge, and it names the
home of every module of the product, so a newcomer finds each concept there."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum

import pytest

from nsmigrate.orchestrator.jobs.lifecycle import BATCH_TRANSITIONS, JOB_TRANSITIONS, RUN_TRANSITIONS
from tests.image import REPO

DOC = REPO / "docs" / "architecture.md"
MERMAID = re.compile(r"```mermaid\n(.*?)```", re.DOTALL)
EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", re.MULTILINE)
TABLES: dict[str, Mapping[StrEnum, frozenset[StrEnum]]] = {
    "JOB_TRANSITIONS": JOB_TRANSITIONS,
    "RUN_TRANSITIONS": RUN_TRANSITIONS,
    "BATCH_TRANSITIONS": BATCH_TRANSITIONS,
}
PRODUCT = ("cli", "orchestrator", "workers", "sandbox")


def diagrams() -> dict[str, set[tuple[str, str]]]:
    """Each state diagram's edges (``[*]`` starts left out), by the table its ``%% NAME`` comment names."""
    found: dict[str, set[tuple[str, str]]] = {}
    for block in MERMAID.findall(DOC.read_text()):
        name = re.search(r"%%\s*(\w+)", block)
        if name:
            found[name.group(1)] = set(EDGE.findall(block))
    return found


@pytest.mark.parametrize("table", TABLES)
def test_each_state_diagram_is_its_transition_table(table: str) -> None:
    expected = {(a.value, b.value) for a, targets in TABLES[table].items() for b in targets if a != b}

    drawn = diagrams().get(table)

    assert drawn is not None, f"docs/architecture.md has no mermaid diagram marked %% {table}"
    assert not expected - drawn, f"add to the {table} diagram: {sorted(expected - drawn)}"
    assert not drawn - expected, f"the {table} diagram draws moves the table does not allow: {sorted(drawn - expected)}"


def test_every_module_of_the_product_has_its_home_named() -> None:
    text = DOC.read_text()
    modules = sorted(
        str(path.relative_to(REPO))
        for package in PRODUCT
        for path in (REPO / package).rglob("*.py")
        if path.name != "__init__.py" or path.stat().st_size > 0
    )

    unnamed = [module for module in modules if f"`{module}`" not in text]

    assert not unnamed, f'name these modules in docs/architecture.md ("Where each concept lives"): {unnamed}'
