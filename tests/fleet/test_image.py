"""The image's file set installs and runs: the wheel is built from exactly the files the Dockerfile copies, installed
into a fresh virtualenv, and its console script and a worker's tasks import from there.

No Docker runs on these machines, so this does by hand what the Dockerfile's ``pip install .`` does, offline: the
wheel's dependencies are the dev virtualenv's (a plain path entry, so that virtualenv's editable install of this
repository is not seen), and the new virtualenv holds nothing of nsmigrate but the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

from tests.image import REPO, copy_image_files

# The dev virtualenv's pip: no network, and nothing installed in the new virtualenv but the wheel.
PIP = [sys.executable, "-m", "pip", "--quiet"]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_image_file_set_builds_installs_and_runs(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    copy_image_files(context)
    wheels = tmp_path / "wheels"
    run(
        [*PIP, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "--wheel-dir", str(wheels), str(context)],
        cwd=tmp_path,
    )
    image = tmp_path / "image-venv"
    venv.create(image, with_pip=False)
    image_python = image / "bin" / "python"
    site_packages = Path(
        run(
            [str(image_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path
        ).stdout.strip()
    )
    # The dependencies, as a path (a .pth line that is a path adds it without running that directory's .pth files).
    (site_packages / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (wheel,) = wheels.glob("nsmigrate-*.whl")
    run(
        [*PIP, "--python", str(image_python), "install", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path,
    )
    # Run from an empty directory, so nothing is imported from a checkout.
    empty = tmp_path / "elsewhere"
    empty.mkdir()

    help_text = run([str(image / "bin" / "nsmigrate"), "--help"], cwd=empty).stdout
    where = run(
        [
            str(image_python),
            "-c",
            "import nsmigrate.cli.main, nsmigrate.workers.fleet.tasks; "
            "print(nsmigrate.cli.main.__file__, nsmigrate.workers.fleet.tasks.__file__)",
        ],
        cwd=empty,
    ).stdout
    public = run(
        [str(image_python), "-c", "from nsmigrate import DualWriteIndex, __version__; print(__version__)"], cwd=empty
    )
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
        typed = "nsmigrate/py.typed" in archive.namelist()

    assert "worker" in help_text and "flower" in help_text
    assert where.count(str(site_packages)) == 2, f"imported from outside the installed wheel: {where}"
    # One package, named after the product, and none of the stand-ins: an application's own `cli` or `workers`
    # package never clashes with it.
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert top_level == {"nsmigrate", f"nsmigrate-{version}.dist-info"}, top_level
    assert typed and public.stdout.strip() == version
