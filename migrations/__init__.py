"""The catalogue of migration specs users kick off: one YAML job spec per file in this folder.

``catalogue()`` maps each spec's name (the file name without ``.yaml``) to its path, e.g.
``load_spec(catalogue()["creator-namespaces"])``. Data files the specs refer to (``data/…``) are resolved relative
to the spec file. The format is documented in ``migrations/README.md``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def catalogue() -> dict[str, Path]:
    """Shipped job specs: name (file stem) → path of the YAML file, sorted by name."""
    return {p.stem: p for p in sorted([*HERE.glob("*.yaml"), *HERE.glob("*.yml")])}
