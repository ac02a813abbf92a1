"""The ``sansa`` command line: ``sansa <command> --help`` for each command.

Each command lives in its own module with ``register(subparsers)``; heavy imports (torch,
sam2) happen inside the command, so ``sansa --help`` is instant. Options default to ``None``
and are passed on only when the user set them: the library owns the defaults.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sansa._version import __version__

# command modules, each with register(subparsers) -> None
COMMAND_MODULES = (
    "sansa.cli.segment",
    "sansa.cli.models",
    "sansa.cli.eval",
    "sansa.cli.train",
    "sansa.cli.serve",
    "sansa.cli.labelstudio",
    "sansa.cli.inspect",
)
# commands that read images: each gets --max-pixels (sansa.images' limit, checked before decoding)
IMAGE_COMMANDS = ("segment", "eval", "train", "serve", "inspect")


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
    for name in IMAGE_COMMANDS:
        if name in subparsers.choices:
            subparsers.choices[name].add_argument(
                "--max-pixels",
                metavar="N",
                help="refuse images of more than N pixels (width x height, read before decoding; e.g. 100M; "
                "default: $SANSA_MAX_PIXELS or 64M)",
            )
    return parser


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` that the user actually set (not ``None``)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def choices(vocabulary: Iterable[enum.Enum]) -> dict[str, Any]:
    """``choices=`` and ``type=`` of an option taking the values of ``vocabulary`` (an enum of
    :mod:`sansa.vocab` or some of its members). What the user types is read through the enum, so
    a name it still accepts (``multi`` for ``mixed``) passes as the value it stands for."""
    members = list(vocabulary)
    kind = type(members[0])

    def value(text: str) -> Any:
        try:
            return kind(text).value
        except ValueError:
            return text  # not a value: argparse refuses it, listing the choices

    return {"choices": [member.value for member in members], "type": value}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sansa`` console script. Returns the exit code."""
    from sansa.errors import SansaError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    # An object store's background tasks (s3fs over aiohttp) that fail once the store is gone are
    # logged by asyncio with a traceback; the run's own one-line error already says what failed.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        _apply_max_pixels(args)
        return int(args.handler(args) or 0)
    except SansaError as err:
        flags = {**option_flags(parser, args.command), **getattr(args, "parameter_flags", {})}
        message = as_flags(str(err), flags)
        print(f"sansa {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a program that stopped reading (`sansa models | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except KeyboardInterrupt:
        print(f"sansa {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def option_flags(parser: argparse.ArgumentParser, command: str | None) -> dict[str, str]:
    """``{parameter: flag}`` of ``command``'s options (``sam2_checkpoint`` -> ``--sam2-checkpoint``):
    their ``dest`` is the library parameter they are passed to."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    chosen = sub.choices.get(command) if sub is not None and command else None
    actions, parsers = [], [chosen] if chosen is not None else []
    while parsers:  # the command's own options and those of its subcommands (`models download --cache-dir`)
        current = parsers.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
            actions.append(action)
    return {a.dest: _long_option(a.option_strings) for a in actions if a.option_strings and a.dest != "help"}


def _long_option(options: Sequence[str]) -> str:
    """The first ``--long`` spelling of an option (``--fold`` of ``--fold/--folds``), else its first."""
    return next((o for o in options if o.startswith("--")), options[0])


def as_flags(message: str, flags: dict[str, str]) -> str:
    """A library message with the parameters it names written as the command's flags.

    A library message about parameters names them, by their Python names, before its first
    ``": "``: ``targets photos/: no such file or folder``, ``random_weights cannot be combined with
    model: ...``. After it, the explanation stays as written, so its words ("the targets") and a
    references file's keys (``neg_points``) stay what they are; only a parameter given a value as
    in Python becomes the flag with that value, there and in the head: ``(try device='cpu')`` ->
    ``(try --device cpu)``, ``overwrite=True`` -> ``--overwrite``.
    """
    head, colon, tail = message.partition(": ")
    if not colon:
        return message
    for name in sorted(flags, key=len, reverse=True):
        with_value = rf"(?<![\w/.-]){re.escape(name)}=(?:'([^']*)'|([^\s,;)]+))"
        head, tail = (re.sub(with_value, _flag_with(flags[name]), part) for part in (head, tail))
        head = re.sub(rf"(?<![\w/.-]){re.escape(name)}(?![\w/.-])", flags[name], head)
    return head + colon + tail


def _flag_with(flag: str) -> Callable[[re.Match[str]], str]:
    """``name=value`` (a match of :func:`as_flags`' pattern) as ``flag value``; ``name=True`` as ``flag``."""

    def written(match: re.Match[str]) -> str:
        value = match.group(1) if match.group(1) is not None else match.group(2)
        return flag if value == "True" else f"{flag} {value}"

    return written


def _apply_max_pixels(args: argparse.Namespace) -> None:
    """``--max-pixels``: set sansa.images' limit, also for worker processes (through the environment)."""
    from sansa import images

    warnings.filterwarnings("ignore", module="PIL")  # a PIL warning is never printed raw by the CLI
    if getattr(args, "max_pixels", None) is not None:
        images.set_max_pixels(images.parse_pixels(args.max_pixels))
        os.environ[images.MAX_PIXELS_ENV] = str(images.max_pixels())
    else:
        images.max_pixels()  # a malformed SANSA_MAX_PIXELS is a one-line error now, not in the middle of a run


if __name__ == "__main__":
    sys.exit(main())
