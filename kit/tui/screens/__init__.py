"""The UI's screens: one module each (GPUs, Matrices, Run, Results, Runs, modals)."""

from __future__ import annotations
