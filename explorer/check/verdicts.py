"""Pass/fail per declared property, from the measurements at every point.

Each verdict takes the worst value over every point of every problem, so one bad
point fails the property, and names where it occurred. A property that is not
declared is ``"skipped"`` with the reason, its measured value still shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from explorer.check.results import FAIL, PASS, SKIPPED, PointResult, Verdict
from explorer.check.settings import CheckSettings
from explorer.curvature.registry import CurvatureSpec


def _where(point: PointResult) -> str:
    return f"{point.problem}, step {point.step}"


def _worst(
    points: Sequence[PointResult], value: Callable[[PointResult], float], low: bool
) -> tuple[float, PointResult | None]:
    """The smallest (``low``) or largest finite value and its point."""
    best: tuple[float, PointResult | None] = (math.nan, None)
    for point in points:
        x = value(point)
        if math.isnan(x):
            continue
        if best[1] is None or (x < best[0] if low else x > best[0]):
            best = (x, point)
    return best


def _log_distance(point: PointResult) -> float:
    """|log(tr C / tr R)| (inf for a ratio ≤ 0, NaN when tr R ≤ 0)."""
    ratio = point.trace_ratio
    if math.isnan(ratio):
        return math.nan
    return abs(math.log(ratio)) if ratio > 0 else math.inf


def well_formed(points: Sequence[PointResult]) -> Verdict:
    errors = [p for p in points if not p.ok]
    title = "Well-formed: points where it raises, has the wrong shape or NaN"
    if not errors:
        return Verdict(
            "well_formed",
            title,
            PASS,
            "always",
            0.0,
            "= 0",
            detail=f"{len(points)} point(s) measured",
        )
    first = errors[0]
    return Verdict(
        "well_formed",
        title,
        FAIL,
        "always",
        float(len(errors)),
        "= 0",
        _where(first),
        f"{len(errors)} of {len(points)} point(s) failed; first: {first.error}",
    )


def symmetric(points: Sequence[PointResult], settings: CheckSettings) -> Verdict:
    title = "Symmetric: ‖C − Cᵀ‖ / ‖C‖ (Frobenius)"
    threshold = f"≤ {settings.symmetry_tol:g}"
    value, point = _worst(points, lambda p: p.asymmetry, low=False)
    if point is None:
        return Verdict(
            "symmetric",
            title,
            SKIPPED,
            "always",
            threshold=threshold,
            detail="no point could be measured",
        )
    failed = value > settings.symmetry_tol
    detail = (
        "not symmetric: conjugate gradients, Cholesky and eigenvalues assume C = Cᵀ"
        if failed
        else "symmetric to rounding"
    )
    return Verdict(
        "symmetric",
        title,
        FAIL if failed else PASS,
        "always",
        value,
        threshold,
        _where(point),
        detail,
    )


def positive_semidefinite(
    points: Sequence[PointResult], spec: CurvatureSpec, settings: CheckSettings
) -> Verdict:
    title = "Positive semi-definite: min λ(½(C + Cᵀ)) / max|λ|"
    threshold = f"≥ −{settings.psd_tol:g}"
    value, point = _worst(points, lambda p: p.relative_min_eigenvalue, low=True)
    if not spec.psd:
        return Verdict(
            "psd",
            title,
            SKIPPED,
            "not declared (psd=False)",
            value,
            threshold,
            _where(point) if point else "",
            "informative: the smallest eigenvalue",
        )
    if point is None:
        return Verdict(
            "psd",
            title,
            SKIPPED,
            "declared psd=True",
            threshold=threshold,
            detail="no point could be measured",
        )
    failed = value < -settings.psd_tol
    detail = (
        f"min λ = {point.min_eigenvalue:.4g} < 0: a direction of negative curvature"
        if failed
        else f"min λ = {point.min_eigenvalue:.4g}"
    )
    return Verdict(
        "psd",
        title,
        FAIL if failed else PASS,
        "declared psd=True",
        value,
        threshold,
        _where(point),
        detail,
    )


def scale(
    points: Sequence[PointResult],
    reference: str,
    role: str,
    settings: CheckSettings,
    sampled: bool = False,
) -> Verdict:
    title = f"Scale: tr C / tr R with R = {reference}"
    s = settings.scale_tol
    threshold = f"in [{1 / s:.3g}, {s:g}]"
    _, point = _worst(points, _log_distance, low=False)
    ratio = point.trace_ratio if point is not None else math.nan
    if role == "default":
        return Verdict(
            "scale",
            title,
            SKIPPED,
            f"no reference declared; {reference!r} shown for information",
            ratio,
            threshold,
            _where(point) if point else "",
            "declare reference=... (or pass one) to judge the scale",
        )
    why = f"reference {reference!r} {role}"
    if point is None:
        return Verdict(
            "scale",
            title,
            SKIPPED,
            why,
            threshold=threshold,
            detail="tr R ≤ 0 or nothing measured at every point",
        )
    failed = not (1 / s <= ratio <= s)
    if failed and sampled:
        detail = (
            f"tr C is {ratio:.4g} × tr R in one random draw. C is a sampled "
            "estimate: on average it equals R, but each draw differs, most where the "
            "model is confident (a sampled label rarely lands on a rare class). "
            "More samples bring a draw closer; only a ratio that stays off over "
            "many draws is a scale bug"
        )
    elif failed:
        detail = (
            f"tr C is {ratio:.4g} × tr R: a scale bug (a forgotten 1/N, a sum over "
            "outputs, a factor 2) or a crude approximation"
        )
    else:
        detail = f"worst ratio {ratio:.4g}"
    return Verdict(
        "scale",
        title,
        FAIL if failed else PASS,
        why,
        ratio,
        threshold,
        _where(point),
        detail,
    )


def exactness(
    points: Sequence[PointResult],
    spec: CurvatureSpec,
    reference: str,
    role: str,
    settings: CheckSettings,
) -> Verdict:
    title = f"Exact: ‖C − R‖ / ‖R‖ (Frobenius) with R = {reference}"
    threshold = f"≤ {settings.exact_tol:g}"
    value, point = _worst(
        points,
        lambda p: p.quality.relative_frobenius_error if p.quality else math.nan,
        low=False,
    )
    where = _where(point) if point else ""
    if not spec.exact:
        return Verdict(
            "exact",
            title,
            SKIPPED,
            "not declared (exact=False)",
            value,
            threshold,
            where,
            "informative: the relative Frobenius error",
        )
    if role == "default":
        return Verdict(
            "exact",
            title,
            SKIPPED,
            "declared exact=True, but no reference",
            value,
            threshold,
            where,
            "declare reference=... to compare",
        )
    if point is None:
        return Verdict(
            "exact",
            title,
            SKIPPED,
            "declared exact=True",
            threshold=threshold,
            detail="nothing measured",
        )
    failed = value > settings.exact_tol
    return Verdict(
        "exact",
        title,
        FAIL if failed else PASS,
        "declared exact=True",
        value,
        threshold,
        where,
        "differs from the reference" if failed else "equal to rounding",
    )


def verdicts(
    points: Sequence[PointResult],
    spec: CurvatureSpec,
    reference: str,
    role: str,
    settings: CheckSettings,
) -> tuple[Verdict, ...]:
    """All verdicts of one curvature from its points on every problem."""
    measured = [p for p in points if p.ok]
    return (
        well_formed(points),
        symmetric(measured, settings),
        positive_semidefinite(measured, spec, settings),
        scale(measured, reference, role, settings, spec.tags().sampled),
        exactness(measured, spec, reference, role, settings),
    )
