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


def build_parser() -> argparse.ArgumentParser:
    """The ``hsets`` parser with every sub-command built in this version."""
    parser = argparse.ArgumentParser(
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
EXPECTED = (ValueError, RuntimeError, OSError, LookupError, ImportError, MemoryError)


def main(argv=None) -> int:
    """Run ``hsets`` with ``argv``; expected failures print one line and return 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from hsets_widgets.progress import Cancelled

    try:
        return int(args.handler(args) or 0)
    except (KeyboardInterrupt, Cancelled):
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED as err:
        if getattr(args, "debug", False):
            raise
        msg = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, MemoryError):
            msg = "out of memory; try a smaller --nu / --n-sets, or --batch-size 1"
        print(f"hsets {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
