"""The problem card beside the Problem selector: what the chosen problem is and
which curvatures the Curvature page can show on it, and how.

A person choosing among a two-weight toy, a 2,410-parameter MLP and a conv net
needs to know before opening the Curvature page whether it will show P × P
heatmaps, only matrix-free spectra, or refuse a curvature (K-FAC on a model
without linear layers). The card answers from the built problem: its model, P, N,
likelihood, and for every selectable curvature one of

* ``dense``: the dense P × P matrix fits both this server's limit on P for dense
  views (``EXPLORER_MAX_DENSE_P``, what the Curvature page checks) and the
  library's memory limit for a dense matrix
  (:data:`~explorer.curvature.base.DENSE_LIMIT_BYTES`): heatmaps and exact spectra;
* ``matrix_free``: too large for dense: products, Lanczos spectra and probes only;
* ``unavailable``: :meth:`~explorer.curvature.registry.CurvatureSpec.incompatibility`
  says why, with the remedy.

The facts are pure functions of a built problem (:func:`card_facts`), tested
without Streamlit; :func:`show_card` draws them. The problem comes from the views'
shared cache (:func:`explorer.ui.views.view_problem`), so the card costs no build
the Compare and Curvature pages do not already do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

import explorer as ex
from explorer.curvature.base import DENSE_LIMIT_BYTES
from explorer.curvature.registry import CURVATURES
from explorer.problems.spec import ProblemSpec
from explorer.runs import Experiment, RunConfig
from explorer.server.limits import (
    RunEstimate,
    estimate_config,
    format_bytes,
    format_seconds,
)
from explorer.ui import state
from explorer.ui.compare import problem_group
from explorer.ui.views import view_problem

#: The statuses, in the order the card lists them: (short name, what it means here).
STATUS_WORDS = {
    "dense": ("dense", "the P × P matrix itself: heatmaps, exact spectra"),
    "matrix_free": ("matrix-free only", "products; spectra by Lanczos, no heatmaps"),
    "unavailable": ("unavailable", "cannot be built on this problem"),
}


@dataclass(frozen=True)
class CurvatureStatus:
    """How the Curvature page can show one curvature on a problem.

    Attributes:
        key: The curvature's registry key.
        label: Its name.
        status: One of :data:`STATUS_WORDS`.
        reason: Why it is matrix-free only or unavailable ("" when dense).
    """

    key: str
    label: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class ProblemFacts:
    """What the card says about one built problem.

    Attributes:
        label: The problem's title (the registered label, in full: the selector
            may truncate it).
        group: Its group in the selector (``compare.problem_group``).
        architecture: The model in a few words.
        num_params: P.
        num_train: N, training examples (for a streaming problem: the fixed sample
            its curvature and loss are evaluated on).
        num_test: Held-out examples, or None without a test set.
        streaming: Fresh samples every step.
        likelihood: The loss with its scale stated (``loss.describe()``).
        curvatures: One status per selectable curvature, in registry order.
    """

    label: str
    group: str
    architecture: str
    num_params: int
    num_train: int
    num_test: int | None
    streaming: bool
    likelihood: str
    curvatures: tuple[CurvatureStatus, ...]

    def with_status(self, status: str) -> tuple[CurvatureStatus, ...]:
        """The curvatures of one status, in registry order."""
        return tuple(c for c in self.curvatures if c.status == status)


def dense_refusal(
    num_params: int,
    element_size: int,
    max_dense_p: int,
    max_bytes: int = DENSE_LIMIT_BYTES,
) -> str | None:
    """Why the Curvature page cannot show dense P × P matrices here, or None.

    Args:
        num_params: P.
        element_size: Bytes per entry (8 in float64, 4 in float32).
        max_dense_p: The server's limit on P for dense views
            (``Limits.max_dense_p``, ``EXPLORER_MAX_DENSE_P``).
        max_bytes: The library's limit on one dense matrix
            (``CurvatureOperator.dense``).

    Example:
        >>> dense_refusal(2_410, 8, 3_000) is None
        True
        >>> print(dense_refusal(3_001, 8, 3_000))
        P = 3,001 is above this server's limit of 3,000 for dense matrices (EXPLORER_MAX_DENSE_P)
        >>> print(dense_refusal(20_000, 8, 50_000))
        a dense P × P matrix of P = 20,000 needs 2.98 GiB, above the 2 GiB limit
    """
    if num_params > max_dense_p:
        return (
            f"P = {num_params:,} is above this server's limit of {max_dense_p:,} "
            "for dense matrices (EXPLORER_MAX_DENSE_P)"
        )
    needed = num_params**2 * element_size
    if needed > max_bytes:
        return (
            f"a dense P × P matrix of P = {num_params:,} needs {_bytes(needed)}, "
            f"above the {_bytes(max_bytes)} limit"
        )
    return None


def _bytes(count: int) -> str:
    """A memory size in MiB or GiB, three significant digits (``"2.98 GiB"``)."""
    if count >= 2**30:
        return f"{count / 2**30:.3g} GiB"
    return f"{count / 2**20:.3g} MiB"


def curvature_statuses(
    problem: ex.Problem,
    max_dense_p: int,
    max_bytes: int = DENSE_LIMIT_BYTES,
) -> tuple[CurvatureStatus, ...]:
    """Dense, matrix-free only or unavailable, for every selectable curvature."""
    too_large = dense_refusal(
        problem.num_params, problem.theta0.element_size(), max_dense_p, max_bytes
    )
    statuses = []
    for key, spec in CURVATURES.items():
        if not spec.selectable:
            continue
        reason = spec.incompatibility(problem)
        if reason is not None:
            statuses.append(CurvatureStatus(key, spec.label, "unavailable", reason))
        elif too_large is not None:
            statuses.append(CurvatureStatus(key, spec.label, "matrix_free", too_large))
        else:
            statuses.append(CurvatureStatus(key, spec.label, "dense"))
    return tuple(statuses)


def card_facts(
    spec: ProblemSpec,
    problem: ex.Problem,
    max_dense_p: int,
    max_bytes: int = DENSE_LIMIT_BYTES,
) -> ProblemFacts:
    """The card's facts about ``problem`` (built from ``spec``)."""
    test = problem.test_batch()
    return ProblemFacts(
        label=spec.label,
        group=problem_group(spec),
        architecture=spec.architecture or problem.label,
        num_params=problem.num_params,
        num_train=problem.num_examples,
        num_test=None if test is None else test.size,
        streaming=problem.is_streaming,
        likelihood=problem.loss.describe(),
        curvatures=curvature_statuses(problem, max_dense_p, max_bytes),
    )


