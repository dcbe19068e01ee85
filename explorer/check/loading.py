"""Load plugin files and pick the curvatures to check."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from explorer.check.battery import ProgressFn, run_battery
from explorer.check.results import CheckReport
from explorer.check.settings import CheckSettings
from explorer.curvature.registry import CURVATURES
from explorer.plugins import load_plugin_file, plugin_files


def load_targets(
    paths: Iterable[str | os.PathLike[str]], keys: Sequence[str] | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Loads plugin files (or folders of them); returns the keys to check.

    Args:
        paths: Plugin files or folders.
        keys: Check only these (plugin or built-in keys); default: every curvature
            the files registered.

    Returns:
        (keys, one ``{"source", "keys", "error"}`` record per file).

    Raises:
        ValueError: A file failed to import or register (the message carries its
            error), the files registered nothing, or a requested key is unknown.
    """
    records, registered = [], []
    for path in paths:
        for file in plugin_files(path):
            report = load_plugin_file(file)
            records.append(
                {
                    "source": report.source,
                    "keys": list(report.keys),
                    "error": report.error,
                }
            )
            if report.error:
                raise ValueError(
                    f"plugin {report.source} failed to load:\n{report.error}"
                )
            registered.extend(report.keys)
    if keys:
        for key in keys:
            CURVATURES[key]  # UnknownKeyError names the registered keys
        return list(keys), records
    if not registered:
        raise ValueError(
            "no curvature to check: the plugin files registered none (decorate a "
            "function or a CurvatureOperator subclass with @ex.register_curvature), "
            "or pass --curvature KEY"
        )
    return registered, records


def check_plugin(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    keys: Sequence[str] | None = None,
    settings: CheckSettings | None = None,
    progress: ProgressFn | None = None,
) -> CheckReport:
    """Loads plugin files and runs the battery on what they registered.

    Example::

        report = check_plugin("examples/plugins/wrong_fisher.py", ["fisher_sum"])
        report.result("fisher_sum").verdict("scale").status  # 'fail': N × too large
        write_report(report, "report.html")
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    chosen, records = load_targets(paths, keys)
    return run_battery(chosen, settings, progress, sources=records)
