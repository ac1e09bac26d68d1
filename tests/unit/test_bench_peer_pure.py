"""The bench peer's pure parts: its upsert requests stay under Pinecone's limits whatever the page holds, its budgets
are nsmigrate's, and bad input is one message naming what is wrong, exit 2."""

from __future__ import annotations

import orjson
import pytest

from bench import peer
from bench.peer import Budgets, main, upsert_bodies
from nsmigrate.orchestrator.limits import LIST_MAX_PAGE_IDS, UPSERT_MAX_BYTES, UPSERT_MAX_VECTORS
from nsmigrate.orchestrator.spec.rate_budget import RateBudget


def test_upsert_bodies_stay_under_the_limits_and_keep_every_record_in_order() -> None:
    # Records of very different sizes: long values and metadata, then short ones.
    long = [{"id": f"v{i}", "values": [-0.12345678901234567] * 3072, "metadata": {"k": "x" * 500}} for i in range(99)]
    short = [{"id": f"s{i}", "values": [0.5] * 8} for i in range(50)]
    records = [orjson.dumps(r) for r in [*long, *short]]

    bodies = upsert_bodies(records, "n" * 512)

    sent = [orjson.loads(body) for body in bodies]
    assert [v["id"] for body in sent for v in body["vectors"]] == [r["id"] for r in [*long, *short]]
    assert {body["namespace"] for body in sent} == {"n" * 512}
    for body, raw in zip(sent, bodies, strict=True):
        assert len(body["vectors"]) <= UPSERT_MAX_VECTORS and len(raw) <= UPSERT_MAX_BYTES


def test_many_small_records_are_cut_at_the_vector_limit() -> None:
    bodies = upsert_bodies([orjson.dumps({"id": str(i), "values": [0.25]}) for i in range(2500)], "")

    assert [len(orjson.loads(body)["vectors"]) for body in bodies] == [1000, 1000, 500]


def test_its_limits_are_pinecones_as_nsmigrate_declares_them() -> None:
    assert (peer.UPSERT_MAX_BYTES, peer.UPSERT_MAX_VECTORS, peer.LIST_PAGE_IDS) == (
        UPSERT_MAX_BYTES,
        UPSERT_MAX_VECTORS,
        LIST_MAX_PAGE_IDS,
    )


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
