"""How a person drives the kit: the Textual terminal UI (`kit` with no command).

The only package that imports `textual`. `kit.tui.models` holds the UI's plain logic (no
textual) so it is tested headless; screens and widgets render it.
"""

from __future__ import annotations
