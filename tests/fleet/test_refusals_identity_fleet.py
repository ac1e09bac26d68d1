"""Issue 27, case 4 with a cleanup worker: an erasure whose receipt names a store left unsearched never says it is
empty there (the in-process cases are in tests/integration/test_refusals_identity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate_sandbox.pinecone_server import IndexSpec
from nsmigrate_sandbox.stack import Stack
from tests.fleet_jobs import use_stack_env

DIM = 8


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("small-src", DIM), IndexSpec("small-dst", DIM)]


def test_a_receipt_never_says_empty_for_a_store_left_unsearched(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    use_stack_env(stack, monkeypatch)
    specs = []
    for index in ("small-src", "small-dst"):
        stack.pinecone.load(index, "creator_a.1", [(f"{index}-x", [0.1] * DIM, None)])
        path = tmp_path / f"{index}.yaml"
        store = {"kind": "pinecone", "host": stack.pinecone.host(index)}
        path.write_text(f"name: {index}\nsource: {store}\ntarget: {store}\n")
        specs += ["--spec", str(path)]
    skipped = stack.pinecone.host("small-dst").split("://", 1)[1]
    stack.start_worker("cleanup", 2, pool="threads")

    result = CliRunner().invoke(app, ["erase", "a.1", *specs, "--skip-store", skipped, "--yes", "--timeout-s", "120"])

    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"every place checked empty; NOT searched: {skipped};" in said
    assert stack.pinecone.count("small-dst", "creator_a.1") == 1 and stack.pinecone.count("small-src") == 0
