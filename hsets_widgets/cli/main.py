"""Entry point of the ``hsets`` console script.

Each sub-command lives in its own module of this package with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``; this file only wires them together.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command modules, in the order ``hsets --help`` lists them
COMMANDS = ("demo", "explain", "evaluate", "sweep", "explore", "assets")


class UsageError(ValueError):
    """A command line argparse cannot read; ``str`` is the whole one-line message."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line and exit code 1, like every
    other bad input, instead of printing the usage and exiting 2.
    """

    def error(self, message):
        """Raise :class:`UsageError` (``main`` prints it)."""
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``hsets`` parser with every sub-command built in this version."""
    parser = Parser(
        prog="hsets", description="H-Sets: Hessian-guided feature-interaction explanations "
                                  "for image classifiers")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"hsets_widgets.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"hsets_widgets.cli.{name}":
                continue  # command not built in this version
            raise
        p = mod.add_parser(sub)
        p.set_defaults(handler=mod.run)
    return parser


#: failures a user can cause and fix (bad input, missing files, full disks, cancelled work):
#: one line and exit code 1; anything else is a bug and keeps its traceback
EXPECTED = (ValueError, RuntimeError, OSError, LookupError, ImportError, MemoryError, FloatingPointError)


def main(argv=None) -> int:
    """Run ``hsets`` with ``argv``; expected failures print one line and return 1, Ctrl-C
    returns 130 and SIGTERM 143 (after the same cleanup).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(f"{err}{dash_hint(argv)}", file=sys.stderr)
        return 1
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from hsets_widgets.plumbing.progress import Cancelled
    from hsets_widgets.plumbing.signals import Terminated, terminate_as_interrupt

    try:
        with terminate_as_interrupt():
            check_environment()
            return int(args.handler(args) or 0)
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except (KeyboardInterrupt, Cancelled):
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED as err:
        if getattr(args, "debug", False):
            raise
        print(f"hsets {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 1


def dash_hint(argv) -> str:
    """A hint when a file named on the command line starts with '-' (argparse takes it for an
    option): ``; to name the file -dash.jpg, write ./-dash.jpg (or put -- before it)``.
    """
    import os

    argv = sys.argv[1:] if argv is None else argv
    for a in map(str, argv):
        if a.startswith("-") and a != "-" and not a.startswith("--") and os.path.exists(a):
            return f"; to name the file {a}, write ./{a} (or put -- before it)"
    return ""


def check_environment() -> None:
    """The settings read from the environment, checked before any command does any work
    (``$HSETS_MEMORY_BUDGET``: a bad value would otherwise fail after the model loads, or in the
    browser for ``hsets explore``).
    """
    from hsets_widgets.plumbing.memory import budget_bytes

    budget_bytes()


def one_line(err: BaseException) -> str:
    """The message of an expected failure, on one line."""
    if isinstance(err, MemoryError):
        return "out of memory; try a smaller --nu / --n-sets, or --batch-size 1"
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
