r"""``python -m explorer compare``: several update rules, same data, seed and start.

Example::

    python -m explorer compare --problem digits_mlp \
        --rules sgd,natural_gradient,gauss_newton,kfac --steps 100 --seed 0 \
        --rule-option natural_gradient.damping=0.01 --out runs.json

A config file (``--config``, JSON or TOML) may hold ``problem``, ``rules`` (keys, or
tables with ``rule``, ``rule_options`` and ``label``) and any shared RunConfig
field; flags override it. Prints a JSON summary per run on stdout; ``--out``
writes the configs and full histories.
"""

from __future__ import annotations

import argparse
from typing import Any

from explorer.commands.run import (
    add_problem_argument,
    add_run_options,
    fields_from_args,
    listed_rules,
    parse_value,
    run_and_emit,
)

HELP = "Compare update rules on one problem from the same start and data; JSON out."


def configure(parser: argparse.ArgumentParser) -> None:
    add_problem_argument(parser, __doc__)
    parser.add_argument(
        "--rules",
        default=None,
        help="Comma-separated rule keys, e.g. sgd,natural_gradient,kfac "
        "(default: sgd,adam,natural_gradient,gauss_newton,kfac).",
    )
    parser.add_argument(
        "--rule-option",
        action="append",
        default=[],
        metavar="RULE.KEY=VALUE",
        help="An option of one rule, e.g. kfac.damping=0.01 (repeatable).",
    )
    add_run_options(parser)


def rule_entries(fields: dict[str, Any], args: argparse.Namespace) -> list[dict]:
    """The runs: from --rules (or the file's ``rules``) plus per-rule options."""
    from explorer.runs import DEFAULT_EXPERIMENT

    if args.rules is not None:  # given, even empty: never silently the defaults
        raw: list[Any] = [key.strip() for key in args.rules.split(",") if key.strip()]
        if not raw:
            raise ValueError(
                f"--rules {args.rules!r} names no rule; give comma-separated rule "
                "keys, e.g. --rules sgd,kfac (or leave --rules out for the defaults)"
            )
    else:
        default = [choice.rule for choice in DEFAULT_EXPERIMENT.rules]
        raw = list(fields.pop("rules", default))
    fields.pop("rules", None)
    entries = [{"rule": item} if isinstance(item, str) else dict(item) for item in raw]
    for item in args.rule_option:
        target, sep, value = item.partition("=")
        rule, dot, key = target.partition(".")
        if not sep or not dot or not key:
            raise ValueError(f"--rule-option {item!r} must look like RULE.KEY=VALUE")
        matches = [e for e in entries if rule in (e["rule"], e.get("label"))]
        if not matches:
            raise ValueError(
                f"--rule-option {item!r} names rule {rule!r}, which is not among "
                f"the compared rules {[e['rule'] for e in entries]}"
            )
        for entry in matches:
            options = dict(entry.get("rule_options") or {})
            options[key.strip()] = parse_value(value.strip())
            entry["rule_options"] = options
    return entries


def main(args: argparse.Namespace) -> int:
    from explorer.runs import comparison_configs

    if listed_rules(args):
        return 0
    fields = fields_from_args(args)
    entries = rule_entries(fields, args)
    problem = fields.pop("problem", None)
    if problem is None:
        raise ValueError("compare needs --problem (or 'problem' in the config file)")
    return run_and_emit(comparison_configs(problem, entries, **fields), args)
