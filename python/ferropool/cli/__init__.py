"""The ``ferropool`` command (also ``python -m ferropool``).

One subcommand per module (``bench``, ``sizing``); this module only parses the
command line, dispatches, and turns a CliError into one line on stderr and
exit status 2. It must never show a traceback for a problem the user can
fix, nor echo a password.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from .. import __version__
from ..runner.secrets import scrub
from . import bench, sizing
from .errors import CliError

__all__ = ["main"]

PROG = "ferropool"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # "unrecognized arguments: host=db password=..." when --dsn was forgotten.
        super().error(scrub(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="ferropool: a PostgreSQL connection pool.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    bench.add_parser(commands)
    sizing.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line *argv* (default: sys.argv[1:]); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as ex:  # --help, or a usage error already printed
        return ex.code if isinstance(ex.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status: int = args.handler(args)
    except CliError as ex:
        print(f"{PROG} {args.command}: error: {scrub(str(ex))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status
