"""The UI's state and computations as plain Python (no textual): GPU histories, run
progress, the matrix tree, result rows, the runs list."""

from __future__ import annotations
