"""YAML as hpsearch reads it (specs, space files, presets): safe, bounded, and a key given twice in one
mapping is an error naming the key and both lines (plain YAML keeps the last one silently).

Bounded, because a spec may come from anyone who can submit a job: a text over :data:`MAX_BYTES`,
nesting deeper than :data:`MAX_DEPTH`, aliases that expand to more than :data:`MAX_VALUES` values (the
"billion laughs"), or an anchor that contains itself are refused (:class:`LimitError`) in well under a
second, before anything is built from them. An error never quotes the text: it names the line and column.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a job spec or space file is a few KiB
MAX_DEPTH = 64  # nested mappings and lists
MAX_VALUES = 100_000  # every value once per path it is reachable by (aliases expanded)


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: str, first_line: int, line: int):
        self.key, self.first_line, self.line = key, first_line, line
        super().__init__(f"duplicate key {key!r} at line {line} (first at line {first_line})")


class LimitError(yaml.YAMLError):
    """The text is past one of the limits above (the message says which, without quoting the text)."""


def _bounded_events(text: str) -> None:
    """Walk the parser's events (PyYAML's parser is not recursive): refuse deep nesting early."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise LimitError(
                    f"nested more than {MAX_DEPTH} levels deep (at line {mark.line + 1}, column {mark.column + 1})"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """How many values ``root`` stands for with every alias expanded; LimitError past MAX_VALUES or on a
    cycle. Each node is sized once (memoised), so this is linear in the text, not in the expansion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # An explicit stack: (node, whether its children are sized)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(key)
            size = 1 + sum(sizes[id(c)] for c in children)
            if size > MAX_VALUES:
                raise LimitError(f"aliases expand to more than {MAX_VALUES:,} values")
            sizes[key] = size
            continue
        if key in on_path:
            mark = node.start_mark
            raise LimitError(f"an anchor contains itself (at line {mark.line + 1}, column {mark.column + 1})")
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                mark = child.start_mark
                raise LimitError(f"an anchor contains itself (at line {mark.line + 1}, column {mark.column + 1})")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check(root: yaml.Node) -> None:
    """Raise on the first mapping (anywhere under ``root``) that gives a key twice. A node reached again
    through an alias was checked the first time."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        later: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges are overrides on purpose
                    continue
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "(a collection)"
                key = key if len(key) <= 60 else key[:57] + "..."
                here = f"{path}.{key}" if path else key
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKeyError(here, seen[key], line)
                seen[key] = line
                later.append((value_node, here))
        elif isinstance(node, yaml.SequenceNode):
            later = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        stack.extend(reversed(later))  # depth first, in document order: the first duplicate is reported


def load(text: str) -> Any:
    """``yaml.safe_load`` within the limits, refusing duplicate keys (:class:`DuplicateKeyError`,
    :class:`LimitError`: both ``yaml.YAMLError``)."""
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_BYTES:
        raise LimitError(f"{size:,} bytes: the limit is {MAX_BYTES:,} (1 MiB)")
    _bounded_events(text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        _check(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def problem(exc: yaml.YAMLError, what: str = "not valid YAML") -> tuple[str, str]:
    """The (path, message) a YAML error becomes: a duplicate key is named as the field. The message
    names where (line, column) and what is wrong, never the text itself (it may be any file's)."""
    if isinstance(exc, DuplicateKeyError):
        return exc.key, f"given twice, at lines {exc.first_line} and {exc.line} (one value per key)"
    return "", f"{what}: {describe(exc)}"


def describe(exc: yaml.YAMLError) -> str:
    """A YAML error without the snippet of text PyYAML quotes."""
    if isinstance(exc, LimitError):
        return str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{what}{where}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"{exc.reason} (character {exc.character!r} at position {exc.position})"
    return type(exc).__name__


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "DuplicateKeyError", "LimitError", "describe", "load", "problem"]
