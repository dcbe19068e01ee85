"""Pass/fail per declared property, from the measurements at every point.

``coverage`` and ``unbiased`` are documented on their functions (and in
:mod:`explorer.check.settings`).

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
from explorer.curvature.tags import Tags


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
    draws = point.draws
    if failed and sampled:
        detail = (
            f"tr C is {ratio:.4g} × tr R in the mean of {draws} draw(s) of a sampled "
            "estimate: a ratio that stays off over many draws is a scale bug"
        )
    elif failed:
        detail = (
            f"tr C is {ratio:.4g} × tr R: a scale bug (a forgotten 1/N, a sum over "
            "outputs, a factor 2) or a crude approximation"
        )
    else:
        detail = f"worst ratio {ratio:.4g}"
        if sampled and draws > 1:
            detail += f" (mean of {draws} draws)"
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


def _names_by_problem(found: dict[str, list[str]], verb: str) -> str:
    """``"0.bias, 2.bias are not covered (moons_mlp, digits_mlp)"``: problems with
    the same names grouped.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for problem, names in found.items():
        groups.setdefault(tuple(names), []).append(problem)
    parts = []
    for names, problems in groups.items():
        be = "is" if len(names) == 1 else "are"
        parts.append(f"{', '.join(names)} {be} {verb} ({', '.join(problems)})")
    return "; ".join(parts)


def coverage(points: Sequence[PointResult]) -> Verdict:
    """Parameters whose rows and columns C leaves zero while R does not.

    Declared in ``op.coverage()`` as ``none``: honest, passes with the names listed.
    Not declared: fails, naming them (a silently dropped bias looks like a matrix
    that is merely a bit worse).
    """
    title = "Coverage: parameter tensors with zero rows and columns in C, not in R"
    why = "always (dense points)"
    judged = [
        p for p in points if p.method == "dense" and not math.isnan(p.reference_trace)
    ]
    if not judged:
        return Verdict(
            "coverage",
            title,
            SKIPPED,
            why,
            threshold="= 0 undeclared",
            detail="no dense point with a reference",
        )
    silent: dict[str, list[str]] = {}
    declared: dict[str, list[str]] = {}
    worst, where = 0, None
    for point in judged:
        kinds = point.coverage or {}
        missing = [n for n in point.uncovered if kinds.get(n) != "none"]
        honest = [n for n in point.uncovered if kinds.get(n) == "none"]
        for name in missing:
            if name not in silent.setdefault(point.problem, []):
                silent[point.problem].append(name)
        for name in honest:
            if name not in declared.setdefault(point.problem, []):
                declared[point.problem].append(name)
        if len(missing) > worst:
            worst, where = len(missing), point
    declared = {k: v for k, v in declared.items() if v}
    silent = {k: v for k, v in silent.items() if v}
    note = f"declared: {_names_by_problem(declared, 'not covered')}" if declared else ""
    if silent:
        detail = (
            f"{_names_by_problem(silent, 'not covered')}: zero rows and columns in "
            "C, not declared in op.coverage()"
        )
        return Verdict(
            "coverage",
            title,
            FAIL,
            why,
            float(worst),
            "= 0 undeclared",
            _where(where),
            f"{detail}; {note}" if note else detail,
        )
    return Verdict(
        "coverage",
        title,
        PASS,
        why,
        0.0,
        "= 0 undeclared",
        detail=note or "every parameter tensor is covered",
    )


def unbiased(
    points: Sequence[PointResult], tags: Tags, role: str, settings: CheckSettings
) -> Verdict:
    """A sampled estimator's k-draw mean converges like k^(-1/2) (see
    :mod:`explorer.check.sampling`).

    A diagonal or block-diagonal C is held against R restricted to its structure
    (diag R, R's blocks: :func:`~explorer.check.point.structured_reference`), which
    an unbiased estimator of that structure converges to. A Kronecker-factored one
    (K-FAC with sampled targets) has a mean that is a product of averaged factors,
    a structured approximation of R whose bias is structural, not a finding: it is
    skipped (its numbers still shown).
    """
    c, tol = settings.unbiased_slack, settings.exact_tol
    title = (
        "Unbiased: ‖mean of k draws − R‖ / ‖R‖ shrinks like 1/√k (R on C's structure)"
    )
    threshold = f"e(k) ≤ max({tol:g}, {c:g} · e(1)/√k)"
    measured = [p for p in points if p.draws > 1 and not math.isnan(p.mean_error)]

    def ratio(p: PointResult) -> float:
        bound = max(tol, c * p.draw_error / math.sqrt(p.draws))
        return p.mean_error / bound if bound > 0 else math.inf

    _, point = _worst(measured, ratio, low=False)
    value = point.mean_error if point else math.nan
    where = _where(point) if point else ""
    if point:
        detail = (
            f"e({point.draws}) = {point.mean_error:.3g}, e(1) = {point.draw_error:.3g}, "
            f"one-draw variance {point.draw_variance:.3g} (relative to ‖R‖²)"
        )
    else:
        detail = ""
    if not tags.sampled:
        why = "not sampled"
    elif tags.kronecker:
        why = (
            "sampled, but Kronecker-factored: its mean is a product of averaged "
            "factors, a structured approximation of R, so its bias is structural"
        )
    elif role == "default":
        why = "sampled, but no reference declared"
    elif settings.sampled_draws < 2:
        why = "sampled_draws = 1"
    elif point is None:
        why = "no dense point measured"
    else:
        why = ""
    if why:
        return Verdict("unbiased", title, SKIPPED, why, value, threshold, where, detail)
    failed = ratio(point) > 1
    detail += (
        ": the mean stays away from R as draws accumulate, a biased estimator"
        if failed
        else ""
    )
    return Verdict(
        "unbiased",
        title,
        FAIL if failed else PASS,
        "declared sampled",
        value,
        threshold,
        where,
        detail,
    )


def verdicts(
    points: Sequence[PointResult],
    spec: CurvatureSpec,
    reference: str,
    role: str,
    settings: CheckSettings,
    tags: Tags | None = None,
) -> tuple[Verdict, ...]:
    """All verdicts of one curvature from its points on every problem (``tags``:
    its declared tags with the checked options, default the spec's).
    """
    tags = tags or spec.tags()
    measured = [p for p in points if p.ok]
    return (
        well_formed(points),
        symmetric(measured, settings),
        positive_semidefinite(measured, spec, settings),
        scale(measured, reference, role, settings, tags.sampled),
        exactness(measured, spec, reference, role, settings),
        coverage(measured),
        unbiased(measured, tags, role, settings),
    )
