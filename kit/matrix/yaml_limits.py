"""Reading a matrix YAML file within limits: depth, expanded size, no recursive aliases.

`yaml.safe_load` trusts its input's shape: a file nested a few thousand levels deep ends in a
RecursionError, and a few lines of aliases (the "billion laughs") expand into more values than
any validator can walk. Here the file is composed into nodes first, the nodes are measured
without recursion (aliases counted as often as they are used), and only a file within the
limits is constructed into Python values.
"""

from __future__ import annotations

from typing import Any

import yaml

from kit.matrix.validate import MatrixError

MAX_DEPTH = 64  # the shipped matrices nest 7 levels deep
MAX_VALUES = 200_000  # values after alias expansion; tr126.yaml has about 1,100
HINT = "a matrix file is a plain mapping of a few levels; write the values out"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def measure(root: yaml.Node) -> tuple[int, int]:
    """(values after alias expansion, depth) of a composed document; iterative.

    Raises ValueError for a recursive alias (a node that contains itself).
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            # Stop early: sizes only grow towards the root.
            if size[key] > MAX_VALUES or depth[key] > MAX_DEPTH:
                return size[key], depth[key]
            continue
        if key in size:
            continue
        if key in on_path:
            raise ValueError("an alias refers to a value that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    return size[id(root)], depth[id(root)]


def load_limited(data: bytes, label: str) -> Any:
    """The file's single YAML document as Python values; MatrixError naming `label`."""
    try:
        node = yaml.compose(data, Loader=yaml.SafeLoader)
    except RecursionError:
        raise MatrixError(
            f"{label}: nested too deeply (more than {MAX_DEPTH} levels)", HINT
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MatrixError(
            f"{label}: not valid YAML{where}: {getattr(err, 'problem', None) or err}",
            "fix the YAML syntax (indentation, quotes, colons)",
        ) from None
    if node is None:
        return None
    try:
        values, levels = measure(node)
    except ValueError as err:
        raise MatrixError(f"{label}: {err}", HINT) from None
    if levels > MAX_DEPTH:
        raise MatrixError(f"{label}: nested too deeply (more than {MAX_DEPTH} levels)", HINT)
    if values > MAX_VALUES:
        raise MatrixError(f"{label}: its aliases expand to more than {MAX_VALUES:,} values", HINT)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise MatrixError(
            f"{label}: not valid YAML: {getattr(err, 'problem', None) or err}",
            "fix the YAML syntax (indentation, quotes, colons)",
        ) from None
    finally:
        loader.dispose()
