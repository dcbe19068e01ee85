"""Downloads: histories as CSV and JSON, and the experiment as a Python script.

Pure functions (no Streamlit), so the exported script is tested by running it and
comparing its numbers with the app's.
"""

from __future__ import annotations

import pprint
from collections.abc import Mapping

import pandas as pd

from explorer.runs import Experiment
from explorer.runs.history import History, histories_to_json


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


def _literal(value) -> str:
    return pprint.pformat(value, width=80, sort_dicts=False)


def python_script(experiment: Experiment) -> str:
    """A stand-alone script reproducing the experiment through the public API."""
    runs = []
    for config in experiment.run_configs():
        entry = {"rule": config.rule}
        if config.rule_options:
            entry["rule_options"] = config.rule_options.to_dict()
        if config.label:
            entry["label"] = config.label
        runs.append(entry)
    shared = {
        key: (tuple(value) if isinstance(value, list) else value)
        for key, value in dict(experiment.run_options).items()
    }
    problem_options = {
        key: (tuple(value) if isinstance(value, list) else value)
        for key, value in dict(experiment.problem_options).items()
    }
    lines = [
        '"""Reproduces a Curvature Explorer comparison (exported from the app)."""',
        "",
        "import explorer as ex",
        "",
        f"runs = {_literal(runs)}",
        "histories = ex.compare(",
        f"    {experiment.problem!r},",
        "    runs,",
        f"    problem_options={_literal(problem_options)},",
    ]
    lines += [f"    {key}={value!r}," for key, value in shared.items()]
    lines += [
        ")",
        "for label, history in histories.items():",
        "    frame = history.to_frame()",
        '    print(f"{label:>24s}  {history.status:>10s}  final loss {frame.loss.iloc[-1]:.6g}")',
        "",
        "# history.to_frame() has one row per step; ex.save_histories(histories, 'runs.json')",
        "# writes configs and histories; explorer.plots builds the app's figures.",
        "",
    ]
    return "\n".join(lines)
