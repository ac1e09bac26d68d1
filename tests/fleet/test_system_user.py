"""The user the embedded Postgres runs as (when we are root) is created once, also when several processes start a
Postgres at the same moment on a fresh machine — as the xdist workers of the first ``make test`` do."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PROCESSES = 6


@pytest.fixture
def fresh_user_name() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("the system user is only made when running as root (initdb refuses root); this process is not")
    name = f"nsm_t{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(["userdel", name], capture_output=True)
    (Path(tempfile.gettempdir()) / f"nsmigrate-user-{name}.lock").unlink(missing_ok=True)


def test_processes_that_ask_for_the_user_at_once_all_get_the_one_user(fresh_user_name: str) -> None:
    ask = f"from sandbox.services import ensure_system_user; print(ensure_system_user({fresh_user_name!r}).pw_uid)"
    askers = [
        subprocess.Popen([sys.executable, "-c", ask], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    answers = [asker.communicate(timeout=60) for asker in askers]

    failures = [err for (_, err), asker in zip(answers, askers, strict=True) if asker.returncode != 0]
    assert failures == []
    uid = pwd.getpwnam(fresh_user_name).pw_uid
    assert {int(out) for out, _ in answers} == {uid}
    with open("/etc/passwd") as passwd:
        assert sum(line.startswith(f"{fresh_user_name}:") for line in passwd) == 1
