"""No module basename is shared between ``orchestrator/`` and ``workers/``: a name says which layer's module it is
(``workers/listing.py`` is the lister; the job table's side of it is ``orchestrator/jobs/pages.py``)."""

from __future__ import annotations

from pathlib import Path

from tests.image import REPO


def basenames(tree: str) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted((REPO / tree).rglob("*.py")):
        if path.name != "__init__.py":
            found.setdefault(path.name, []).append(path.relative_to(REPO))
    return found


def test_no_module_basename_is_shared_between_orchestrator_and_workers() -> None:
    in_orchestrator, in_workers = basenames("orchestrator"), basenames("workers")

    shared = [in_orchestrator[name] + in_workers[name] for name in sorted(in_orchestrator.keys() & in_workers.keys())]

    assert not shared, "rename one side so each name says its layer: " + "; ".join(
        " and ".join(str(path) for path in paths) for paths in shared
    )
