"""`erase --resume` waits for the receipt of the erasure it resumed, never the one of the run before it."""

from __future__ import annotations

from typing import Any

import pytest

from nsmigrate.cli import erasure as erase_cli
from nsmigrate.orchestrator.jobs import database as jobs_database
from nsmigrate.orchestrator.jobs import erasure as jobs_erasure
from nsmigrate.orchestrator.jobs import jobs_and_runs
from nsmigrate.orchestrator.tenancy.erasure import Subject


def test_a_resumed_erasure_that_finishes_while_its_wait_reads_gives_the_new_receipt(
    job_table_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = jobs_database.Database(job_table_url)
    place = {"kind": "namespace", "store": "index-a", "store_spec": None, "namespace": "creator_a.1", "planned": 2}
    job_id = jobs_erasure.create_erasure(db, "erase-a.1", Subject("a.1").to_json(), [place])
    [row] = jobs_erasure.places_of(db, job_id)
    jobs_erasure.fail_place(db, row.id, "delete_namespace failed (503)")
    assert jobs_erasure.maybe_finish_erasure(db, job_id, lambda job, places: {"run": "first"}) is not None
    assert jobs_erasure.retry_places(db, job_id) == [row.id]  # what `erase --resume` does before it waits

    # The worker ends the resumed place right after the wait's first read of the job, whichever that is.
    pending = [True]

    def then_the_place_ends(read: Any) -> Any:
        def reading(database: Any, wanted: int) -> Any:
            result = read(database, wanted)
            if pending and pending.pop():
                jobs_erasure.finish_place(db, row.id, erased=2, verification={"passed": True})
                assert jobs_erasure.maybe_finish_erasure(db, job_id, lambda job, places: {"run": "resumed"})
            return result

        return reading

    monkeypatch.setattr(erase_cli.jobs_and_runs, "find_job", then_the_place_ends(jobs_and_runs.find_job))
    monkeypatch.setattr(erase_cli.jobs_erasure, "erasure_receipt", then_the_place_ends(jobs_erasure.erasure_receipt))

    assert erase_cli._receipt_when_finished(db, job_id, timeout_s=30) == {"run": "resumed"}
    db.dispose()
