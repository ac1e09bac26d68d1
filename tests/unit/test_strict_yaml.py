"""The one YAML loader (``orchestrator.spec.yamlfile``): a key given twice in a mapping, at any depth, is refused naming
its path and both lines; everything else loads as ``yaml.safe_load`` loads it."""

from __future__ import annotations

import pytest
import yaml

from nsmigrate.orchestrator.errors import SpecError
from nsmigrate.orchestrator.spec.jobspec import spec_from_text
from nsmigrate.orchestrator.spec.yamlfile import load_yaml
from nsmigrate.orchestrator.tenancy.creator_mapping import parse_yaml

SPEC = """\
name: t
source: {kind: pinecone, index: src}
target: {kind: pinecone, host: "http://127.0.0.1:5081"}
cleanup: {mode: never}
verify:
  counts: true
cleanup: {mode: auto}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", "f.yaml: a: duplicate key 'a' at lines 1 and 3"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n", "f.yaml: a.b: duplicate key 'b' at lines 2 and 4"),
        ("cleanup: {mode: never, mode: auto}\n", "f.yaml: cleanup.mode: duplicate key 'mode' at lines 1 and 1"),
        ("l:\n  - x: 1\n  - x: 1\n    y: 2\n    x: 3\n", "f.yaml: l[1].x: duplicate key 'x' at lines 3 and 5"),
        ("'1': a\n\"1\": b\n", "f.yaml: 1: duplicate key '1' at lines 1 and 2"),
    ],
)
def test_a_repeated_key_is_refused_with_its_path_and_both_lines(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        load_yaml(text, "f.yaml")

    assert expected in str(err.value)
    assert "remove one of them" in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a: 1\nb: {c: [1, 2, {d: x}]}\n",
        "1: a\n'1': b\n",  # the number 1 and the string '1' are two keys
        "base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  x: 3\n",  # a merge key overrides; not a repeat
        "a: &r [1, 2]\nb: *r\nc: *r\n",  # one node reached through aliases twice
        "x: 1\ny: {x: 2}\n",  # the same key in two mappings
    ],
)
def test_yaml_without_repeats_loads_as_safe_load_does(text: str) -> None:
    assert load_yaml(text, "f.yaml") == yaml.safe_load(text)


def test_a_spec_with_two_cleanup_sections_is_refused_naming_both_lines() -> None:
    with pytest.raises(SpecError) as err:
        spec_from_text(SPEC, origin="job.yaml")

    assert "spec file job.yaml: cleanup: duplicate key 'cleanup' at lines 4 and 7" in str(err.value)


def test_a_creator_mapping_file_is_read_with_the_same_loader() -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml("t1: c.1\nt2: c.2\nt1: c.1\n", "twins.yaml")

    assert "twins.yaml: t1: duplicate key 't1' at lines 1 and 3" in str(err.value)
