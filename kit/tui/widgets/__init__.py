"""Self-contained widgets (each carries its own DEFAULT_CSS)."""

from __future__ import annotations
