"""Entry point of the ``hsets`` console script.

Each sub-command lives in its own module of this package with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``; this file only wires them together.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command modules, in the order ``hsets --help`` lists them
COMMANDS = ("demo", "explain", "evaluate", "explore", "assets")


def build_parser() -> argparse.ArgumentParser:
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
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"hsets {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
