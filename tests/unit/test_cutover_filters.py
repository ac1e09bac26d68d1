"""The application's filtered queries for `cutover check` (``orchestrator.cutover.filters``): read from a file, one
JSON object a line, every mistake named by its line and field; and when two answers differ."""

from __future__ import annotations

import pytest

from nsmigrate.orchestrator.cutover.filters import SampleQuery, difference, queries_of_file, recorded
from nsmigrate.orchestrator.errors import SpecError

GOOD = """# the application's queries
{"namespace": "__default__", "vector": [0.5, 1], "top_k": 3, "filter": {"genre": {"$eq": "drama"}}}

{"namespace": "ns1", "id": "doc-7", "filter": {"year": {"$gte": 2020}}}
"""


def test_a_file_of_queries_is_read_line_by_line() -> None:
    first, second = queries_of_file(GOOD, "q.jsonl")

    assert first == SampleQuery("q.jsonl:2", "", {"genre": {"$eq": "drama"}}, 3, (0.5, 1.0))
    assert second == SampleQuery("q.jsonl:4", "ns1", {"year": {"$gte": 2020}}, id="doc-7")
    assert "namespace '__default__'" in first.shown() and "near a vector of 2 values" in first.shown()


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("not json", "q.jsonl:1 is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"namespace": "a", "vector": [1], "filter": {"x": 1}, "topk": 3}', "unknown field(s) topk"),
        ('{"vector": [1], "filter": {"x": 1}}', "namespace must be a string"),
        ('{"namespace": "a", "vector": [1], "filter": {}}', "filter must be a non-empty JSON object"),
        ('{"namespace": "a", "vector": [1], "id": "x", "filter": {"x": 1}}', "exactly one of vector and id"),
        ('{"namespace": "a", "filter": {"x": 1}}', "exactly one of vector and id"),
        ('{"namespace": "a", "vector": [true], "filter": {"x": 1}}', "vector must be a non-empty array of numbers"),
        ('{"namespace": "a", "vector": [1], "filter": {"x": 1}, "top_k": 0}', "top_k must be a whole number"),
    ],
)
def test_each_bad_query_is_named_by_its_line_and_field(line: str, named: str) -> None:
    with pytest.raises(SpecError, match=r"q\.jsonl:1") as refused:
        queries_of_file(line, "q.jsonl")
    assert named in str(refused.value)


def test_a_file_without_a_query_is_refused() -> None:
    with pytest.raises(SpecError, match="holds no query"):
        queries_of_file("# nothing\n\n", "q.jsonl")


def test_recorded_queries_keep_the_ones_the_replay_can_take() -> None:
    items = [{"namespace": "a", "vector": [1.0], "filter": {"x": 1}}, {"namespace": "a", "filter": {"x": 1}}]

    assert [q.label for q in recorded(items)] == ["recorded #1"]


def test_answers_differ_when_their_ids_do_not_and_the_sentence_names_which() -> None:
    query = SampleQuery("q:1", "ns0", {"n": {"$eq": 0}}, vector=(1.0,))

    assert difference(query, ["a", "b"], ["b", "a"]) is None
    differs = difference(query, ["a", "b", "c"], ["a", "d"])
    assert differs is not None and "query q:1 (namespace 'ns0'" in differs
    assert "the source answered 3 id(s), the target 2" in differs
    assert "only the source's: ['b', 'c'], only the target's: ['d']" in differs
