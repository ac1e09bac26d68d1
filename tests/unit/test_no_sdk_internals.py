"""No product module touches the Pinecone SDK's private parts (issue #29).

``pyproject.toml`` allows any ``pinecone>=10,<11``: only its public API is promised across those versions. So no
module of ``cli``, ``orchestrator``, ``workers``, ``sandbox`` or ``bench`` may import a ``pinecone`` module whose
path has a ``_``-prefixed part (``pinecone._internal…``) or a ``_``-prefixed name from the SDK, nor reach a private
attribute the SDK defines (``index._http``, ``transport._config``…) on anything but itself (``self._x``), directly or
by name through ``getattr``/``setattr``/``hasattr``. Tests may look inside the SDK (``tests/``); product code may not.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pinecone
import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("cli", "orchestrator", "workers", "sandbox", "bench")
SDK = Path(pinecone.__file__).resolve().parent


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@functools.cache
def _sdk_private_names() -> frozenset[str]:
    """Every ``_``-prefixed attribute, method and module-level name the installed SDK defines."""
    names: set[str] = set()
    for path in SDK.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = node.name
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                name = node.id
            else:
                continue
            if _private(name):
                names.add(name)
    return frozenset(names)


def _product_files() -> Iterator[Path]:
    for top in PRODUCT:
        yield from sorted((ROOT / top).rglob("*.py"))


def _touches(tree: ast.AST, private_names: frozenset[str]) -> Iterator[tuple[int, str]]:
    """``(line, what)`` of each place ``tree`` reaches into the SDK's private parts."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pinecone":
            if any(_private(part) for part in node.module.split(".")):
                yield node.lineno, f"from {node.module} import …"
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pinecone" and any(_private(part) for part in parts):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.Attribute) and node.attr in private_names:
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                yield node.lineno, f"….{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in private_names
        ):
            yield node.lineno, f"{node.func.id}(…, {node.args[1].value!r})"


def test_no_product_module_touches_the_sdks_private_parts() -> None:
    private_names = _sdk_private_names()
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _product_files()
        for line, what in _touches(ast.parse(path.read_text(encoding="utf-8")), private_names)
    ]
    assert not found, "the Pinecone SDK's private parts used in product code:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "from pinecone._internal.http_client import _raise_for_status",
        "import pinecone._internal.config",
        "from pinecone import _internal",
        "transport = index._http._client._transport",
        "getattr(index, '_http', None)",
        "cast(Any, transport)._config = config",
    ],
)
def test_each_way_of_reaching_in_is_found(code: str) -> None:
    assert list(_touches(ast.parse(code), _sdk_private_names()))


@pytest.mark.parametrize(
    "code",
    ["from pinecone import Pinecone, RetryConfig", "self._http = http", "index.describe_index_stats()"],
)
def test_public_use_and_our_own_private_attributes_are_not_flagged(code: str) -> None:
    assert not list(_touches(ast.parse(code), _sdk_private_names()))
