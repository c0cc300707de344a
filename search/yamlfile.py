"""YAML as hpsearch reads it (specs, space files, presets): safe, and a key given twice in one mapping
is an error naming the key and both lines (plain YAML keeps the last one silently)."""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: str, first_line: int, line: int):
        self.key, self.first_line, self.line = key, first_line, line
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first_line})")


def _check(node: yaml.Node, path: str) -> None:
    """Raise on the first mapping (anywhere under ``node``) that gives a key twice."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges are overrides on purpose
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            here = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(here, seen[key], line)
            seen[key] = line
            _check(value_node, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check(item, f"{path}[{i}]")


def load(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (:class:`DuplicateKeyError`, a ``yaml.YAMLError``)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is not None:
        _check(node, "")
    return yaml.safe_load(text)


def problem(exc: yaml.YAMLError, what: str = "not valid YAML") -> tuple[str, str]:
    """The (path, message) a YAML error becomes: a duplicate key is named as the field."""
    if isinstance(exc, DuplicateKeyError):
        return exc.key, f"given twice, at lines {exc.first_line} and {exc.line} (one value per key)"
    return "", f"{what}: {exc}"


__all__ = ["DuplicateKeyError", "load", "problem"]
