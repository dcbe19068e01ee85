"""Coverage: which parameters a structured curvature keeps, and how.

An approximation may keep a parameter's full rows and columns (an exact matrix),
only its layer block, a Kronecker-factored block, only its diagonal, or nothing at
all (K-FAC has no factors for a LayerNorm gain or an embedding table). Coverage
states this per named parameter so a report or a page can say "``ln.weight`` is not
covered" instead of silently comparing a matrix with zero rows.

The kinds, from most to least kept:

* ``full``: every entry of the parameter's rows and columns.
* ``block``: the entries inside its block (one block per module) only.
* ``kronecker``: its block, as a Kronecker product of two factors.
* ``diagonal``: the diagonal entries only.
* ``none``: rows and columns are zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from torch import Tensor

from explorer.problems.base import Problem

#: The coverage kinds, most to least kept.
COVERAGE_KINDS = ("full", "block", "kronecker", "diagonal", "none")

#: The kinds in words, for reports and the UI.
COVERAGE_WORDS = {
    "full": "all interactions kept",
    "block": "its layer block only",
    "kronecker": "a Kronecker-factored block",
    "diagonal": "its diagonal only",
    "none": "not covered (zero rows and columns)",
}


def parameter_spans(problem: Problem) -> dict[str, slice]:
    """Each named parameter's slice of the flat vector θ."""
    spans, offset = {}, 0
    for name, shape in zip(problem.param_names, problem.param_shapes, strict=True):
        size = math.prod(shape)
        spans[name] = slice(offset, offset + size)
        offset += size
    return spans


def coverage_from_spans(
    problem: Problem, covered: Iterable[slice], kind: str
) -> dict[str, str]:
    """``kind`` for every parameter that lies inside one of ``covered``, else ``none``.

    A parameter partly inside is reported by the worse kind (``none``): coverage
    claims all of a parameter or nothing.
    """
    check_kind(kind)
    spans = list(covered)
    out = {}
    for name, span in parameter_spans(problem).items():
        inside = sum(
            max(0, min(span.stop, block.stop) - max(span.start, block.start))
            for block in spans
        )
        out[name] = kind if inside == span.stop - span.start else "none"
    return out


def coverage_from_mask(problem: Problem, kept: Tensor, kind: str) -> dict[str, str]:
    """``kind`` for every parameter whose entries are all set in ``kept`` (P,) bool,
    else ``none``.
    """
    check_kind(kind)
    return {
        name: kind if bool(kept[span].all()) else "none"
        for name, span in parameter_spans(problem).items()
    }


def check_kind(kind: str) -> str:
    if kind not in COVERAGE_KINDS:
        raise ValueError(
            f"coverage kind {kind!r} is unknown; valid: {', '.join(COVERAGE_KINDS)}"
        )
    return kind


def uncovered(coverage: Mapping[str, str]) -> tuple[str, ...]:
    """The parameters whose coverage is ``none``, in order."""
    return tuple(name for name, kind in coverage.items() if kind == "none")


def describe_coverage(coverage: Mapping[str, str]) -> str:
    """One sentence: what is covered and what is not, naming the uncovered ones.

    Example:
        >>> describe_coverage({"0.weight": "kronecker", "1.weight": "none"})
        'covers 1 of 2 parameter tensors (kronecker); not covered: 1.weight'
    """
    missing = uncovered(coverage)
    kinds = sorted(
        {kind for kind in coverage.values() if kind != "none"},
        key=COVERAGE_KINDS.index,
    )
    covered = len(coverage) - len(missing)
    text = (
        f"covers {covered} of {len(coverage)} parameter tensors"
        f" ({', '.join(kinds) or 'none'})"
    )
    if missing:
        text += f"; not covered: {', '.join(missing)}"
    return text
