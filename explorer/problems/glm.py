r"""``doctor_visits``: a Poisson GLM of real counts, the RAND Health Insurance data.

The data are the 20,190 person-years of the RAND Health Insurance Experiment that
statsmodels ships inside its wheel (``statsmodels/datasets/randhie/randhie.csv``;
Cameron & Trivedi 2005). The count y is ``mdvis``, the number of outpatient visits
to a doctor in the year (mean 2.86, variance 20.3: overdispersed); the nine
regressors are

=========  ==============================================================
lncoins    ln(coinsurance + 1), coinsurance 0–100 %
idp        1 for an individual deductible plan
lpi        ln(max(1, annual participation incentive payment))
fmde       0 if idp = 1, else ln(max(1, MDE/(0.01·coinsurance)))
physlm     1 for a physical limitation
disea      number of chronic diseases
hlthg      1 for self-rated good health
hlthf      1 for fair health
hlthp      1 for poor health (excellent health is the omitted category)
=========  ==============================================================

standardized with the training mean and standard deviation. The CSV is located from
the installed package without importing statsmodels (a heavy import whose dataset
module can also fetch remote data) and parsed once per process with NumPy; the
numbers are those of ``statsmodels.datasets.randhie.load()``.

The model is a linear predictor with an intercept, z = wᵀx + b (P = 10; an
``nn.Linear``), and the
Poisson likelihood L = λ − y·log λ of :class:`~explorer.problems.likelihoods.PoissonLoss`:

* ``link="log"`` (λ = eᶻ, canonical): the Fisher equals the GGN and, for a linear
  predictor, the Hessian too: H = F = (1/N) Σ λ_i x̃_i x̃_iᵀ, x̃ = (x, 1).
* ``link="softplus"`` (λ = log(1 + eᶻ)): not canonical, so F ≠ G = H.

The counts are far more variable than a Poisson allows, so the empirical Fisher
(1/N) Σ (y_i − λ_i)² x̃_i x̃_iᵀ is several times the Fisher at the fit: the
misspecification that sandwich standard errors correct for.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explorer.options import Option
from explorer.problems.base import Problem, problem_from_model
from explorer.problems.likelihoods import PoissonLoss
from explorer.problems.models import mlp
from explorer.problems.networks import split, test_fraction_option
from explorer.problems.spec import BuildContext, ProblemSpec, TinyCase, packaged_file

#: The columns of randhie.csv: the count first, then the regressors.
RANDHIE_COLUMNS = (
    "mdvis",
    "lncoins",
    "idp",
    "lpi",
    "fmde",
    "physlm",
    "disea",
    "hlthg",
    "hlthf",
    "hlthp",
)
RANDHIE_ROWS = 20_190
_STATSMODELS_FILE = ("datasets", "randhie", "randhie.csv")


def randhie_path() -> Path:
    """randhie.csv inside the installed statsmodels package (not imported)."""
    return packaged_file(
        "statsmodels",
        *_STATSMODELS_FILE,
        problem="doctor_visits",
        what="the RAND HIE data",
    )


@functools.lru_cache(maxsize=1)
def load_randhie() -> tuple[np.ndarray, np.ndarray]:
    """The RAND HIE data: regressors (20190, 9) float64 and visits (20190,) float64.

    The same numbers as ``statsmodels.datasets.randhie.load()`` (``exog`` and
    ``endog``); cached per process, read-only.

    Raises:
        ValueError: The file's header is not the expected columns.
    """
    path = randhie_path()
    with path.open() as handle:
        header = tuple(handle.readline().strip().split(","))
        if header != RANDHIE_COLUMNS:
            raise ValueError(f"{path} has columns {header}; expected {RANDHIE_COLUMNS}")
        table = np.loadtxt(handle, delimiter=",", dtype=np.float64)
    counts = np.ascontiguousarray(table[:, 0])
    regressors = np.ascontiguousarray(table[:, 1:])
    counts.flags.writeable = False
    regressors.flags.writeable = False
    return regressors, counts


# --------------------------------------------------------------- doctor_visits
def build_doctor_visits(options: dict[str, Any], context: BuildContext) -> Problem:
    regressors, counts = load_randhie()
    rows = torch.arange(len(counts))
    if options["num_samples"] is not None:
        # A seeded subset of the person-years, then the train/test split within it.
        order = torch.randperm(len(counts), generator=context.generator)
        rows = order[: options["num_samples"]]
    train, test = split(len(rows), options["test_fraction"], context.generator)
    train, test = rows[train], rows[test]
    x = torch.as_tensor(np.array(regressors))
    y = torch.as_tensor(np.array(counts)).unsqueeze(1)
    # Training statistics only; a column constant on a small subset stays at 0.
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
    # An nn.Sequential holding the one nn.Linear: the hand-written MLP passes and
    # the per-module blocks (weight and bias together) recognise it.
    model = mlp((x.shape[1], 1)).double()
    with torch.no_grad():  # θ₀ = 0: rate λ(0) for everyone, as IRLS starts
        model[0].weight.zero_()
        model[0].bias.zero_()
    return problem_from_model(
        model,
        context.dtype,
        context.device,
        key="doctor_visits",
        label=f"Doctor visits (RAND HIE), Poisson GLM, {options['link']} link",
        loss=PoissonLoss(1, link=options["link"]),
        **context.data_fields(x, y, train, test),
        options=options,
        description=DOCTOR_VISITS.description,
        coordinate_names=(*RANDHIE_COLUMNS[1:], "intercept"),
    )


DOCTOR_VISITS = ProblemSpec(
    key="doctor_visits",
    label="Doctor visits (Poisson GLM, RAND HIE)",
    architecture="Poisson GLM, 9 regressors + intercept",
    build=build_doctor_visits,
    count_params=lambda options: 10,  # 9 regressors and the intercept
    options=(
        Option(
            "link",
            "log",
            "Rate λ(z): 'log' (λ = exp z, canonical: F = G = H) or 'softplus' "
            "(λ = log(1 + eᶻ): F ≠ G).",
            choices=PoissonLoss.links,
        ),
        Option(
            "num_samples",
            None,
            "Use a seeded subset of this many person-years (default: all 20,190).",
            low=2,
            high=RANDHIE_ROWS,
            kind="int",
            nullable=True,
        ),
        test_fraction_option(0.2),
    ),
    description=(
        "Real counts: the number of doctor visits in a year of 20,190 people in the "
        "RAND Health Insurance Experiment (shipped with statsmodels), regressed on "
        "insurance plan and health status (9 standardized regressors and an "
        "intercept, P = 10) by Poisson maximum likelihood. With the canonical log "
        "link the Hessian, GGN and Fisher coincide; the counts are overdispersed "
        "(variance ≈ 7 × mean), so the empirical Fisher is several times larger "
        "than the Fisher: a real case of a misspecified likelihood."
    ),
    group="real data",
    tags=frozenset({"regression", "counts", "real_data"}),
    test_cases=(
        TinyCase("visits_log", {"num_samples": 50}),
        TinyCase("visits_softplus", {"num_samples": 50, "link": "softplus"}),
    ),
)
