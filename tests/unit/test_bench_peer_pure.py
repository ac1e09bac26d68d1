"""The bench peer's pure parts: its upsert requests stay under Pinecone's limits whatever the page holds, its budgets
are nsmigrate's, and bad input is one message naming what is wrong, exit 2."""

from __future__ import annotations

import orjson
import pytest

from bench.peer import Budgets, _upsert_chunks, main
from nsmigrate.orchestrator.limits import UPSERT_MAX_BYTES, UPSERT_MAX_VECTORS
from nsmigrate.orchestrator.spec.jobspec import RateBudget


def test_upsert_requests_stay_under_the_limits_when_the_first_record_is_short() -> None:
    # The first record's values are short as JSON (the estimate's sample), the others as long as a float gets.
    short = {"id": "a", "values": [0.5] * 3072}
    long = [{"id": f"v{i}", "values": [-0.12345678901234567] * 3072, "metadata": {"k": "x" * 500}} for i in range(99)]

    chunks = _upsert_chunks([short, *long])

    assert [r["id"] for chunk, _ in chunks for r in chunk] == ["a", *(r["id"] for r in long)]
    for chunk, _ in chunks:
        body = orjson.dumps({"vectors": chunk, "namespace": "n" * 512})
        assert len(chunk) <= UPSERT_MAX_VECTORS and len(body) <= UPSERT_MAX_BYTES


def test_many_small_records_are_cut_at_the_vector_limit() -> None:
    chunks = _upsert_chunks([{"id": str(i), "values": [0.25]} for i in range(2500)])

    assert [len(chunk) for chunk, _ in chunks] == [1000, 1000, 500]


def test_default_budgets_are_the_spec_defaults() -> None:
    defaults = RateBudget()

    budgets = Budgets.nsmigrate_defaults()

    assert (budgets.read_rps, budgets.list_rps, budgets.stats_rps, budgets.write_rps, budgets.write_mb_per_s) == (
        defaults.read_rps,
        defaults.list_rps,
        defaults.stats_rps,
        defaults.write_rps,
        defaults.write_mb_per_s,
    )


@pytest.mark.parametrize(
    ("budgets", "named"),
    [
        ('{"read_rps": 0, "list_rps": 1, "stats_rps": 1, "write_rps": 1, "write_mb_per_s": 1}', "read_rps"),
        ('{"read_rps": 1}', "list_rps"),
        ("not json", "--budgets"),
    ],
)
def test_bad_budgets_exit_2_naming_them(
    budgets: str, named: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", "k")

    with pytest.raises(SystemExit) as exited:
        main(["--source", "http://127.0.0.1:1", "--target", "http://127.0.0.1:2", "--budgets", budgets])

    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_a_missing_key_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)

    assert main(["--source", "http://127.0.0.1:1", "--target", "http://127.0.0.1:2"]) == 2
    assert "PINECONE_API_KEY" in capsys.readouterr().err


def test_a_source_without_its_target_exits_2_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PINECONE_API_KEY", "k")

    with pytest.raises(SystemExit) as exited:
        main(["--source", "http://127.0.0.1:1", "--target", "http://127.0.0.1:2", "--source", "http://127.0.0.1:3"])

    assert exited.value.code == 2
    assert "one --target per --source (2 sources, 1 targets)" in capsys.readouterr().err
