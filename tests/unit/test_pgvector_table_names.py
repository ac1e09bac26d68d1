"""Target namespaces that would share one pgvector table are refused at plan time, naming both
(``orchestrator.pgvector_layout.check_distinct_tables``)."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.errors import PlanError
from nsmigrate.orchestrator.pgvector_layout import check_distinct_tables

LONG = "n" * 44  # with a 6-character tail: 50 characters, the most a namespace may have


@pytest.mark.parametrize(
    ("prefix", "namespaces", "clash"),
    [
        (
            "embeddings",
            ["", "default"],
            "'' (the default namespace) and 'default' would both be the table embeddings_default",
        ),
        # Postgres cuts names to 63 characters: 20 + "_" + the namespace's first 42.
        ("p" * 20, [f"{LONG}_abcde", f"{LONG}_abcdf"], f"would both be the table {'p' * 20}_{'n' * 42}"),
        ("p" * 41, ["a" * 21 + "x", "a" * 21 + "y"], f"would both be the table {'p' * 41}_{'a' * 21}"),
    ],
)
def test_namespaces_that_map_to_one_table_are_refused_naming_both(
    prefix: str, namespaces: list[str], clash: str
) -> None:
    with pytest.raises(PlanError) as err:
        check_distinct_tables(prefix, namespaces)

    assert clash in str(err.value)
    assert all(repr(ns) in str(err.value) or ns == "" for ns in namespaces)
    assert "nothing was written" in str(err.value)


@pytest.mark.parametrize(
    ("prefix", "namespaces"),
    [("embeddings", ["", "alpha", "default_2"]), ("embeddings", [f"{LONG}_ab", f"{LONG}_ac"]), ("embeddings", [])],
)
def test_namespaces_of_distinct_tables_pass(prefix: str, namespaces: list[str]) -> None:
    check_distinct_tables(prefix, namespaces)