def size_line(facts: ProblemFacts) -> str:
    """P and N in one line.

    Example:
        >>> facts = ProblemFacts("d", "toys", "MLP", 2410, 1438, 359, False, "", ())
        >>> size_line(facts)
        'P = 2,410 parameters · N = 1,438 train / 359 test'
    """
    if facts.streaming:
        data = (
            f"fresh samples every step (loss and curvature on a fixed sample of "
            f"{facts.num_train:,})"
        )
    elif facts.num_test is None:
        data = f"{facts.num_train:,} train (no test set)"
    else:
        data = f"{facts.num_train:,} train / {facts.num_test:,} test"
    return f"P = {facts.num_params:,} parameters · N = {data}"


def curvature_summary(facts: ProblemFacts) -> str:
    """How many curvatures are dense, matrix-free only and unavailable, in words.

    Example:
        >>> statuses = (CurvatureStatus("ggn", "GGN", "dense"),
        ...             CurvatureStatus("kfac", "K-FAC", "unavailable", "no layers"))
        >>> facts = ProblemFacts("d", "toys", "MLP", 2, 10, None, False, "", statuses)
        >>> curvature_summary(facts)
        '1 dense · 1 unavailable (K-FAC)'
    """
    parts = []
    for status, (name, _) in STATUS_WORDS.items():
        chosen = facts.with_status(status)
        if not chosen:
            continue
        part = f"{len(chosen)} {name}"
        if status == "unavailable":
            part += f" ({', '.join(c.label for c in chosen)})"
        parts.append(part)
    return " · ".join(parts)


