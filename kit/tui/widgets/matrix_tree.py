"""The matrix tree with check marks: space toggles a node's cells, labels show counts."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from kit.tui.models.matrix_tree import Node


class MatrixTree(Tree[Node]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_cells", "Select", show=True),
    ]

    class Toggled(Message):
        """The person toggled the cells under `node`."""

        def __init__(self, node: Node) -> None:
            super().__init__()
            self.node = node

    def __init__(self) -> None:
        super().__init__("matrices", id="matrix-tree")
        self.show_root = False
        self.guide_depth = 2

    def add_matrix(self, node: Node) -> None:
        def add(parent: TreeNode[Node], item: Node, depth: int) -> None:
            if item.children:
                child = parent.add(item.label, data=item, expand=depth == 0)
                for sub in item.children:
                    add(child, sub, depth + 1)
            else:
                parent.add_leaf(item.label, data=item)

        add(self.root, node, 0)

    def action_toggle_cells(self) -> None:
        node = self.cursor_node
        if node is not None and node.data is not None:
            self.post_message(self.Toggled(node.data))

    def relabel(self, selected: Collection[str], problem: Callable[[str], str | None]) -> None:
        """Refresh every label: check mark, selected/runnable counts, why cells can't run."""

        def walk(node: TreeNode[Node]) -> None:
            for child in node.children:
                if child.data is not None:
                    child.set_label(label_for(child.data, selected, problem))
                walk(child)

        walk(self.root)


def label_for(node: Node, selected: Collection[str], problem: Callable[[str], str | None]) -> Text:
    ids = node.cell_ids
    runnable = [c for c in ids if problem(c) is None]
    chosen = sum(1 for c in runnable if c in selected)
    mark = "[x]" if runnable and chosen == len(runnable) else "[-]" if chosen else "[ ]"
    text = Text()
    if not runnable:
        reason = problem(ids[0]) or ""
        text.append(f"    {node.label} ", style="dim")
        text.append(f"({len(ids)} cells: {reason})", style="dim italic")
        return text
    text.append(f"{mark} ", style="bold green" if chosen else "")
    text.append(node.label)
    counts = f"  {chosen}/{len(runnable)}"
    if len(runnable) < len(ids):
        counts += f" ({len(ids) - len(runnable)} can't run)"
    text.append(counts, style="cyan")
    return text
