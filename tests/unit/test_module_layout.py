"""The shape of the product's folders: ``workers/`` keeps its modules in groups by role (``fleet/``, ``steps/``,
``stores/``, ``transfer/``), so its top holds only the few modules every group uses."""

from __future__ import annotations

from tests.image import REPO

#: Modules at the top of workers/ at most: past it, a module belongs in one of the groups.
WORKERS_TOP_MAX = 12


def test_workers_keeps_at_most_twelve_modules_at_its_top() -> None:
    top = sorted(path.name for path in (REPO / "workers").glob("*.py") if path.name != "__init__.py")

    assert len(top) <= WORKERS_TOP_MAX, f"workers/ has {len(top)} modules at its top; move some into a group: {top}"
