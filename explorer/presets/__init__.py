"""The paper tour: every claim of THEORY.md §5 as a preset with a live numeric check.

::

    from explorer.presets import PRESETS, run_check, run_preset
    result = run_check("c1_fisher_equals_ggn", size="small")
    result.passed, result.badge   # True, 'max |F − G| / max |G| (…) = 6.38e-16 ≤ 1e-12 ✓ · …'
    shown = run_preset("c1_fisher_equals_ggn")   # check + figures + experiments

The tour page and ``tests/test_claims.py`` call the same functions, so a claim the
page shows is a claim the test suite checks.
"""

from __future__ import annotations

import time

from explorer.presets.base import (
    SIZES,
    CheckResult,
    Evidence,
    Measurement,
    Preset,
    PresetResult,
    Setup,
    format_number,
)
from explorer.presets.registry import CLAIMS, PRESETS


def _evaluate(key: str, size: str, figures: bool) -> tuple[Evidence, Setup, float]:
    preset = PRESETS[key]
    setup = preset.setup(size)
    start = time.perf_counter()
    evidence = preset.compute(setup, figures)
    return evidence, setup, time.perf_counter() - start


def run_check(key: str, size: str = "small") -> CheckResult:
    """Runs preset ``key``'s numeric check at ``size`` (no figures).

    Raises:
        ValueError: An unknown key or size.
    """
    evidence, _, seconds = _evaluate(key, size, figures=False)
    return CheckResult(key, size, tuple(evidence.measurements), seconds)


def run_preset(key: str, size: str = "full") -> PresetResult:
    """Runs preset ``key`` at ``size``: its check, its figures and its experiments.

    Raises:
        ValueError: An unknown key or size, or a computation that did not produce
            a figure the preset lists.
    """
    evidence, setup, seconds = _evaluate(key, size, figures=True)
    preset = PRESETS[key]
    missing = [name for name in preset.figures if name not in evidence.figures]
    if missing:
        raise ValueError(f"preset {key!r} did not produce the figures {missing}")
    experiments = (
        setup.experiments if evidence.experiments is None else evidence.experiments
    )
    return PresetResult(
        check=CheckResult(key, size, tuple(evidence.measurements), seconds),
        figures={name: evidence.figures[name] for name in preset.figures},
        experiments=dict(experiments),
        notes=tuple(evidence.notes),
    )


__all__ = [
    "CLAIMS",
    "PRESETS",
    "SIZES",
    "CheckResult",
    "Evidence",
    "Measurement",
    "Preset",
    "PresetResult",
    "Setup",
    "format_number",
    "run_check",
    "run_preset",
]
