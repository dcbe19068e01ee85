"""``python -m explorer problems``: list problems and curvatures with their options."""

from __future__ import annotations

import argparse
import json

HELP = "List the registered problems and curvatures with their options (JSON)."


def configure(parser: argparse.ArgumentParser) -> None:
    from explorer.commands.paths import existing_path, output_file

    parser.add_argument(
        "--out", type=output_file, help="Write the JSON here instead of stdout."
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="PATH",
        type=existing_path,
        help="A plugin file or folder to load first (repeatable); its problems and "
        "curvatures are listed with their source.",
    )


def catalog() -> dict:
    """Problems and curvatures with their declared options, as plain data."""
    import explorer as ex

    def options(schema):
        return {
            opt.name: {
                "default": opt.default,
                "help": opt.help,
                "allowed": opt.range_text(),
            }
            for opt in schema
        }

    return {
        "problems": {
            key: {
                "label": spec.label,
                "group": spec.group,
                "architecture": spec.architecture,
                "source": spec.source,
                "description": spec.description,
                "options": options(spec.options),
                "run_defaults": dict(spec.run_defaults),
            }
            for key, spec in ex.PROBLEMS.items()
        },
        "curvatures": {
            key: {
                "label": spec.label,
                "description": spec.description,
                "psd": spec.psd,
                "exact": spec.exact,
                "tags": spec.tags().as_dict(),
                "needs": [requirement.name for requirement in spec.needs],
                "reference": spec.reference,
                "options": options(spec.options),
            }
            for key, spec in ex.CURVATURES.items()
        },
    }


def main(args: argparse.Namespace) -> int:
    from explorer.commands.run import load_requested_plugins

    load_requested_plugins(args)
    text = json.dumps(catalog(), indent=2, ensure_ascii=False)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    return 0