def curvature_lines(facts: ProblemFacts) -> list[str]:
    """The card's per-curvature list as markdown paragraphs, one per status: what
    it means, the curvatures, and why (matrix-free: the limit; unavailable: each
    curvature's own reason).

    Example:
        >>> statuses = (CurvatureStatus("ggn", "GGN", "dense"),
        ...             CurvatureStatus("kfac", "K-FAC", "unavailable", "no layers"))
        >>> facts = ProblemFacts("d", "toys", "MLP", 2, 10, None, False, "", statuses)
        >>> for paragraph in curvature_lines(facts):
        ...     print(paragraph)
        **Dense** (the P × P matrix itself: heatmaps, exact spectra): GGN
        **Unavailable** (cannot be built on this problem):
        - K-FAC: no layers
    """
    lines = []
    for status, (name, meaning) in STATUS_WORDS.items():
        chosen = facts.with_status(status)
        if not chosen:
            continue
        head = f"**{name[0].upper()}{name[1:]}** ({meaning})"
        if status == "unavailable":
            reasons = "\n".join(f"- {c.label}: {c.reason}" for c in chosen)
            lines.append(f"{head}:\n{reasons}")
        elif status == "matrix_free":
            names = ", ".join(c.label for c in chosen)
            lines.append(f"{head}: {names}  \n_{chosen[0].reason}._")
        else:
            lines.append(f"{head}: {', '.join(c.label for c in chosen)}")
    return lines


def show_card(facts: ProblemFacts, container: Any = st) -> None:
    """Draws the card into ``container`` (the sidebar, under the selector)."""
    with container.container(border=True):
        st.markdown(
            f"**{facts.label}** ({facts.group})  \n{facts.architecture}  \n"
            f"{size_line(facts)}"
        )
        st.markdown(f"Likelihood: {facts.likelihood}")
        with st.expander(f"Curvatures: {curvature_summary(facts)}"):
            st.markdown("\n\n".join(curvature_lines(facts)))


def problem_card(experiment: Experiment, container: Any = st) -> ProblemFacts:
    """The card of the experiment's problem, as the Curvature page will build it
    (on the CPU, the experiment's dtype and seed; the views' cached copy).
    """
    problem = view_problem(experiment)
    limits = state.engine_or_stop().limits
    facts = card_facts(ex.PROBLEMS[experiment.problem], problem, limits.max_dense_p)
    ours = set(state.listed(CURVATURES))  # not another session's uploaded plugins
    facts = replace(
        facts, curvatures=tuple(c for c in facts.curvatures if c.key in ours)
    )
    show_card(facts, container)
    return facts


def cost_text(estimates: list[RunEstimate]) -> str:
    """What a comparison will roughly cost, in one line shown before Run.

    Example:
        >>> e = RunEstimate(2410, 5 * 2**20, 0.4)
        >>> cost_text([e, e]).split(" (rough")[0]
        'Estimate: about 5 MiB per run (10 MiB for all 2) and roughly 0.8 s of compute'
    """
    each = max(e.memory_bytes for e in estimates)
    total = sum(e.memory_bytes for e in estimates)
    seconds = sum(e.seconds for e in estimates)
    return (
        f"Estimate: about {format_bytes(each)} per run ({format_bytes(total)} for "
        f"all {len(estimates)}) and roughly {format_seconds(seconds)} of compute "
        "(rough: convolutions and attention take longer per parameter)."
    )


def run_costs(
    experiment: Experiment, configs: list[RunConfig]
) -> tuple[str, str | None]:
    """(the estimate of the comparison's memory and time, why this server refuses
    it or None), from the views' built copy of the problem (its P and N) and
    :func:`~explorer.server.limits.estimate_config`; call it after
    ``state.check_size``, which refuses an oversized model before it is built.
    """
    problem = view_problem(experiment)
    limits = state.engine_or_stop().limits
    estimates = [
        estimate_config(config, problem.num_params, problem.num_examples)
        for config in configs
    ]
    if not estimates:
        return "", None
    refusals = (
        limits.run_refusal(c.steps, problem.num_params, e)
        for c, e in zip(configs, estimates, strict=True)
    )
    return cost_text(estimates), next((r for r in refusals if r is not None), None)
