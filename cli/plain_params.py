"""Command-line values of plain types read without pydantic.

typer (0.2x) reads every parameter's value through a pydantic ``TypeAdapter`` it builds on the command's first parse:
loading pydantic and building the adapters costs a command ~0.1 s of CPU before it does anything (``bench/README.md``,
"Start-up and planning"), half of what `nsmigrate run` takes to hand a spec to the fleet. Most values are a string,
a path or a flag, which need no validation a plain call does not do: ``install`` makes typer read those here, as its
adapter does (a path through typer's own ``coerce_cli_path``, with its checks: ``exists``, ``dir_okay``, …), and
builds typer's own reading for anything else (a number, a choice, a flag's value given as text) when it is needed.

It replaces one method of typer's parameters (``_TyperParameter.get_runtime_param``), which typer does not promise:
``tests/unit/test_pinned_versions.py`` checks that the pinned typer still has what it uses, and ``install`` leaves a
typer that lacks any of it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: typer's own ``get_runtime_param``, once ``install`` replaced it (the tests compare the two readings).
TYPERS_OWN: Any = None


def install() -> bool:
    """Make typer read plain values here (see the module docstring); False when this typer lacks what it uses."""
    try:  # typer's internals: see the module docstring
        from typer._coercion import RuntimeParam, build_runtime_param
        from typer._param_types import coerce_cli_path
        from typer.core import _TyperParameter
    except ImportError:
        return False
    if not hasattr(_TyperParameter, "get_runtime_param"):
        return False

    @dataclass(frozen=True)
    class Plain(RuntimeParam):
        descriptor: Any = None

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation = self.annotation
            if annotation is str and isinstance(value, str):
                return value
            if annotation is bool and isinstance(value, bool):
                return value
            if isinstance(annotation, type) and issubclass(annotation, Path) and isinstance(value, str | Path):
                # Made the path type first, as typer's adapter does: typer's checks then run on it as on theirs.
                path_type: Any = self.parameter_info.path_type or annotation
                as_path: Any = path_type(value) if isinstance(value, str) and path_type not in (str, bytes) else value
                return coerce_cli_path(as_path, self.parameter_info, path_type=path_type, param=param, ctx=ctx)
            return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            descriptor = self.type_descriptor
            info = descriptor.parameter_info
            if self.multiple or self.nargs != 1 or info.parser is not None or descriptor.file_annotation is not None:
                self._runtime_param = build_runtime_param(descriptor)
            else:
                self._runtime_param = Plain(
                    parameter_info=info, annotation=descriptor.annotation, descriptor=descriptor
                )
        return self._runtime_param

    global TYPERS_OWN
    if TYPERS_OWN is None:
        TYPERS_OWN = _TyperParameter.get_runtime_param
    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
    return True
