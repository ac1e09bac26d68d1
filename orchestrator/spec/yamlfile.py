"""The one YAML loader nsmigrate reads every YAML file with (job specs, creator mappings, the shipped catalogue).

Strict where plain ``yaml.safe_load`` is silent: a key given twice in one mapping is an error naming the key's path and
both lines. PyYAML keeps the last value, so a spec saying ``cleanup: {mode: never}`` and further down
``cleanup: {mode: auto}`` would delete the source the reader believed protected.
"""

from __future__ import annotations

from typing import Any

import yaml

from nsmigrate.orchestrator.errors import SpecError

_MERGE_TAG = "tag:yaml.org,2002:merge"


def compose_yaml(text: str, origin: str) -> yaml.Node | None:
    """The node tree of ``text`` (None for an empty document), refused when it is not YAML or repeats a key.

    ``origin`` names the file in messages. Raises ``SpecError``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise SpecError(f"{origin} is not valid YAML: {e}", path=origin) from e
    if node is not None:
        _refuse_duplicate_keys(node, "", origin, set())
    return node


def load_yaml(text: str, origin: str) -> Any:
    """``yaml.safe_load`` of ``text``, refused when it repeats a key (see ``compose_yaml``). Raises ``SpecError``."""
    node = compose_yaml(text, origin)
    if node is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise SpecError(f"{origin} is not valid YAML: {e}", path=origin) from e
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, path: str, origin: str, checked: set[int]) -> None:
    if id(node) in checked:  # an alias of a node already checked (or of itself: YAML allows recursion)
        return
    checked.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path}[{i}]", origin, checked)
    elif isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if key.tag == _MERGE_TAG:  # `<<: *defaults` is YAML's own way to override, not a repeat
                _refuse_duplicate_keys(value, path, origin, checked)
                continue
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "(a complex key)"
            key_path = f"{path}.{name}" if path else name
            line = key.start_mark.line + 1
            seen = first_line.get((key.tag, name))
            if seen is not None:
                raise SpecError(
                    f"{origin}: {key_path}: duplicate key {name!r} at lines {seen} and {line}",
                    hint="a key may appear once in a mapping (YAML would keep only the last); remove one of them",
                    path=origin,
                    line=line,
                )
            first_line[(key.tag, name)] = line
            _refuse_duplicate_keys(value, key_path, origin, checked)
