"""Downloads: histories as CSV and JSON, the experiment as a Python script, and the
comparison as one self-contained HTML report.

Pure functions (no Streamlit), so the exported script is tested by running it outside
the repository and comparing its numbers with the app's, and the report by parsing
its header and decoding its link back to the experiment.
"""

from __future__ import annotations

import datetime as dt
import functools
import pprint
import string
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from explorer import __version__
from explorer.optimizers.rules import RULES
from explorer.options import Option
from explorer.plots.html import figures_to_html
from explorer.problems.spec import PROBLEMS
from explorer.runs import Experiment, RunConfig
from explorer.runs.history import History, histories_to_json
from explorer.server.engine import source_fingerprint
from explorer.ui.urlstate import APP_RUN_OPTIONS, format_value, to_query

#: How a user gets the package the exported script imports (one line each).
INSTALL = (
    "pip install -e /path/to/curvature-explorer (a checkout of the repository), "
    "or pip install curvature_explorer-{version}-py3-none-any.whl (its wheel)"
)


def histories_csv(histories: Mapping[str, History]) -> str:
    """All runs' metrics in one long table with a ``run`` column."""
    frames = []
    for label, history in histories.items():
        frame = history.to_frame()
        frame.insert(0, "run", label)
        frame.insert(1, "rule", history.rule)
        frame.insert(2, "status", history.status)
        frames.append(frame)
    if not frames:
        return ""
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def histories_json(histories: Mapping[str, History]) -> str:
    """Configs and histories (the ``python -m explorer compare --out`` format)."""
    return histories_to_json(histories, indent=1)


# ------------------------------------------------------------ what it came from
@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    return source_fingerprint()


def exported_from() -> dict[str, str]:
    """``{"version": explorer.__version__, "source": <library source hash>}``: the
    code an export was made with (the hash is the one the result cache keys on,
    without plugins).
    """
    return {"version": __version__, "source": _fingerprint()}


# ---------------------------------------------------------------- the script
def _literal(value: Any) -> str:
    return pprint.pformat(value, width=80, sort_dicts=False)


def _tuples(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def script_runs(experiment: Experiment) -> list[dict[str, Any]]:
    """The ``runs`` list the script passes to ``ex.compare`` (rule, options, label)."""
    runs = []
    for config in experiment.run_configs():
        entry: dict[str, Any] = {"rule": config.rule}
        if config.rule_options:
            entry["rule_options"] = config.rule_options.to_dict()
        if config.label:
            entry["label"] = config.label
        runs.append(entry)
    return runs


def script_settings(experiment: Experiment) -> dict[str, Any]:
    """The loop settings the app ran with that ``ex.compare`` would not pick by
    itself (it starts from the problem's defaults), so the script runs exactly the
    app's settings whatever the defaults.
    """
    ran = experiment.settings.to_dict()
    default = RunConfig(experiment.problem).settings.to_dict()
    return _tuples({k: v for k, v in ran.items() if v != default[k]})


SCRIPT = string.Template('''\
"""Reproduces a Curvature Explorer comparison (exported from the app).

Problem: $title.
Exported from explorer $version (source fingerprint $source).

Run it from any folder once the package is installed:

    pip install -e /path/to/curvature-explorer        # a checkout of the repository
    pip install curvature_explorer-$version-py3-none-any.whl   # or its wheel
    python reproduce.py

Torch runs on one thread, as on the app's compute workers (OMP_NUM_THREADS=1 and
torch.set_num_threads(1)), so the final losses match the app's table.
history.to_frame() has one row per step; ex.save_histories(histories, "runs.json")
writes configs and histories; explorer.plots builds the app's figures.
"""

import os
import sys

# One thread, set before torch is imported, as on the app's workers.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

EXPORTED_FROM = $exported_from
INSTALL = $install

try:
    import explorer as ex
except ModuleNotFoundError as error:
    if error.name == "explorer":
        sys.exit(f"reproduce.py needs the explorer package; install it: {INSTALL}")
    sys.exit(f"reproduce.py: explorer cannot be imported ({error}); reinstall: {INSTALL}")

import torch

torch.set_num_threads(1)


def running_source():
    try:
        from explorer.server.engine import source_fingerprint
    except ImportError:
        return "unknown"
    return source_fingerprint()


running = {"version": ex.__version__, "source": running_source()}
if running != EXPORTED_FROM:
    print(f"note: exported from {EXPORTED_FROM}, running {running}; numbers may "
          "differ", file=sys.stderr)

runs = $runs
histories = ex.compare(
    $problem,
    runs,
    problem_options=$problem_options,$settings
)
for label, history in histories.items():
    loss = history.to_frame()["loss"].iloc[-1]
    print(f"{label:>24s}  {history.status:>10s}  final loss {loss:.17g}")
''')


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "/").replace('"""', "'''")


