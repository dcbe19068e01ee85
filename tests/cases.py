"""The tiny test cases, generated from the problem registry.

Every registered problem declares its tiny configurations on its spec
(``ProblemSpec.test_cases``, see :class:`explorer.problems.TinyCase`); this module
turns them into the cases that drive the contract, reference and identity tests,
so a new problem or variant is tested without editing a table here.
``tests/problems/test_tiny_cases.py`` fails when a problem declares none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

import explorer as ex
from explorer.problems import TinyCase


@dataclass(frozen=True)
class Case:
    """A small problem, a point away from special values, and an optional batch.

    Attributes:
        name: The test id (unique across problems).
        key: The problem key.
        options: Its options.
        batch_size: Examples the curvature tests average over (the first ones;
            ``None``: all). ``TinyCase.curvature_batch_size``.
        perturbation: θ = θ₀ + perturbation·ε with ε ~ N(0, I), seed 7.
        run_batch_size: ``RunConfig.batch_size`` for runs (``TinyCase.batch_size``).
    """

    name: str
    key: str
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    perturbation: float = 0.3
    run_batch_size: int | None = None

    @classmethod
    def of(cls, key: str, tiny: TinyCase) -> Case:
        """The case for problem ``key``'s declared :class:`TinyCase`."""
        return cls(
            name=tiny.name,
            key=key,
            options=dict(tiny.options),
            batch_size=tiny.curvature_batch_size,
            perturbation=tiny.perturbation,
            run_batch_size=tiny.batch_size,
        )

    def build(self, dtype=torch.float64):
        problem = ex.problem(self.key, dtype=dtype, seed=1, **self.options)
        generator = torch.Generator().manual_seed(7)
        noise = torch.randn(
            problem.num_params, generator=generator, dtype=torch.float64
        )
        theta = problem.theta0 + self.perturbation * noise.to(dtype)
        batch = None
        if self.batch_size is not None:
            batch = problem.batch(torch.arange(self.batch_size))
        return problem, theta, batch

    def run_fields(self) -> dict[str, Any]:
        """``RunConfig`` fields besides problem and rule (the run batch size)."""
        return (
            {} if self.run_batch_size is None else {"batch_size": self.run_batch_size}
        )


#: Every declared case of every registered problem, in registry order.
CASES = [
    Case.of(key, tiny) for key, spec in ex.PROBLEMS.items() for tiny in spec.test_cases
]

#: problem key -> its tiny default (the first declared case); problems without
#: cases are absent here and fail ``test_every_problem_declares_a_tiny_case``.
TINY_DEFAULTS = {
    key: Case.of(key, spec.test_cases[0])
    for key, spec in ex.PROBLEMS.items()
    if spec.test_cases
}


def by_name(name: str) -> Case:
    """The case called ``name``."""
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(f"no tiny case {name!r}; declared: {', '.join(ids(CASES))}")


def _is_matching(case: Case) -> bool:
    """Whether the case's likelihood is matching (its outputs are natural
    parameters), read from the built problem's loss rather than a list of names."""
    return ex.problem(case.key, **case.options).loss.matching


MATCHING = [case for case in CASES if _is_matching(case)]
NON_MATCHING = [case for case in CASES if case not in MATCHING]


def ids(cases):
    return [case.name for case in cases]
