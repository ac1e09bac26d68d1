"""``nsmigrate run SPEC`` pushes its spec to the fleet's planner before the command line's framework loads
(``cli.handoff``), and takes it back when the command stops before waiting for the answer. Real Redis, the command in
its own process as a user runs it; the planner's heartbeat is set by the test, so nothing takes the spec."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import redis as redis_lib

from nsmigrate.orchestrator.messaging.submissions import Heartbeat, Submission, database_fingerprint
from nsmigrate.orchestrator.messaging.task_names import PLANNER_KEY, SUBMISSIONS_KEY

DATABASE_URL = "postgresql://nobody@127.0.0.1:1/none"  # never reached: the command stops before it reads it

#: Runs the entry point with a finder that, when typer is first imported, writes what the planners' list holds and
#: then stops the command as a crash while loading would.
PROBE = textwrap.dedent(
    """
    import sys, redis
    url, seen = sys.argv[1], sys.argv[2]
    class Probe:
        def find_spec(self, name, path=None, target=None):
            if name == "typer":
                held = redis.Redis.from_url(url).lrange({key!r}, 0, -1)
                open(seen, "wb").write(b"\\n".join(held))
                raise ImportError("typer stopped by the test")
            return None
    sys.meta_path.insert(0, Probe())
    from nsmigrate.cli.entry import main
    sys.argv = ["nsmigrate", *sys.argv[3:]]
    main()
    """
).format(key=SUBMISSIONS_KEY)


def run_probe(redis_url: str, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[bytes]]:
    seen = tmp_path / "seen"
    env = {"PATH": "/usr/bin:/bin", "NSMIGRATE_DATABASE_URL": DATABASE_URL, "NSMIGRATE_REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, redis_url, str(seen), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return done, seen.read_bytes().splitlines() if seen.exists() else []


def test_the_spec_is_on_the_planners_list_before_typer_loads_and_taken_back_when_the_command_dies(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis_lib.Redis.from_url(redis_url)
    client.set(PLANNER_KEY, Heartbeat("test@here", database_fingerprint(DATABASE_URL)).encode(), ex=60)
    spec = tmp_path / "job.yaml"
    spec.write_text("name: early\n")

    done, held = run_probe(redis_url, tmp_path, "run", str(spec), "--wait", "--new")

    assert done.returncode != 0 and "typer stopped by the test" in done.stderr
    (pushed,) = held  # pushed before the command line loaded …
    submission = Submission.decode(pushed)
    assert (submission.kind, submission.spec_text, submission.new, submission.resume) == (
        "run",
        "name: early\n",
        True,
        False,
    )
    assert client.llen(SUBMISSIONS_KEY) == 0  # … and taken back: no planner will start a job nobody reported


def test_a_command_line_typer_must_read_first_pushes_nothing_early(redis_url: str, tmp_path: Path) -> None:
    client = redis_lib.Redis.from_url(redis_url)
    client.set(PLANNER_KEY, Heartbeat("test@here", database_fingerprint(DATABASE_URL)).encode(), ex=60)
    spec = tmp_path / "job.yaml"
    spec.write_text("name: early\n")

    done, held = run_probe(redis_url, tmp_path, "run", str(spec), "--plan-here")

    assert "typer stopped by the test" in done.stderr
    assert held == []
    assert client.llen(SUBMISSIONS_KEY) == 0


def test_handing_a_spec_over_imports_no_module_it_can_do_without() -> None:
    """What the command imports before its spec can be sent is on the user's clock of every `run`: ``dataclasses``
    (with ``inspect``, ``ast``, ``tokenize``) and ``uuid`` (with ``platform``) were 17-22 ms of it."""
    listed = subprocess.run(
        [sys.executable, "-c", "import sys, nsmigrate.cli.handoff; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout.split()
    assert "nsmigrate.cli.handoff" in listed
    assert {"dataclasses", "inspect", "uuid", "platform", "typer", "sqlalchemy", "psycopg"}.isdisjoint(listed)