def python_script(experiment: Experiment) -> str:
    """A stand-alone ``reproduce.py``: runs the experiment through the public API on
    one thread, as the app's workers do, and prints each run's final loss (17
    significant digits). Runs from any folder once the package is installed; says
    how to install it when ``import explorer`` fails, and notes on stderr when the
    installed explorer differs from the one it was exported from.
    """
    origin = exported_from()
    settings = "".join(
        f"\n    {key}={value!r}," for key, value in script_settings(experiment).items()
    )
    return SCRIPT.substitute(
        title=_docstring_safe(problem_text(experiment)),
        version=origin["version"],
        source=origin["source"],
        exported_from=repr(origin),
        install=repr(INSTALL.format(version=origin["version"])),
        runs=_literal(script_runs(experiment)),
        problem=repr(experiment.problem),
        problem_options=_literal(_tuples(dict(experiment.problem_options))),
        settings=settings,
    )


# ---------------------------------------------------------------- the report
def experiment_link(experiment: Experiment, base_url: str = "./") -> str:
    """The app's URL that restores ``experiment``: ``base_url`` with the query of
    :func:`~explorer.ui.urlstate.to_query` (its own query and fragment replaced).

    Raises:
        ValueError: ``base_url`` is not relative, http or https.
    """
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("", "http", "https"):
        raise ValueError(f"base URL {base_url!r} must be relative, http or https")
    query = urllib.parse.urlencode(to_query(experiment), safe=",")
    return urllib.parse.urlunsplit(parts._replace(query=query, fragment=""))


def problem_text(experiment: Experiment) -> str:
    """The problem's label and key: ``"Digits 8×8 (MLP), key digits_mlp"``."""
    return f"{PROBLEMS[experiment.problem].label}, key {experiment.problem}"


def _option_text(name: str, value: Any) -> str:
    return f"{name}={'none' if value is None else format_value(value)}"


def _non_default(schema: tuple[Option, ...], values: Mapping[str, Any]) -> str:
    defaults = {option.name: option.default for option in schema}
    changed = [
        _option_text(name, value)
        for name, value in values.items()
        if name not in defaults or value != defaults[name]
    ]
    return ", ".join(changed) or "defaults"


def rule_lines(experiment: Experiment) -> list[str]:
    """One line per optimizer: its label (when set), rule name and key, and its
    non-default options: ``"SGD (sgd); lr=0.5"``.
    """
    lines = []
    for choice, config in zip(experiment.rules, experiment.run_configs()):
        spec = RULES[choice.rule]
        line = f"{spec.label} ({choice.rule}); "
        line += _non_default(spec.schema(choice.options), choice.options)
        lines.append(f"{config.label}: {line}" if config.label else line)
    return lines


def settings_text(experiment: Experiment) -> str:
    """The run settings the app exposes as ``name=value`` pairs (the averaging
    parameters only when averaging is on).
    """
    settings = experiment.settings
    names = [
        name
        for name in APP_RUN_OPTIONS
        if settings.averaging != "none" or not name.startswith("average_")
    ]
    return ", ".join(_option_text(name, getattr(settings, name)) for name in names)


def experiment_details(
    experiment: Experiment, exported: dt.datetime | None = None
) -> list[tuple[str, str | list[str]]]:
    """``(heading, text or lines)`` describing the experiment and the export: the
    problem, its non-default options, the optimizers, the run settings, the date
    and the explorer version.
    """
    spec = PROBLEMS[experiment.problem]
    when = exported or dt.datetime.now(dt.UTC)
    origin = exported_from()
    return [
        ("Problem", problem_text(experiment)),
        ("Problem options", _non_default(spec.options, experiment.problem_options)),
        ("Optimizers", rule_lines(experiment)),
        ("Run settings", settings_text(experiment)),
        ("Exported", when.strftime("%Y-%m-%d %H:%M %Z").strip()),
        (
            "Explorer",
            f"version {origin['version']}, source fingerprint {origin['source']}",
        ),
    ]


def comparison_html(
    experiment: Experiment | None,
    figures: Mapping[str, go.Figure],
    *,
    base_url: str = "./",
    title: str = "Curvature Explorer comparison",
    exported: dt.datetime | None = None,
) -> str:
    """The Compare page's HTML download: every figure, under a header naming the
    problem, options, optimizers, settings, date and version, with a link back to
    the app that restores the experiment (see :func:`experiment_link`). Without an
    experiment, only the figures.
    """
    if experiment is None:
        return figures_to_html(figures, title=title)
    label = PROBLEMS[experiment.problem].label
    return figures_to_html(
        figures,
        title=f"{title}: {label}",
        details=experiment_details(experiment, exported),
        links=[
            ("Open this experiment in the app", experiment_link(experiment, base_url))
        ],
    )
