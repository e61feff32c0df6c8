"""Reproducibility kit for local-LLM inference benchmarks (TR117 / TR126 / TR147)."""

from __future__ import annotations

__version__ = "0.1.0"
