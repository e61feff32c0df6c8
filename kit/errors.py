"""One error base class and named exit codes (see STYLE.md: plain, small, honest)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1  # a KitError: bad input, missing resource, failed check
    USAGE = 2  # argparse's own code for bad command lines
    CELLS_FAILED = 3  # the run finished but some cells crashed or were degraded
    INTERNAL = 70  # a bug: an exception that is not a KitError
    INTERRUPTED = 130  # Ctrl-C / SIGTERM: stopped cleanly, resumable


class KitError(Exception):
    """An error a person can act on.

    `title` says what went wrong (and where); `hint` says how to fix it. The CLI prints
    `error: <title>` and `  hint: <hint>` on stderr, never a traceback unless --debug.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, title: str, hint: str = "") -> None:
        super().__init__(title)
        self.title = title
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.title}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class Interrupted(KitError):
    exit_code = ExitCode.INTERRUPTED
