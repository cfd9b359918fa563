"""The ``fpgrowth-dagster`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func``; modules are imported here so that ``--help`` lists them all,
and heavy imports (dagster, boto3, pandas) stay inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules, in the order ``--help`` shows them.
COMMAND_MODULES = ("mine", "groups", "enqueue", "sqs", "status", "plot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fpgrowth-dagster",
        description="Frequent itemsets and association rules (FP-Growth) for many groups at once.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"fpgrowth_dagster.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fpgrowth_dagster.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
