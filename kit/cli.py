"""The `kit` command: one sub-command per module in `kit/commands/`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int`. Adding a command touches one file; this module discovers them, so
command modules must stay cheap to import (no torch, no textual at module level).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import kit.commands as _commands_pkg
from kit import __version__
from kit.errors import ExitCode, KitError


def _command_modules() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"kit.commands.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kit",
        description=(
            "Reproducibility kit for local-LLM inference benchmarks. With no command it opens "
            "the terminal UI."
        ),
    )
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _command_modules().items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        cmd.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks on errors",
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def _open_ui(args: argparse.Namespace) -> int:
    try:
        ui = importlib.import_module("kit.tui.app")
    except ModuleNotFoundError:
        build_parser().print_help()
        return ExitCode.OK
    return int(ui.main(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        if getattr(args, "_run", None) is None:
            return _open_ui(args)
        return int(args._run(args))
    except KitError as err:
        if debug:
            raise
        print(err.render(), file=sys.stderr)
        return int(err.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as err:  # a bug: say so in one line, with how to see more
        if debug:
            raise
        print(
            f"error: internal error: {type(err).__name__}: {err}\n"
            "  hint: rerun with --debug for the traceback, and report it",
            file=sys.stderr,
        )
        return int(ExitCode.INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
