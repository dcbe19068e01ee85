"""The URL codec: an :class:`~explorer.runs.Experiment` to query parameters and back.

The whole configuration lives in the URL so a copied link reproduces the experiment.
Only values that differ from their defaults are written, so links stay short::

    ?problem=digits_mlp&p.hidden=64,32&rules=sgd,natural_gradient
     &r0.lr=0.1&r1.damping=0.01&steps=100&seed=3

Decoding validates every value with its :class:`~explorer.options.Option`; a bad or
stale parameter is dropped with a warning instead of breaking the page. No Streamlit
import here: the codec is pure and tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from explorer.curvature.registry import CURVATURES
from explorer.optimizers.rules import RULES
from explorer.options import Option
from explorer.plugins import visible
from explorer.problems.spec import PROBLEMS
from explorer.runs.config import validate_label
from explorer.runs.experiment import Experiment, RuleChoice
from explorer.runs.settings import settings_options

#: Run settings the app exposes (the others keep their RunConfig defaults).
APP_RUN_OPTIONS = (
    "steps",
    "seed",
    "batch_size",
    "curvature_batch_size",
    "averaging",
    "average_start",
    "average_decay",
    "record_steps",
    "record_log",
    "device",
    "dtype",
)
MAX_RULES = 8


def _option(schema: tuple[Option, ...], name: str) -> Option | None:
    return next((o for o in schema if o.name == name), None)


def format_value(value: Any) -> str:
    """An option value as URL text (tuples as comma lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _non_default(
    schema: tuple[Option, ...], values: Mapping[str, Any]
) -> dict[str, str]:
    out = {}
    for name, value in values.items():
        option = _option(schema, name)
        if option is not None and value is not None and value != option.default:
            out[name] = format_value(value)
        elif option is not None and value is None and option.default is not None:
            out[name] = "none"
    return out


def to_query(experiment: Experiment) -> dict[str, str]:
    """Query parameters describing ``experiment`` (defaults omitted)."""
    query = {"problem": experiment.problem}
    schema = PROBLEMS[experiment.problem].options
    for name, text in _non_default(schema, experiment.problem_options).items():
        query[f"p.{name}"] = text
    query["rules"] = ",".join(choice.rule for choice in experiment.rules)
    for index, choice in enumerate(experiment.rules):
        rule_schema = RULES[choice.rule].schema(choice.options)
        for name, text in _non_default(rule_schema, choice.options).items():
            query[f"r{index}.{name}"] = text
        if choice.label:
            query[f"r{index}.label"] = choice.label
    run_schema = settings_options(experiment.problem)
    for name, text in _non_default(run_schema, experiment.run_options).items():
        query[name] = text
    return query


def _decode(option: Option, text: str, warnings: list[str], where: str) -> Any:
    value: Any = None if text.lower() == "none" else text
    try:
        return option.validate(value, where=where)
    except ValueError as error:
        warnings.append(f"ignored {where} {option.name}={text!r}: {error}")
        return option.default


def from_query(
    query: Mapping[str, str],
    default: Experiment,
    *,
    page_keys: tuple[str, ...] = (),
    owner: str | None = None,
) -> tuple[Experiment, list[str]]:
    """The experiment a link describes, falling back to ``default`` piece by piece.

    Args:
        query: The link's parameters.
        default: What a parameter that is absent or invalid falls back to.
        page_keys: Parameters a page reads itself (its view state: ``v.…``, a
            preset key); every other parameter this codec does not know is
            reported.
        owner: The session reading the link. A problem or curvature that another
            session uploaded is unknown to it, as in its lists: a hand-typed link
            must not run someone else's code (:func:`explorer.plugins.visible`).

    Returns:
        (experiment, warnings): every ignored parameter gets one warning line.
    """
    warnings: list[str] = []
    problem = query.get("problem", default.problem)
    if problem not in PROBLEMS or not _ours(PROBLEMS[problem], owner):
        warnings.append(f"ignored unknown problem {problem!r}")
        problem = default.problem
    problem_options = {} if "problem" in query else dict(default.problem_options)
    schema = PROBLEMS[problem].options
    for key, text in query.items():
        if key.startswith("p."):
            option = _option(schema, key[2:])
            if option is None:
                warnings.append(
                    f"ignored unknown option {key!r} of problem {problem!r}"
                )
                continue
            problem_options[option.name] = _decode(option, text, warnings, "problem")
    rules = list(default.rules)
    if "rules" in query:
        rules = []
        for index, key in enumerate(k for k in query["rules"].split(",") if k):
            if key not in RULES:
                warnings.append(f"ignored unknown rule {key!r}")
                continue
            if len(rules) >= MAX_RULES:
                warnings.append(f"kept the first {MAX_RULES} rules")
                break
            rules.append(_decode_rule(key, index, query, warnings, owner))
    warnings.extend(_orphan_rule_parameters(query))
    run_options = {} if "problem" in query else dict(default.run_options)
    for option in settings_options(problem):
        if option.name in query and option.name in APP_RUN_OPTIONS:
            run_options[option.name] = _decode(
                option, query[option.name], warnings, "run"
            )
    warnings.extend(_device_warning(run_options))
    for key in query:
        if not _known(key, page_keys):
            warnings.append(f"ignored unknown parameter {key!r}")
    return Experiment(problem, problem_options, tuple(rules), run_options), warnings


def _ours(spec: Any, owner: str | None) -> bool:
    """Whether a registered problem or curvature is listed for ``owner``."""
    return visible(getattr(spec, "source", ""), owner)


def _known(key: str, page_keys: tuple[str, ...]) -> bool:
    return (
        key in ("problem", "rules")
        or key in APP_RUN_OPTIONS
        or key in page_keys
        or key.startswith(("p.", "v."))
        or _RULE_KEY.match(key) is not None
    )


_RULE_KEY = re.compile(r"r(\d+)\.(.+)")


def _orphan_rule_parameters(query: Mapping[str, str]) -> list[str]:
    """A warning for each ``rN.option`` with no N-th entry in ``rules=``."""
    count = len([k for k in query.get("rules", "").split(",") if k])
    out = []
    for key in query:
        match = _RULE_KEY.match(key)
        if match and int(match.group(1)) >= count:
            where = (
                "there is no rules= parameter"
                if "rules" not in query
                else (f"rules= lists {count} optimizer(s)")
            )
            out.append(f"ignored {key}={query[key]!r}: {where}")
    return out


def _device_warning(run_options: dict[str, Any]) -> list[str]:
    """Drops a CUDA device a CPU-only machine cannot honour, with a warning."""
    device = run_options.get("device")
    if (
        isinstance(device, str)
        and device.startswith("cuda")
        and not torch.cuda.is_available()
    ):
        run_options.pop("device")
        return [
            f"ignored run device={device!r}: CUDA is not available here; runs "
            "use the CPU"
        ]
    return []


def _decode_rule(
    key: str, index: int, query: Mapping[str, str], warnings, owner: str | None
) -> RuleChoice:
    prefix = f"r{index}."
    given = {k[len(prefix) :]: v for k, v in query.items() if k.startswith(prefix)}
    label = given.pop("label", None)
    try:
        validate_label(label)
    except ValueError as error:
        warnings.append(f"ignored {prefix}label: {error}")
        label = None
    spec = RULES[key]
    options: dict[str, Any] = {}
    curvature_option = _option(spec.options, "curvature")
    if "curvature" in given and curvature_option is not None:
        # decides which further options exist
        text = given.pop("curvature")
        if text in CURVATURES and not _ours(CURVATURES[text], owner):
            warnings.append(f"ignored rule {key} curvature={text!r}: unknown curvature")
        else:
            options["curvature"] = _decode(
                curvature_option, text, warnings, f"rule {key}"
            )
    try:
        schema = spec.schema(options)
    except ValueError as error:
        warnings.append(f"ignored rule {key} curvature: {error}")
        options.pop("curvature", None)
        schema = spec.schema(options)
    for name, text in given.items():
        option = _option(schema, name)
        if option is None:
            warnings.append(f"ignored unknown option {prefix}{name} of rule {key!r}")
            continue
        options[name] = _decode(option, text, warnings, f"rule {key}")
    return RuleChoice(key, options, label)
