"""Target namespaces that would share one pgvector table are refused at plan time, naming both
(``orchestrator.pgvector_layout.check_distinct_tables``); a backup table's name cut to Postgres's 63 bytes is never
read as the namespace it held, only a record that fits it is (``pgvector_layout.backup_namespace``)."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator import pgvector_layout
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


# A backup table's name keeps the namespace it held only while it fits Postgres's 63 bytes
# (``pgvector_layout.backup_table``); an erasure reads the namespace back (``pgvector_layout.backup_namespace``).
STAMP = "20240101120000"
ALICE = "creator_alice_smith_twin_support01"  # 34 characters: its backup's name is cut
CUT = "embeddings_backup_20240101120000_creator_alice_smith_t_d6561b01"
RECORD = f"nsmigrate namespace: {ALICE}"


@pytest.mark.parametrize(
    ("prefix", "table", "comment", "held"),
    [
        # Cut: the start and a hash parse as creator 'alice_smith_t_d6561b01'; the name alone tells nothing.
        ("embeddings", CUT, None, None),
        ("embeddings", CUT, "a note someone wrote", None),
        # A record that does not fit the name (another namespace's start or hash) is not taken either.
        ("embeddings", CUT, "nsmigrate namespace: creator_alice_smith_twin_support02", None),
        ("embeddings", CUT, "nsmigrate namespace: creator_alice_smith_t", None),
        ("embeddings", CUT, RECORD, ALICE),
        # 63 bytes ending like a hash: a namespace of 30 characters, or a cut one: unknown without a record.
        ("embeddings", f"embeddings_backup_{STAMP}_{'a' * 21}_deadbeef", None, None),
        # A prefix leaving no room for the hash: Postgres cut the name (before such names were refused).
        ("p" * 31, pgvector_layout.backup_table("p" * 31, ALICE, STAMP)[:63], None, None),
        ("p" * 31, pgvector_layout.backup_table("p" * 31, ALICE, STAMP)[:63], RECORD, ALICE),
        # Names that keep the namespace whole still give it, with or without a record.
        ("embeddings", f"embeddings_backup_{STAMP}_t1", None, "t1"),
        ("embeddings", f"embeddings_backup_{STAMP}_t1", RECORD, "t1"),
        ("embeddings", f"embeddings_backup_{STAMP}_{'a' * 30}", None, "a" * 30),
        ("embeddings", f"embeddings_backup_{STAMP}_default", None, ""),
        ("embeddings", f"embeddings_backup_{STAMP}", None, ""),  # the legacy table's
    ],
)
def test_a_backup_name_cut_to_63_bytes_never_gives_a_namespace_without_a_record_that_fits_it(
    prefix: str, table: str, comment: str | None, held: str | None
) -> None:
    assert pgvector_layout.backup_table("embeddings", ALICE, STAMP) == CUT
    assert pgvector_layout.is_backup_name(prefix, table)

    assert pgvector_layout.backup_namespace(prefix, table, comment) == held


def test_the_record_of_a_backups_namespace_is_what_reads_it_back() -> None:
    sql = pgvector_layout.backup_comment_sql(CUT, ALICE)

    assert sql == f"COMMENT ON TABLE \"{CUT}\" IS '{RECORD}'"
    assert pgvector_layout.backup_namespace("embeddings", CUT, RECORD) == ALICE
    assert pgvector_layout.backup_start("embeddings", CUT) == "creator_alice_smith_t"
    assert pgvector_layout.backup_of("embeddings", CUT, ALICE)
    assert not pgvector_layout.backup_of("embeddings", CUT, "creator_alice_smith_twin_support02")
    with pytest.raises(PlanError):
        pgvector_layout.backup_comment_sql(CUT, "it's")
