"""The ``sansa`` command line: ``sansa <command> --help`` for each command.

Each command lives in its own module with ``register(subparsers)``; heavy imports (torch,
sam2) happen inside the command, so ``sansa --help`` is instant. Options default to ``None``
and are passed on only when the user set them: the library owns the defaults.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from sansa import __version__

# command modules, each with register(subparsers) -> None
COMMAND_MODULES = (
    "sansa.cli.segment",
    "sansa.cli.models",
    "sansa.cli.eval",
    "sansa.cli.train",
    "sansa.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sansa",
        description="SANSA: segment every object of a class in many images from a few marked examples.",
    )
    parser.add_argument("--version", action="version", version=f"sansa {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # command not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def given(args: argparse.Namespace, *names: str) -> dict:
    """The options among ``names`` that the user actually set (not ``None``)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sansa`` console script. Returns the exit code."""
    from sansa.errors import SansaError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except SansaError as err:
        print(f"sansa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a program that stopped reading (`sansa models | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except KeyboardInterrupt:
        print(f"sansa {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
