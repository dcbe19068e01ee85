"""Command line: ``python -m explorer <command> --help``.

Each command lives in ``explorer/commands/<name>.py`` and exposes
``HELP`` (one line), ``configure(parser)`` and ``main(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Command name -> module; the order is the order of ``--help``.
COMMANDS = {
    "problems": "explorer.commands.problems",
    "run": "explorer.commands.run",
    "compare": "explorer.commands.compare",
    "spectra": "explorer.commands.spectra",
    "check": "explorer.commands.check",
    "sweep": "explorer.commands.sweep",
    "bench": "explorer.commands.bench",
}


def available_commands() -> dict[str, object]:
    """The command modules that exist in this installation."""
    modules = {}
    for name, path in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(path)
        except ModuleNotFoundError as error:
            if error.name != path:
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m explorer",
        description="Curvature Explorer: natural gradient, Gauss-Newton, K-FAC and "
        "friends on small problems, exactly. Output is JSON.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in available_commands().items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` and runs the command; returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ValueError as error:  # bad input: a clear message, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
