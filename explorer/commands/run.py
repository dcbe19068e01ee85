r"""``python -m explorer run``: one optimizer run from flags or a JSON/TOML config file.

Examples::

    python -m explorer run --problem digits_mlp --rule natural_gradient \
        --rule-option damping=1e-3 --steps 50 --out run.json
    python -m explorer run --config run.toml --steps 10   # flags override the file

A config file holds the fields of ``explorer.RunConfig``, e.g. (TOML)::

    problem = "digits_mlp"
    rule = "kfac"
    steps = 50
    [problem_options]
    hidden = [32]
    [rule_options]
    damping = 0.01

Prints a JSON summary (status, message, final metrics) on stdout; ``--out`` writes
the configs and full histories (``explorer.load_histories`` reads them back).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HELP = "Run one update rule on one problem (flags or a JSON/TOML config); JSON out."

#: History columns of one step's update (λ, ρ, α...), left out of the final summary.
PER_UPDATE_COLUMNS = ("grad_norm", "update_norm", "damping", "rho", "alpha")


# ----------------------------------------------------------------- shared parts
def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Flags for every scalar field of ``RunConfig`` (help from its schema)."""
    from explorer.commands.paths import existing_path, output_file
    from explorer.problems.spec import PROBLEMS
    from explorer.runs import RUN_OPTIONS

    for option in RUN_OPTIONS:
        flag = "--" + option.name.replace("_", "-")
        text = f"{option.help} Default: {option.default!r}; allowed: {allowed(option)}."
        if any(option.name in spec.run_defaults for spec in PROBLEMS.values()):
            text += " Some problems declare their own default (`problems` lists them)."
        if option.kind == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=text)
        else:
            parser.add_argument(flag, default=None, metavar="VALUE", help=text)
    parser.add_argument(
        "--problem-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A problem option, e.g. hidden=32,16 or loss=gaussian_tanh_mean "
        "(repeatable; see `python -m explorer problems`).",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="A JSON or TOML file with RunConfig fields; flags override it.",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        type=output_file,
        help="Write the configs and histories (JSON) here.",
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        type=output_file,
        help="Also write a self-contained interactive page of the figures (loss, "
        "λ/ρ/α, parameter and function space) here.",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="PATH",
        type=existing_path,
        help="A plugin file or folder (curvatures, problems) to load first "
        "(repeatable); EXPLORER_PLUGINS and installed entry points are loaded too.",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="No progress bar on stderr."
    )
    parser.add_argument(
        "--list-rules",
        action="store_true",
        help="Print every update rule with its options (JSON) and exit.",
    )


def allowed(option) -> str:
    """The allowed values of an option in words."""
    if option.kind == "str" and option.choices is None:
        return "a string" + (" or None" if option.nullable else "")
    return option.range_text()


def load_requested_plugins(args: argparse.Namespace) -> None:
    """Loads ``--plugin`` paths, EXPLORER_PLUGINS and entry points; failures warn."""
    from explorer.plugins import load_plugins

    for report in load_plugins(args.plugin):
        if report.error:
            print(f"warning: plugin {report.source}: {report.error}", file=sys.stderr)


def parse_value(text: str) -> Any:
    """A flag value: JSON when it parses (numbers, lists, true), else the string."""
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str], what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} must look like KEY=VALUE")
        out[key.strip()] = parse_value(value.strip())
    return out


def read_config_file(path: str) -> dict[str, Any]:
    """The table in a ``.json`` or ``.toml`` file."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"config file {path!r} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".toml":
        import tomllib

        kind, parse, error_type = "TOML", tomllib.loads, tomllib.TOMLDecodeError
    else:
        kind, parse, error_type = "JSON", json.loads, json.JSONDecodeError
    try:
        data = parse(text)
    except error_type as error:
        raise ValueError(f"config file {path!r} is not valid {kind}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path!r} must hold a table/object of fields")
    return data


def fields_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig fields given on the command line (file first, flags override)."""
    from explorer.runs import RUN_OPTIONS

    fields = read_config_file(args.config) if args.config else {}
    for option in RUN_OPTIONS:
        value = getattr(args, option.name)
        if value is not None:
            fields[option.name] = (
                parse_value(value)
                if isinstance(value, str) and option.kind != "str"
                else value
            )
    if getattr(args, "problem", None):
        fields["problem"] = args.problem
    problem_options = parse_assignments(args.problem_option, "--problem-option")
    if problem_options:
        fields["problem_options"] = {
            **dict(fields.get("problem_options") or {}),
            **problem_options,
        }
    return fields


def rules_catalog() -> dict[str, Any]:
    """Every registered rule with its options, as plain data."""
    import explorer as ex

    def describe(option) -> dict[str, Any]:
        return {
            "default": option.default,
            "help": option.help,
            "allowed": allowed(option),
        }

    catalog = {}
    for key, spec in ex.RULES.items():
        catalog[key] = {
            "label": spec.label,
            "description": spec.description,
            "curvature": spec.curvature,
            "options": {o.name: describe(o) for o in spec.schema()},
        }
    return catalog


