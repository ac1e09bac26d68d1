"""The container image's file set, read from the Dockerfile: what its ``COPY`` lines take from the build context."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def copied_sources(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The source patterns of every ``COPY`` from the build context (``COPY --from=`` copies from another stage)."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def copy_image_files(destination: Path, context: Path = REPO) -> list[str]:
    """Copy what the Dockerfile copies from ``context`` into ``destination``; returns the paths copied. A pattern
    that matches nothing copies nothing, as in Docker (``README.md*``)."""
    copied: list[str] = []
    for pattern in copied_sources():
        for path in sorted(context.glob(pattern)):
            relative = path.relative_to(context)
            if path.is_dir():
                shutil.copytree(path, destination / relative, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, destination / relative)
            copied.append(str(relative))
    return copied
