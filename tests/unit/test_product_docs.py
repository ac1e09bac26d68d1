"""The repository speaks of the product: no file names the work that made it (how or by whom it was built), the
changelog is a user's changelog in the Keep a Changelog form, and the benchmarks' page is how to run them and their
latest figures, both short enough to read (their history lives in git)."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from tests.image import REPO

CHANGELOG = REPO / "CHANGELOG.md"
BENCH_README = REPO / "bench" / "README.md"
MAX_LINES = 400

#: Words of how the product was made, never of the product itself: a numbered work period, a work branch's name, the
#: people who built it. (A database session, a pytest session and a git worktree the A/B benches make are the
#: product's own words, so the patterns name only the work's.)
WORK_WORDS = re.compile(
    r"\bsessions? \d+"
    r"|\bh\d{2}[a-z]?-[a-z]"
    r"|\bh-[a-z]+\d*\b"
    r"|\bhelper (?:session|branch|worktree)s?\b"
    r"|\bwork(?:ing)? sessions?\b"
    r"|\b(?:this|last|next|previous|earlier) session\b"
    r"|\blead (?:engineer|session)s?\b",
    re.IGNORECASE,
)
#: A file the benchmarks' page names (`bench/ab.py`, `sandbox/memory.py`), and a module it runs (`python -m bench.ab`).
NAMED_FILE = re.compile(r"`([a-z_][a-z0-9_./-]*\.(?:py|toml|ya?ml|md|sql))`")
RUN_MODULE = re.compile(r"python -m ([a-z_][a-z0-9_.]*)")
SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
VERSION = re.compile(r"^## \[(\d+)\.(\d+)\.(\d+)\] - \d{4}-\d{2}-\d{2}$")


def ignored() -> list[str]:
    """The .gitignore's patterns (each a name or a glob, a trailing ``/`` for folders), and git's own folder."""
    lines = (REPO / ".gitignore").read_text().splitlines()
    return [".git", *(line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#"))]


def repository_files() -> Iterator[Path]:
    """Every file of the repository that git would track: the tree without what .gitignore leaves out."""
    patterns = ignored()
    for folder, folders, files in os.walk(REPO):
        folders[:] = [d for d in folders if not any(fnmatch.fnmatch(d, p) for p in patterns)]
        for name in files:
            if not any(fnmatch.fnmatch(name, p) for p in patterns):
                yield Path(folder) / name


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (an image)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def test_no_file_speaks_of_work_sessions_helpers_or_branches() -> None:
    found = []
    for path in repository_files():
        text = None if path == Path(__file__) else text_of(path)
        for number, line in enumerate((text or "").splitlines(), 1):
            if match := WORK_WORDS.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {match.group(0)!r} in {line.strip()[:100]}")

    assert not found, "say what the product does, not how its work was organised:\n" + "\n".join(found)


def test_the_patterns_find_the_words_of_the_work_and_leave_the_products_alone() -> None:
    # Assembled from parts, so that this file itself never reads as a note about how work was organised.
    session, helper, branch = "ses" + "sion", "hel" + "per", "bra" + "nch"
    for work in (
        f"measured in {session} 41",
        "merged from h41" + "-delete",
        f"the h-cli {branch}",
        f"a {helper} {session}'s",
    ):
        assert WORK_WORDS.search(work), work
    for product in ("every other session on it ended", "a database session", 'scope="session"', "each git worktree"):
        assert not WORK_WORDS.search(product), product


def test_the_changelog_and_the_benchmarks_page_stay_short() -> None:
    for page in (CHANGELOG, BENCH_README):
        lines = len(page.read_text().splitlines())
        assert lines <= MAX_LINES, f"{page.relative_to(REPO)}: {lines} lines, at most {MAX_LINES} (history is in git)"


def test_the_changelog_is_in_the_keep_a_changelog_form() -> None:
    lines = CHANGELOG.read_text().splitlines()
    assert lines[0] == "# Changelog"
    releases = [line for line in lines if line.startswith("## ")]
    assert releases[0] == "## [Unreleased]", "the first section gathers the changes not yet released"
    versions = []
    for heading in releases[1:]:
        match = VERSION.match(heading)
        assert match, f"{heading!r}: a release is '## [X.Y.Z] - YYYY-MM-DD'"
        versions.append(tuple(int(part) for part in match.groups()))
    assert versions and versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    for heading in (line for line in lines if line.startswith("### ")):
        assert heading[4:] in SECTIONS, f"{heading!r}: the sections are {sorted(SECTIONS)}"


def test_every_release_lists_its_changes_under_a_section() -> None:
    text = CHANGELOG.read_text()
    for release in re.split(r"^## ", text, flags=re.MULTILINE)[2:]:  # after the title and [Unreleased]
        name = release.splitlines()[0]
        assert re.search(r"^### \w+\n\n- ", release, flags=re.MULTILINE), f"{name}: no change listed under a section"
        before_sections = release.split("### ")[0]
        assert not re.search(r"^- ", before_sections, flags=re.MULTILINE), f"{name}: a change outside a section"


def test_the_newest_release_is_the_packages_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    newest = next(line for line in CHANGELOG.read_text().splitlines() if VERSION.match(line))

    assert newest.startswith(f"## [{version}] - "), f"pyproject.toml's version {version} is not the newest release"


def test_the_benchmarks_page_names_every_benchmark_and_only_what_exists() -> None:
    page = BENCH_README.read_text()
    missing = sorted({name for name in NAMED_FILE.findall(page) if not (REPO / name).exists()})
    not_modules = sorted({name for name in RUN_MODULE.findall(page) if importlib.util.find_spec(name) is None})
    unnamed = [
        f"bench/{path.name}"
        for path in sorted((REPO / "bench").glob("*.py"))
        if path.stem != "__init__" and f"bench.{path.stem}" not in page and f"bench/{path.name}" not in page
    ]

    assert not missing, f"bench/README.md names files that are not there: {missing}"
    assert not not_modules, f"bench/README.md runs modules that are not there: {not_modules}"
    assert not unnamed, f"bench/README.md says nothing of {unnamed}"
