"""The ``syncice`` command line: connectivity checks built on the public API.

``syncice stun`` (mapped addresses, RFC 5780 NAT behaviour), ``syncice turn``
(an allocation's life, step by step) and ``syncice pipe`` (netcat over ICE);
``python -m syncice`` is the same program, with ``demo`` besides. Each
command lives in a module of its own; :mod:`syncice.cli.common` holds what
they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..exceptions import IceError
from . import pipe, stun, turn
from .common import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CommandError,
    Output,
    setup_logging,
)

__all__ = ["build_parser", "dispatch", "main"]

DESCRIPTION = "Diagnose ICE connectivity: STUN, TURN, and a pipe over ICE."
EPILOG = (
    """\
examples:
  syncice stun stun.example.org --nat
  syncice turn turn:turn.example.org --user alice --password secret
  syncice pipe offer < file.tar             (then, on the other host:
  syncice pipe answer LINE > file.tar        the offer's line; paste its answer)

Each command has its own --help.

"""
    + EXIT_CODES_HELP
)


def build_parser(prog: str = "syncice") -> tuple[argparse.ArgumentParser, object]:
    """The parser and its subcommands object (to add more commands to)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stun.add_parser(commands)
    turn.add_parser(commands)
    pipe.add_parser(commands)
    return parser, commands


def dispatch(args: argparse.Namespace) -> int:
    """Run the command that ``args`` names; its exit code."""
    handler: Callable[[argparse.Namespace, Output], int] = args.handler
    setup_logging(getattr(args, "verbose", False))
    out = Output(getattr(args, "json", False))
    try:
        return handler(args, out)
    except CommandError as exc:
        out.error(str(exc))
        return exc.code
    except (IceError, OSError) as exc:
        out.error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """``syncice`` without ``demo``."""
    parser, _ = build_parser()
    return dispatch(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