def summary(histories: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Status, message and final metrics of each run."""
    from explorer.runs import COLUMNS

    out = []
    for label, history in histories.items():
        out.append(
            {
                "label": label,
                "rule": history.rule,
                "status": history.status,
                "message": history.message,
                "final": {
                    name: _json_float(history.last(name))
                    for name in COLUMNS
                    if name not in PER_UPDATE_COLUMNS
                },
            }
        )
    return out


def _json_float(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


class ProgressBar:
    """A terminal progress bar on stderr: ``[#####-----] run 1/3 sgd: step 12/50``.

    On a terminal it redraws one line; elsewhere (logs, pipes) it writes the last
    state of each run once the run is over.
    """

    def __init__(self, total_runs: int = 1, stream=None, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.total_runs = total_runs
        self.width = width
        self.run_index = -1
        self.label = None
        self.line = ""
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, step: int, total: int, metrics: Mapping[str, Any]) -> None:
        label = metrics.get("label", "")
        if label != self.label:
            self._flush()
            self.label = label
            self.run_index += 1
        done = (self.run_index * max(total, 1) + step) / max(
            1, self.total_runs * max(total, 1)
        )
        filled = round(self.width * done)
        self.line = (
            f"[{'#' * filled}{'-' * (self.width - filled)}] run "
            f"{self.run_index + 1}/{self.total_runs} {label}: step {step}/{total} "
            f"loss {metrics.get('loss', float('nan')):.4g}"
        )
        if self.live:
            self.stream.write("\r" + self.line.ljust(100))
            self.stream.flush()

    def _flush(self) -> None:
        if self.line and not self.live:
            self.stream.write(self.line + "\n")
        self.line = ""

    def close(self) -> None:
        """Ends the bar (call once all runs are over)."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
        else:
            self._flush()


def emit(histories: Mapping[str, Any], args: argparse.Namespace, problem: Any) -> None:
    """Prints the summary; writes the full runs file when ``--out`` is given and the
    figures of the runs on ``problem`` when ``--html`` is.
    """
    from explorer.runs import save_histories

    if args.out:
        save_histories(histories, args.out)
    if getattr(args, "html", None):
        from explorer.plots import write_report

        write_report(histories, args.html, problem)
    print(json.dumps(summary(histories), indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------- command
def add_problem_argument(parser: argparse.ArgumentParser, doc: str) -> None:
    """The command's examples (from its module ``doc``) and rules under ``--help``,
    and ``--problem``.
    """
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = doc.split("\n", 2)[2] + rules_epilog()
    parser.add_argument(
        "--problem", help="A problem key (see `python -m explorer problems`)."
    )


def configure(parser: argparse.ArgumentParser) -> None:
    add_problem_argument(parser, __doc__)
    parser.add_argument(
        "--rule",
        default=None,
        help="An update rule key (default: sgd); see --list-rules.",
    )
    parser.add_argument(
        "--rule-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A rule option, e.g. damping=1e-3 or curvature=kfac (repeatable).",
    )
    add_run_options(parser)


def rules_epilog() -> str:
    import explorer as ex

    lines = ["\nUpdate rules (options: --list-rules):"]
    lines += [f"  {key:22s} {spec.label}" for key, spec in ex.RULES.items()]
    return "\n".join(lines)


def listed_rules(args: argparse.Namespace) -> bool:
    """Loads the requested plugins; prints the rule catalog if --list-rules asked."""
    load_requested_plugins(args)
    if args.list_rules:
        print(json.dumps(rules_catalog(), indent=2, ensure_ascii=False))
    return bool(args.list_rules)


def run_and_emit(configs: list[Any], args: argparse.Namespace) -> int:
    """Runs ``configs`` with a progress bar and prints or writes the results.

    The problem is built once for all runs (unless an entry of a config file sets
    its own problem options) and the figures of ``--html`` are drawn on it.
    """
    from explorer.runs import run_configs

    if not configs:
        raise ValueError("nothing to run: give at least one rule")
    shared = len({config.problem_config for config in configs}) == 1
    problem = configs[0].problem_config.build()
    bar = None if args.quiet else ProgressBar(len(configs))
    try:
        histories = run_configs(
            configs, problem=problem if shared else None, progress=bar
        )
    finally:
        if bar is not None:
            bar.close()
    emit(histories, args, problem)
    return 0


def main(args: argparse.Namespace) -> int:
    import explorer as ex

    if listed_rules(args):
        return 0
    fields = fields_from_args(args)
    if args.rule:
        fields["rule"] = args.rule
    rule_options = parse_assignments(args.rule_option, "--rule-option")
    if rule_options:
        fields["rule_options"] = {
            **dict(fields.get("rule_options") or {}),
            **rule_options,
        }
    return run_and_emit([ex.RunConfig.from_dict(fields)], args)
