"""The cutover demo's job spec. Its application writes on while the job verifies, so a namespace it writes to
between the verification's listing and its count reading holds a count that will never agree with the listed one.
Verification gives such a stable, differing count ``count_timeout_s`` to catch up (Pinecone's counts are eventually
consistent; the local data plane's are exact at once): with the default, one such write held the demo a whole
minute."""

from __future__ import annotations

from nsmigrate.cli.demo.cutover import spec_of
from nsmigrate.orchestrator.spec.jobspec import JobSpec, Verification
from nsmigrate.workers.steps.verifying import COUNT_POLL_INTERVAL_S


def test_the_demo_spec_is_a_valid_job_spec_copying_old_to_new() -> None:
    spec = JobSpec.model_validate(spec_of("http://127.0.0.1:1", "http://127.0.0.1:2"))

    assert (spec.source.host, spec.target.host) == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert spec.verify.counts  # the count check stays: only its wait is cut


def test_a_count_that_will_not_agree_is_not_waited_for_a_minute() -> None:
    timeout = JobSpec.model_validate(spec_of("http://127.0.0.1:1", "http://127.0.0.1:2")).verify.count_timeout_s

    assert timeout < Verification().count_timeout_s / 10
    # Still long enough for three equal readings, so a count that moved and settled is judged stable.
    assert timeout >= 3 * COUNT_POLL_INTERVAL_S
