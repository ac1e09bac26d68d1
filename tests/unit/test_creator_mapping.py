"""Loading the twin → creator mapping from inline specs and files (Supabase: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsmigrate.orchestrator.errors import PlanError, SpecError
from nsmigrate.orchestrator.spec.jobspec import CreatorMapping
from nsmigrate.orchestrator.tenancy.creator_mapping import load_twins, parse_csv, parse_yaml


def file_mapping(path: str | Path) -> CreatorMapping:
    return CreatorMapping(source="file", path=str(path))


def test_none_and_inline() -> None:
    assert load_twins(None) == {}
    assert load_twins(CreatorMapping(source="inline", twins={"t1": "a.1"})) == {"t1": "a.1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twin_id,creator_id\nt1,a.1\nt2,a.10\n", {"t1": "a.1", "t2": "a.10"}),
        ("# comment\ntwin_id,creator_id\n\n t1 , a.1 \n# another\n", {"t1": "a.1"}),
        ("creator_id,twin_id\na.1,t1\n", {"t1": "a.1"}),  # columns by header name
        ("twin_id,creator_id\nt1,a.1\nt1,a.1\n", {"t1": "a.1"}),  # a repeated identical row is harmless
        ("# the sandbox seed writes the real one\ntwin_id,creator_id\n", {}),
        ("", {}),
    ],
)
def test_parse_csv(text: str, expected: dict[str, str]) -> None:
    assert parse_csv(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twin,creator\nt1,a.1\n", ["x.csv:1", "twin_id and creator_id"]),
        ("twin_id,creator_id\nt1,a.1,extra\n", ["x.csv:2", "expected 2 columns"]),
        ("twin_id,creator_id\n\nt1\n", ["x.csv:3", "got 1"]),
        ("twin_id,creator_id\nt1,\n", ["x.csv:2", "empty"]),
        ("twin_id,creator_id\nt1,a.1\nt2,b\nt1,a.10\n", ["x.csv:4", "line 2 says 'a.1'"]),
    ],
)
def test_parse_csv_errors_name_file_and_line(text: str, expected: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        parse_csv(text, "x.csv")
    for part in expected:
        assert part in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t1: a.1\n't2': \"a.10\"\n", {"t1": "a.1", "t2": "a.10"}),
        ("'007': c.1\n", {"007": "c.1"}),
        ("", {}),
        ("# only a comment\n", {}),
    ],
)
def test_parse_yaml(text: str, expected: dict[str, str]) -> None:
    assert parse_yaml(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t1: a.1\n007: c.1\n", ["m.yaml:2", "'007' is not a string", "quote"]),
        ("t1: 1.10\n", ["m.yaml:1", "'1.10' is not a string"]),
        ("t1: [a, b]\n", ["m.yaml:1", "a list or mapping"]),
        ("- t1\n- t2\n", ["m.yaml:1", "must be a mapping"]),
        ("t1: a\nt1: b\n", ["m.yaml: t1: duplicate key 't1' at lines 1 and 2"]),
        ("t1: [\n", ["not valid YAML"]),
    ],
)
def test_parse_yaml_errors(text: str, expected: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml(text, "m.yaml")
    for part in expected:
        assert part in str(err.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("twins.csv", "twin_id,creator_id\nt1,a.1\n"),
        ("bom.CSV", "\ufefftwin_id,creator_id\r\nt1,a.1\r\n"),  # as spreadsheets save it
        ("twins.yaml", "t1: a.1\n"),
        ("twins.yml", "t1: a.1\n"),
    ],
)
def test_load_file_by_suffix(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_bytes(content.encode())
    assert load_twins(file_mapping(tmp_path / name)) == {"t1": "a.1"}


def test_relative_path_against_base_dir_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir, cwd = tmp_path / "spec", tmp_path / "cwd"
    (spec_dir / "data").mkdir(parents=True)
    (cwd / "data").mkdir(parents=True)
    (spec_dir / "data" / "twins.csv").write_text("twin_id,creator_id\nt1,from.spec.dir\n")
    (cwd / "data" / "twins.csv").write_text("twin_id,creator_id\nt1,from.cwd\n")
    (cwd / "data" / "only-here.csv").write_text("twin_id,creator_id\nt1,from.cwd\n")
    monkeypatch.chdir(cwd)
    assert load_twins(file_mapping("data/twins.csv"), base_dir=spec_dir) == {"t1": "from.spec.dir"}
    assert load_twins(file_mapping("data/only-here.csv"), base_dir=spec_dir) == {"t1": "from.cwd"}
    assert load_twins(file_mapping("data/twins.csv")) == {"t1": "from.cwd"}


def test_missing_file_names_every_place_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as err:
        load_twins(file_mapping("nope.csv"), base_dir=tmp_path / "specs")
    assert "'nope.csv' not found" in str(err.value)
    assert str(tmp_path / "specs" / "nope.csv") in str(err.value)
    assert str(tmp_path / "nope.csv") in str(err.value)


def test_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "twins.txt").write_text("t1,a.1\n")
    with pytest.raises(SpecError, match=r"neither \.csv nor \.yaml"):
        load_twins(file_mapping(tmp_path / "twins.txt"))


def test_file_errors_name_the_resolved_file(tmp_path: Path) -> None:
    (tmp_path / "twins.csv").write_text("twin_id,creator_id\nt1\n")
    with pytest.raises(SpecError, match=rf"{tmp_path / 'twins.csv'}:2"):
        load_twins(file_mapping("twins.csv"), base_dir=tmp_path)


@pytest.mark.parametrize(
    "twins",
    [{"t 1": "a"}, {"t1": "a/b"}, {"t1": ""}, {"t1": ".a"}],
)
def test_invalid_ids_are_refused(twins: dict[str, str]) -> None:
    with pytest.raises(PlanError, match="invalid id"):
        load_twins(CreatorMapping(source="inline", twins=twins))


def test_invalid_ids_are_all_listed(tmp_path: Path) -> None:
    (tmp_path / "twins.csv").write_text("twin_id,creator_id\nt 1,a\nt2,b/c\nt3,ok_with_underscore\n")
    with pytest.raises(PlanError) as err:
        load_twins(file_mapping(tmp_path / "twins.csv"))
    text = str(err.value)
    assert "2 invalid id(s)" in text and "twin_id 't 1'" in text and "creator_id 'b/c'" in text
    assert str(tmp_path / "twins.csv") in text


def test_supabase_env_unset_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SUPABASE_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("TEST_SUPABASE_KEY", raising=False)
    mapping = CreatorMapping(source="supabase", url_env="TEST_SUPABASE_URL", key_env="TEST_SUPABASE_KEY")
    with pytest.raises(SpecError) as err:
        load_twins(mapping)
    assert "TEST_SUPABASE_KEY" in str(err.value) and "routing.creators.key_env" in str(err.value)
    assert "127.0.0.1" not in str(err.value)  # never a value


def test_shipped_seed_twins_placeholder_parses() -> None:
    from nsmigrate import migrations

    path = migrations.HERE / "data" / "seed-twins.csv"
    assert isinstance(load_twins(file_mapping(path)), dict)
