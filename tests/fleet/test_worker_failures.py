"""A worker that cannot work says so and exits non-zero, so that a supervisor restarting on failure (systemd,
Kubernetes, compose ``restart: on-failure``) sees it; one that can wait for its broker waits.

- Redis refusing the credentials of ``NSMIGRATE_REDIS_URL`` (a wrong password, none where one is required, an unknown
  ACL user) is not transient: `nsmigrate worker` and `nsmigrate flower` refuse to start (exit 2, one line naming the
  variable, nothing changed), and a running worker whose password Redis stops accepting stops (exit 2). So does an ACL
  user lacking the permission for a command or channel the fleet uses (``NOPERM``), naming it.
- A Redis that is down is waited for (Celery's reconnect, logged), and a warm shutdown (SIGTERM) exits 0.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

from nsmigrate_sandbox.services import RedisServer, free_port, spawn
from nsmigrate_sandbox.stack import wait_for_workers
from tests.fleet.test_refusals_secrets import nsmigrate, one_error
from tests.polling import wait_until

#: How long a worker gets to exit on its own before the test gives up on it (a guard against hanging, not a bound
#: the test asserts: the old worker never exited).
EXIT_GUARD_S = 120


def worker_args(pool: str = "threads") -> list[str]:
    return ["worker", "-Q", "copy", "-c", "2", "--pool", pool, "--loglevel", "WARNING"]


def start_worker(pool: str, redis_url: str, database_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    """`nsmigrate worker` as a child process, in the environment ``nsmigrate`` gives a command."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONUNBUFFERED": "1"}
    env |= {"NSMIGRATE_REDIS_URL": redis_url, "NSMIGRATE_DATABASE_URL": database_url}
    return spawn([sys.executable, "-m", "nsmigrate", *worker_args(pool)], env, log_path)


