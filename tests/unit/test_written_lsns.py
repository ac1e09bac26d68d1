"""What a step's watch of its writes' LSNs holds (``workers.stores.pinecone.lsn.WrittenLsns``)."""

from __future__ import annotations

from nsmigrate.workers.stores.pinecone.lsn import WrittenLsns


def test_a_watch_holds_only_the_writes_answered_while_it_is_open() -> None:
    written = WrittenLsns()
    with written.watch() as before:
        written.note("a", 7)
    written.note("a", 9)  # nobody watching: remembered nowhere

    with written.watch() as after:
        written.note("a", 1)  # a namespace made again: a new log
        written.note("b", None)  # a write answered without an LSN

    assert before == {"a": 7} and after == {"a": 1}


def test_watches_open_at_once_each_keep_their_own_highest() -> None:
    written = WrittenLsns()
    with written.watch() as first:
        with written.watch() as second:  # equal (empty) dicts: each closes its own
            written.note("a", 3)
            written.note("a", 2)
        written.note("a", 5)

    assert first == {"a": 5} and second == {"a": 3}
