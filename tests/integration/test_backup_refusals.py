"""`nsmigrate export` and `nsmigrate import` meet a file system that will not do what they need (an --out that cannot
be written, a manifest that cannot be read or whose entries are not objects): one `error:` line naming the path and
what to do, exit code 2, nothing written. The commands in process, on the local Pinecone data plane (real SDK)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nsmigrate.cli.main import app
from nsmigrate.orchestrator.errors import BackupError
from nsmigrate.orchestrator.spec.stores import PineconeStoreSpec
from nsmigrate.workers.stores.backup.importing import import_path
from nsmigrate.workers.stores.backup.parquet import FORMAT, MANIFEST_NAME
from nsmigrate.workers.stores.base import Record
from nsmigrate.workers.stores.guarded import GuardedStore
from nsmigrate.workers.stores.pinecone.store import PineconeStore
from nsmigrate_sandbox.pinecone_server import IndexSpec, PineconeSandbox
from tests.settling import settle

DIM = 4
API_KEY = "sandbox-backup-refusals-key"


@pytest.fixture(scope="module")
def sandbox_indexes() -> list[IndexSpec]:
    return [IndexSpec("src", DIM), IndexSpec("dst", DIM)]


@pytest.fixture
def spec(sandbox: PineconeSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A spec from ``src`` (namespace ``plain``: 2 vectors) to ``dst``."""
    monkeypatch.setenv("PINECONE_API_KEY", API_KEY)
    source = PineconeStoreSpec(host=sandbox.host("src"))
    store = GuardedStore(PineconeStore(source), attempts=3, max_wait_s=0.05)
    store.upsert("plain", [Record(f"v-{i}", [0.1 * (i + 1)] * DIM) for i in range(2)])
    store.close()
    settle(source)
    path = tmp_path / "spec.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "backup-job",
                "source": {"kind": "pinecone", "host": sandbox.host("src")},
                "target": {"kind": "pinecone", "host": sandbox.host("dst")},
            }
        )
    )
    return path


def one_error_line(output: str) -> str:
    """The command's output on one line, once it is shown to hold one `error:` line and no traceback."""
    assert "Traceback" not in output, output
    assert [line for line in output.splitlines() if line.startswith("error:")], output
    return " ".join(output.split())


def test_export_to_an_out_that_cannot_be_written_is_refused_in_one_line(spec: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    out = blocker / "exp"

    result = CliRunner().invoke(app, ["export", str(spec), "--out", str(out)])

    assert result.exit_code == 2, result.output
    said = one_error_line(result.output)
    assert f"cannot write the export to {out}" in said and "nothing was exported" in said
    assert blocker.read_text() == "not a directory\n"


def test_import_refuses_a_manifest_entry_that_is_not_an_object(
    spec: Path, sandbox: PineconeSandbox, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / MANIFEST_NAME).write_text(json.dumps({"format": FORMAT, "namespaces": ["plain.parquet"]}))

    with pytest.raises(BackupError, match="namespaces entry 0 is not an object"):
        import_path(object(), backup)  # type: ignore[arg-type]  # refused before any store call
    result = CliRunner().invoke(app, ["import", str(backup), str(spec)])

    assert result.exit_code == 2, result.output
    said = one_error_line(result.output)
    assert f"{backup / MANIFEST_NAME} is not an nsmigrate manifest" in said and "export again" in said
    dst = GuardedStore(PineconeStore(PineconeStoreSpec(host=sandbox.host("dst"))), attempts=3, max_wait_s=0.05)
    assert dst.namespaces() == {}
    dst.close()


def test_import_refuses_a_manifest_it_cannot_read(spec: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    # A file whose every read fails with EIO, even for root (who reads past any permission bits).
    (backup / MANIFEST_NAME).symlink_to("/proc/self/mem")

    result = CliRunner().invoke(app, ["import", str(backup), str(spec)])

    assert result.exit_code == 2, result.output
    said = one_error_line(result.output)
    assert f"cannot read {backup / MANIFEST_NAME}" in said and "nothing was written" in said
