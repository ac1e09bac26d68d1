"""nsmigrate: migrate vector data between Pinecone namespaces and indexes and pgvector tables, safely and resumably.

The command is ``nsmigrate`` (``nsmigrate --help``). What an application imports is this module's small public API:

- ``DualWriteIndex``: during a cut-over, writes go to both the old and the new store, reads follow the job's
  rollout (``docs/manual.md``, "Cut-over").
- ``StoreIndex``: a pgvector store (or any nsmigrate store) behind the same interface as the SDK's ``Index``.

The package's parts live in the repository's top-level folders, mapped here by ``setup.py``: ``nsmigrate.cli``
(``cli/``), ``nsmigrate.orchestrator`` (``orchestrator/``), ``nsmigrate.workers`` (``workers/``) and
``nsmigrate.migrations`` (``migrations/``, the spec catalogue). The embedded services for the demo and the tests are
a distribution of their own (``sandbox/``, the package ``nsmigrate_sandbox``), installed by the ``sandbox`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nsmigrate.orchestrator.cutover.dualwrite import DualWriteIndex, StoreIndex

__all__ = ["DualWriteIndex", "StoreIndex", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: every `nsmigrate.…` import runs this module, and a command or a worker must not pay for
    # the cut-over's imports it never uses.
    if name in ("DualWriteIndex", "StoreIndex"):
        from nsmigrate.orchestrator.cutover import dualwrite

        return getattr(dualwrite, name)
    if name == "__version__":
        from importlib.metadata import version

        return version("nsmigrate")
    raise AttributeError(f"module 'nsmigrate' has no attribute {name!r}")
