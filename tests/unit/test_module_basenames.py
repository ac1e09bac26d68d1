"""No module basename is shared between ``orchestrator/`` and ``workers/``: a name says which layer's module it is
(``workers/listing.py`` is the lister; the job table's side of it is ``orchestrator/jobs/pages.py``)."""

from __future__ import annotations

from pathlib import Path

from tests.image import REPO

# Shared names whose modules are being merged by another branch (one path per job, issue #29 item 2). Each entry must
# still be shared, so the list can only shrink.
BEING_MERGED = {"planner.py", "stalled.py"}


def basenames(tree: str) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted((REPO / tree).rglob("*.py")):
        if path.name != "__init__.py":
            found.setdefault(path.name, []).append(path.relative_to(REPO))
    return found


def shared_basenames() -> dict[str, list[Path]]:
    orchestrator, workers = basenames("orchestrator"), basenames("workers")
    return {name: orchestrator[name] + workers[name] for name in orchestrator.keys() & workers.keys()}


def test_no_module_basename_is_shared_between_orchestrator_and_workers() -> None:
    shared = {name: paths for name, paths in shared_basenames().items() if name not in BEING_MERGED}

    assert not shared, "rename one side so each name says its layer: " + "; ".join(
        " and ".join(str(path) for path in paths) for paths in shared.values()
    )


def test_the_names_being_merged_are_still_shared() -> None:
    gone = BEING_MERGED - shared_basenames().keys()

    assert not gone, f"no longer shared, take them out of BEING_MERGED: {sorted(gone)}"
