"""The paper tour: every claim of THEORY.md §5 as a preset with a live numeric check.

::

    from explorer.presets import PRESETS, run_check, run_preset
    result = run_check("c1_fisher_equals_ggn", size="small")
    result.passed, result.badge   # True, 'max |F − G| / max |G| (…) = 6.38e-16 ≤ 1e-12 ✓ · …'
    shown = run_preset("c1_fisher_equals_ggn")   # measure, then draw the figures

The tour page and ``tests/test_claims.py`` call the same functions, so a claim the
page shows is a claim the test suite checks.
"""

from __future__ import annotations

import time

from explorer.presets.base import (
    SIZES,
    CheckResult,
    Comparison,
    Measured,
    Measurement,
    Preset,
    PresetResult,
    Setup,
    format_number,
)
from explorer.presets.registry import CLAIMS, PRESETS


def _measure(key: str, size: str) -> tuple[Preset, Setup, Measured, CheckResult]:
    preset = PRESETS[key]
    setup = preset.setup(size)
    start = time.perf_counter()
    measured = preset.measure(setup)
    seconds = time.perf_counter() - start
    check = CheckResult(key, size, tuple(measured.measurements), seconds)
    return preset, setup, measured, check


def run_check(key: str, size: str = "small") -> CheckResult:
    """Runs preset ``key``'s numeric check at ``size`` (``measure`` only).

    Raises:
        ValueError: An unknown key or size.
    """
    return _measure(key, size)[3]


def run_preset(key: str, size: str = "full") -> PresetResult:
    """Runs preset ``key`` at ``size``: its check, its figures and its experiments.

    Raises:
        ValueError: An unknown key or size, or a ``draw`` that did not produce
            a figure the preset lists.
    """
    preset, setup, measured, check = _measure(key, size)
    figures = preset.draw(setup, measured)
    missing = [name for name in preset.figures if name not in figures]
    if missing:
        raise ValueError(f"preset {key!r} did not produce the figures {missing}")
    experiments = (
        setup.experiments if measured.experiments is None else measured.experiments
    )
    return PresetResult(
        check=check,
        figures={name: figures[name] for name in preset.figures},
        experiments=dict(experiments),
        notes=tuple(measured.notes),
    )


__all__ = [
    "CLAIMS",
    "PRESETS",
    "SIZES",
    "CheckResult",
    "Comparison",
    "Measured",
    "Measurement",
    "Preset",
    "PresetResult",
    "Setup",
    "format_number",
    "run_check",
    "run_preset",
]
