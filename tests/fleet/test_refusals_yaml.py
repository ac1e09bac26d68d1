"""Issue 27, case 8: a spec that gives a key twice is refused, as a user meets it (`python -m nsmigrate run`, its own
process, real Redis, Postgres and the Pinecone SDK on the local data plane): one message naming the key and both
lines, exit code 2, no job written, the source untouched. YAML alone keeps the last value: `cleanup: {mode: never}`
followed by `cleanup: {mode: auto}` used to start a job that deleted the source."""

from __future__ import annotations

from nsmigrate_sandbox.stack import Stack
from tests.fleet.test_fleet_planner import cli, job_ids


def test_a_spec_with_two_cleanup_keys_is_refused_and_nothing_is_written(stack: Stack) -> None:
    stack.pinecone.load("src", "alpha", [(f"a-{i}", [0.5] * 8, {}) for i in range(5)])
    spec = stack.workdir / "twice.yaml"
    spec.write_text(
        "name: twice\n"
        f"source: {{kind: pinecone, host: '{stack.pinecone.host('src')}'}}\n"
        f"target: {{kind: pinecone, host: '{stack.pinecone.host('dst')}'}}\n"
        "cleanup: {mode: never}\n"
        "batch_size: 10\n"
        "cleanup: {mode: auto}\n"
    )

    done = cli(stack, "run", str(spec))

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{spec}: cleanup: duplicate key 'cleanup' at lines 4 and 6" in done.stderr
    assert "Traceback" not in done.stderr
    assert job_ids(stack) == []
    assert stack.pinecone.service("src").store.counts() == {"alpha": 5}