def tables_of(database_url: str) -> list[str]:
    engine = sa.create_engine(database_url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def redis_url_with(server: RedisServer, userinfo: str) -> str:
    return f"redis://{userinfo}127.0.0.1:{server.port}/0"


REFUSED = {
    "wrong password": (":wrong-pw-7Kq@", "refused the password"),
    "no password": ("", "requires a password and the URL gives none"),
    "unknown ACL user": ("nobody-such:wrong-pw-7Kq@", "refused the password"),
}


@pytest.mark.parametrize(("userinfo", "said"), REFUSED.values(), ids=REFUSED.keys())
def test_a_worker_refused_by_redis_exits_at_once_naming_the_setting(
    password_redis_server: RedisServer, database_url: str, userinfo: str, said: str
) -> None:
    url = redis_url_with(password_redis_server, userinfo)

    done = nsmigrate(*worker_args(), NSMIGRATE_REDIS_URL=url, NSMIGRATE_DATABASE_URL=database_url)

    message = one_error(done)  # exit code 2, one `error:` line, no traceback
    assert message.startswith("error: NSMIGRATE_REDIS_URL: ") and said in message
    assert f"127.0.0.1:{password_redis_server.port}" in message
    assert "wrong-pw-7Kq" not in done.stdout + done.stderr
    assert tables_of(database_url) == []  # refused before the job table's schema was made


def test_flower_refused_by_redis_exits_naming_the_setting(password_redis_server: RedisServer) -> None:
    url = redis_url_with(password_redis_server, ":wrong-pw-7Kq@")

    done = nsmigrate(
        "flower", "--port", str(free_port()), NSMIGRATE_REDIS_URL=url, NSMIGRATE_FLOWER_PASSWORD="flower-pw"
    )

    message = one_error(done)
    assert message.startswith("error: NSMIGRATE_REDIS_URL: ") and "refused the password" in message
    assert "wrong-pw-7Kq" not in done.stdout + done.stderr


def acl_user_url(server: RedisServer, name: str, *rules: str) -> str:
    """An ACL user on ``server`` (its admin logs in with ``server.url``) with these rules; the URL that is it."""
    redis_lib.Redis.from_url(server.url).execute_command("ACL", "SETUSER", name, "reset", "on", ">acl-pw-6Tn", *rules)
    return redis_url_with(server, f"{name}:acl-pw-6Tn@")


def test_a_worker_whose_acl_user_lacks_a_command_exits_at_once_naming_it(
    password_redis_server: RedisServer, database_url: str
) -> None:
    """Before, it connected, said ready, and died on its first BRPOP with a traceback and exit code 1."""
    url = acl_user_url(password_redis_server, "no-brpop", "~*", "&*", "+@all", "-brpop")

    done = nsmigrate(*worker_args(), NSMIGRATE_REDIS_URL=url, NSMIGRATE_DATABASE_URL=database_url)

    message = one_error(done)
    assert message.startswith("error: NSMIGRATE_REDIS_URL: ")
    assert "does not let ACL user 'no-brpop' run BRPOP" in message and "ACL SETUSER no-brpop" in message
    assert "acl-pw-6Tn" not in done.stdout + done.stderr
    assert tables_of(database_url) == []


def test_flower_whose_acl_user_lacks_a_channel_exits_naming_it(password_redis_server: RedisServer) -> None:
    url = acl_user_url(password_redis_server, "no-channels", "~*", "+@all")

    done = nsmigrate(
        "flower", "--port", str(free_port()), NSMIGRATE_REDIS_URL=url, NSMIGRATE_FLOWER_PASSWORD="flower-pw"
    )

    message = one_error(done)
    assert message.startswith("error: NSMIGRATE_REDIS_URL: ") and "ACL user 'no-channels' run PUBLISH" in message


def test_a_running_worker_whose_acl_user_loses_a_command_exits_2_naming_it(database_url: str, tmp_path: Path) -> None:
    """BRPOP taken from the worker's user while it runs: Celery died with 'Unrecoverable error' and exit code 1."""
    log_path = tmp_path / "worker.log"
    with RedisServer(password="admin-pw-2Lp") as server:
        url = acl_user_url(server, "fleet", "~*", "&*", "+@all")
        proc = start_worker("threads", url, database_url, log_path)
        try:
            wait_for_workers(server.url, 1)
            redis_lib.Redis.from_url(server.url).execute_command("ACL", "SETUSER", "fleet", "-brpop")

            code = proc.wait(EXIT_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    log = log_path.read_text()
    assert code == 2, log[-4000:]
    assert "NSMIGRATE_REDIS_URL: Redis at redis://fleet:***@127.0.0.1" in log
    assert "does not let ACL user 'fleet' run BRPOP" in log and "Unrecoverable error" not in log
    assert "acl-pw-6Tn" not in log


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_running_worker_whose_password_redis_stops_accepting_exits_non_zero(
    database_url: str, tmp_path: Path, pool: str
) -> None:
    """The password is changed (and every client cut off): the worker's reconnect is refused. It stops with exit
    code 2 and says why; before, it retried for ever, and a worker that Celery stopped on an error exited 0."""
    log_path = tmp_path / "worker.log"
    with RedisServer(password="first-pw-3Zx") as server:
        proc = start_worker(pool, server.url, database_url, log_path)
        try:
            wait_for_workers(server.url, 1)
            admin = redis_lib.Redis.from_url(server.url)
            admin.config_set("requirepass", "second-pw-8Wy")
            redis_lib.Redis.from_url(redis_url_with(server, ":second-pw-8Wy@")).client_kill_filter(
                _type="normal", skipme=True
            )

            code = proc.wait(EXIT_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    log = log_path.read_text()
    assert code == 2, log[-4000:]  # the CLI's exit code for a setting to fix
    assert "NSMIGRATE_REDIS_URL: Redis at redis://:***@127.0.0.1" in log and "refused the password" in log
    assert "first-pw-3Zx" not in log and "second-pw-8Wy" not in log


def test_a_worker_waits_for_a_redis_that_is_down_and_a_warm_shutdown_exits_0(database_url: str, tmp_path: Path) -> None:
    """What stays as it was: a Redis that is down when the worker starts is retried (and logged) until it is up;
    SIGTERM (Celery's warm shutdown) ends the worker with exit code 0."""
    log_path = tmp_path / "worker.log"
    server = RedisServer()  # its port is chosen, nothing listens there yet
    proc = start_worker("threads", server.url, database_url, log_path)
    try:
        wait_until(
            lambda: "Cannot connect to redis" in log_path.read_text(),
            what="the worker to log that it cannot reach Redis yet",
            timeout_s=60,
            explain=lambda: log_path.read_text()[-2000:],
        )
        assert proc.poll() is None  # still trying
        with server:
            wait_for_workers(server.url, 1)

            proc.send_signal(signal.SIGTERM)
            code = proc.wait(EXIT_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert code == 0, log_path.read_text()[-4000:]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_ctrl_c_stops_a_worker_warm_with_exit_code_130(database_url: str, tmp_path: Path, pool: str) -> None:
    """Ctrl-C (SIGINT) is the same warm shutdown as SIGTERM, asked by a person: 130 as for every command Ctrl-C
    stops, not Celery's 1, which reads as an error to a supervisor and to a shell."""
    log_path = tmp_path / "worker.log"
    with RedisServer() as server:
        proc = start_worker(pool, server.url, database_url, log_path)
        try:
            wait_for_workers(server.url, 1)

            proc.send_signal(signal.SIGINT)
            code = proc.wait(EXIT_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    log = log_path.read_text()
    assert code == 130, log[-4000:]
    assert "Warm shutdown" in log and "Traceback" not in log
