"""WHAT is measured: matrices as data, the models registry, selection.

No torch, no textual: this package is imported by the orchestrator and the UI.
"""

from __future__ import annotations

from kit.matrix.cell import BACKENDS, DEVICES, MODES, Cell
from kit.matrix.select import Selection, parse_selection, select_cells
from kit.matrix.spec import BUILTIN_MATRICES, Matrix, Published, load_matrix

__all__ = [
    "BACKENDS",
    "BUILTIN_MATRICES",
    "DEVICES",
    "MODES",
    "Cell",
    "Matrix",
    "Published",
    "Selection",
    "load_matrix",
    "parse_selection",
    "select_cells",
]
