"""Command-line conventions shared by ``medvqa`` and ``pubmedclip``.

Every subcommand is a ``main(argv) -> int`` that tests call directly. A usage mistake or bad input is
one line on stderr, ``error: ...``, with exit status 2: argparse's usage block is not printed.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping

from infra.errors import UserError

Command = Callable[[list[str]], int]


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are a one-line ``UserError`` (``--help`` still prints the full help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see --help)")


def run_command(program: str, commands: Mapping[str, Command], argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its subcommand; ``UserError`` becomes ``error: ...`` on stderr and status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {program} {{{','.join(commands)}}} ...  ({program} COMMAND --help for details)")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command not in commands:
            raise UserError(f"unknown command {command!r}: choose from {', '.join(commands)}")
        return commands[command](rest)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
