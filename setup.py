"""The package layout, which pyproject.toml cannot say: one package, ``nsmigrate``, whose parts live in the
repository's top-level folders (``cli/`` is ``nsmigrate.cli``, and so on), and the ``sandbox`` extra, which installs
the embedded services (``sandbox/``, a distribution of its own) from this checkout."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
#: nsmigrate's parts: subpackage → its folder in the repository.
PARTS = {"cli": "cli", "orchestrator": "orchestrator", "workers": "workers", "migrations": "migrations"}

package_dir = {"nsmigrate": "nsmigrate"} | {f"nsmigrate.{name}": folder for name, folder in PARTS.items()}
packages = ["nsmigrate"]
for name, folder in PARTS.items():
    packages += [f"nsmigrate.{name}", *(f"nsmigrate.{name}.{sub}" for sub in find_packages(folder))]

# The stand-ins are not on PyPI: the extra names them by their folder in the checkout being installed.
sandbox = [f"nsmigrate-sandbox @ {(HERE / 'sandbox').as_uri()}"]
# The tools to test and check nsmigrate; scripts/bootstrap.sh installs them with the stand-ins, both editable.
dev = [
    "aiohttp>=3.9,<4",  # bench/peer.py: the single-process rival the fleet is measured against
    "pytest>=8",
    "pytest-timeout>=2.3",
    "pytest-xdist>=3.5",  # `make test` runs the suite on every core
    "setuptools>=70.1",  # builds the image's wheel offline in tests/fleet/test_image.py (bdist_wheel built in)
    "hypothesis>=6.100",
    "jsonschema>=4.20",
    "kubernetes-validate>=1.29",  # deploy/kubernetes/ checked offline against its bundled API schemas
    "promql-parser>=0.11,<1",  # the alert rules' and the dashboard's PromQL (tests/unit/test_monitoring_config.py)
    "openapi-core>=0.19",
    "ruff>=0.6",
    "mypy>=1.10",
    "types-PyYAML",
    "import-linter>=2.1",
    "moto[server]>=5.1,<6",  # the S3-compatible server bulk imports read from (tests/service_fixtures.py)
]

setup(
    package_dir=package_dir,
    packages=packages,
    package_data={"nsmigrate": ["py.typed"], "nsmigrate.migrations": ["*.yaml", "*.yml", "*.md", "data/*"]},
    extras_require={"sandbox": sandbox, "dev": dev},
)
