"""The shape of the product's folders: no module of the product grows past one concept's size, and ``workers/`` keeps
its modules in groups by role (``fleet/``, ``steps/``, ``stores/``, ``transfer/``), so its top holds only the few
modules every group uses."""

from __future__ import annotations

from tests.image import REPO

#: Lines of one module at most: past it, a module holds more than one concept and is split by concept.
MODULE_MAX_LINES = 600
#: Modules at the top of workers/ at most: past it, a module belongs in one of the groups.
WORKERS_TOP_MAX = 12


def test_workers_keeps_at_most_twelve_modules_at_its_top() -> None:
    top = sorted(path.name for path in (REPO / "workers").glob("*.py") if path.name != "__init__.py")

    assert len(top) <= WORKERS_TOP_MAX, f"workers/ has {len(top)} modules at its top; move some into a group: {top}"


def test_no_module_of_the_product_passes_six_hundred_lines() -> None:
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in ("cli", "orchestrator", "workers")
        for path in (REPO / folder).rglob("*.py")
    }

    too_long = {module: lines for module, lines in sorted(sizes.items()) if lines > MODULE_MAX_LINES}

    assert not too_long, f"split these modules by concept (at most {MODULE_MAX_LINES} lines each): {too_long}"
