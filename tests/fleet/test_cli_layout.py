"""The CLI's shape: the root command lists every command from its table without importing a command module, a
command loads only what it uses (``status`` never Celery, a store SDK or pyarrow), and each command's ``--help``
shows its real options. Structural checks on imports, not timings."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nsmigrate.cli.main import COMMANDS, app, load_command

# What the fleet's commands need and the reading ones must not pay for.
HEAVY = ("celery", "kombu", "pinecone", "pyarrow", "workers", "redis")
# What planning and copying need and reading the job table does not (each with its submodules).
PLANNING = ("planner", "plan", "selection", "destinations", "target_checks", "id_checks", "costs")
NOT_FOR_READING = (
    "numpy",
    "yaml",
    *(f"nsmigrate.orchestrator.planning.{m}" for m in PLANNING),
    "nsmigrate.orchestrator.spec.jobspec",
    "nsmigrate.orchestrator.records.vectors",
)
COMMAND_MODULES = sorted({entry.module for entry in COMMANDS.values()})


@functools.cache  # the same command loads the same modules: several tests check one run's list
def modules_after(*args: str) -> frozenset[str]:
    """The modules a fresh interpreter holds after running ``nsmigrate ARGS`` in-process."""
    probe = (
        "import json, sys\n"
        "from nsmigrate.cli.main import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    return frozenset(json.loads(result.stderr.splitlines()[-1]))


def test_top_level_help_imports_no_command_module_nor_the_job_table() -> None:
    loaded = modules_after("--help")

    assert not loaded & {*COMMAND_MODULES, "sqlalchemy", "nsmigrate.orchestrator.jobs", *HEAVY}, sorted(
        loaded & {*COMMAND_MODULES, "sqlalchemy", "nsmigrate.orchestrator.jobs", *HEAVY}
    )


READING = [["status", "--help"], ["jobs", "--help"], ["status", "1"], ["jobs"], ["events", "1"]]


@pytest.mark.parametrize("args", READING)
def test_reading_commands_import_no_broker_store_sdk_or_pyarrow(args: list[str]) -> None:
    # `status 1` against a job table that does not answer: the command ran, with everything it imports.
    loaded = modules_after(*args, "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none")

    assert "nsmigrate.cli.jobs" in loaded
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY), sorted(m for m in loaded if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("args", READING)
def test_reading_commands_import_no_planner_spec_models_or_numpy(args: list[str]) -> None:
    loaded = modules_after(*args, "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none")

    # the command ran (its help, status and jobs need no SQLAlchemy)
    assert "nsmigrate.cli.jobs" in loaded and (
        "sqlalchemy.orm" in loaded or "--help" in args or args[0] in ("status", "jobs")
    )
    unwanted = sorted({n for n in NOT_FOR_READING for m in loaded if m == n or m.startswith(n + ".")})
    assert not unwanted, unwanted


def test_the_modules_the_commands_must_not_load_exist() -> None:
    """A module renamed away would make these checks pass for nothing."""
    missing = [name for name in (*NOT_FOR_READING, *NOT_FOR_PLANNING) if importlib.util.find_spec(name) is None]

    assert not missing, f"rename these in NOT_FOR_READING / NOT_FOR_PLANNING: {missing}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_table_gives_each_command_its_module_and_its_own_first_paragraph(name: str) -> None:
    command = load_command(name)

    assert command.name == name
    first_paragraph = (command.help or "").split("\n\n")[0]
    assert COMMANDS[name].help == " ".join(first_paragraph.split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_commands_help_shows_its_real_options(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    for param in load_command(name).params:
        for opt in param.opts:
            shown = opt if opt.startswith("-") else (param.name or opt)
            assert shown in result.output, (name, opt)


@pytest.mark.parametrize(
    "args", [["status", "1"], ["status", "1", "--json"], ["status", "1", "--all"], ["status", "some-name"], ["jobs"]]
)
def test_status_and_jobs_read_over_libpq_without_psycopg_nor_sqlalchemy(args: list[str]) -> None:
    # The job table does not answer: the command ran as far as connecting, with everything it imports.
    loaded = modules_after(*args, "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none")

    assert {"nsmigrate.cli.jobs", "nsmigrate.cli.libpq", "nsmigrate.orchestrator.snapshot"} <= loaded
    assert not {m for m in loaded if m.split(".")[0] in ("psycopg", "psycopg_binary")}
    assert not {m for m in loaded if m.split(".")[0] == "sqlalchemy" or m.startswith("nsmigrate.orchestrator.jobs")}
    # Given the job table's URL, they load no settings (pydantic-settings): the URL is all they read of them.
    assert not {m for m in loaded if m.split(".")[0] == "pydantic_settings" or m == "nsmigrate.orchestrator.settings"}


# What only a backup (pyarrow) or a comparison of values (numpy) needs: `plan` and `run` start without them.
NOT_FOR_PLANNING = ("pyarrow", "numpy", "nsmigrate.workers.stores.backup.parquet", "nsmigrate.cli.backup")


@pytest.mark.parametrize("args", [["plan", "--help"], ["run", "--help"]])
def test_planning_commands_import_no_backup_machinery_nor_numpy(args: list[str]) -> None:
    loaded = modules_after(*args)

    assert "nsmigrate.cli.run" in loaded
    unwanted = sorted({n for n in NOT_FOR_PLANNING for m in loaded if m == n or m.startswith(n + ".")})
    assert not unwanted, unwanted


def test_a_worker_starts_without_the_backup_machinery_nor_numpy() -> None:
    """Every worker process imports the tasks: only a backup/erasure (pyarrow) or a re-embedding (numpy) loads
    these, in the task that needs them."""
    probe = "import json, sys, nsmigrate.workers.fleet.tasks; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(result.stdout.splitlines()[-1])

    assert "nsmigrate.workers.fleet.tasks" in loaded and "pinecone" in loaded  # the copy path's SDK stays preloaded
    unwanted = sorted({n for n in NOT_FOR_PLANNING for m in loaded if m == n or m.startswith(n + ".")})
    assert not unwanted, unwanted


# What the command must not load before the fleet's planner has the spec: it plans with its own settings, and the
# spec's models (pydantic) are the planner's to load (``cli.plain_params``: typer reads the options without them).
NOT_BEFORE_SUBMITTING = ("pydantic", "pydantic_settings", "nsmigrate.orchestrator.settings", "redis")


@pytest.mark.parametrize("command", ["run", "plan"])
def test_handing_a_spec_to_the_fleet_loads_no_settings_nor_redis_py(tmp_path: Path, command: str) -> None:
    """The modules loaded when ``cli.submit.to_fleet`` returns (Redis does not answer: the command would plan here
    next), given both URLs in the environment and no other setting."""
    probe = (
        "import json, sys\n"
        "from nsmigrate.cli import submit\n"
        "to_fleet = submit.to_fleet\n"
        "def submitted(*args, **kwargs):\n"
        "    to_fleet(*args, **kwargs)\n"
        "    sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
        "    raise SystemExit(0)\n"
        "submit.to_fleet = submitted\n"
        "from nsmigrate.cli.main import app\n"
        "app(sys.argv[1:])\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NSMIGRATE_")}
    env.update(
        NSMIGRATE_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
        NSMIGRATE_REDIS_URL="redis://127.0.0.1:1/0",
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, command, str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    loaded = frozenset(json.loads(result.stderr.splitlines()[-1]))

    assert "nsmigrate.orchestrator.messaging.resp" in loaded  # it did try the fleet
    unwanted = sorted({n for n in NOT_BEFORE_SUBMITTING for m in loaded if m == n or m.startswith(n + ".")})
    assert not unwanted, unwanted


def test_bash_completes_commands_and_options_from_the_installed_script_without_loading_every_command(
    tmp_path: Path,
) -> None:
    # `nsmigrate --install-completion` (in bash) writes the script `--show-completion` prints and sources it from
    # ~/.bashrc; a real bash then completes through the `nsmigrate` on its PATH. Naming the commands loads none of
    # their modules (the root lists them from its table); completing one's options loads that one.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # Run from a bash (not exec'd by it: two commands), as a user does: the flag detects the shell it runs in from its
    # parent processes, which under a test runner may hold no shell at all.
    installed = subprocess.run(
        ["bash", "-c", 'nsmigrate --install-completion; exit "$?"'], env=env, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
    assert "source" in (tmp_path / ".bashrc").read_text()
    complete = (
        "source ~/.bashrc\n"
        'COMP_WORDS=(nsmigrate "$1"); COMP_CWORD=1; _nsmigrate_completion nsmigrate; echo "${COMPREPLY[*]}"\n'
        'COMP_WORDS=(nsmigrate worker "$2"); COMP_CWORD=2; _nsmigrate_completion nsmigrate; echo "${COMPREPLY[*]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", complete, "bash", "st", "--log"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    commands, options = result.stdout.splitlines()
    assert commands.split() == ["status"]
    assert sorted(options.split()) == ["--log-format", "--loglevel"]
    assert not {*COMMAND_MODULES} & modules_after_completing("nsmigrate st")


def modules_after_completing(words: str) -> frozenset[str]:
    """The modules `nsmigrate` holds after completing ``words`` (bash's protocol: Click's environment variables)."""
    probe = (
        "import json, sys\n"
        "from cli.main import app\n"
        "try:\n"
        "    app(prog_name='nsmigrate')\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "_NSMIGRATE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.split() == ["status"], result
    return frozenset(json.loads(result.stderr.splitlines()[-1]))
