"""Two deliberately wrong curvatures that the check battery must flag.

``fisher_sum``: the Fisher of the *summed* loss, i.e. N times too large: it forgets the
1/N of the mean objective (THEORY.md §1), the classic scale bug. Its trace ratio
against the Fisher is N instead of 1, so damped steps are far too short.

``fisher_rowscaled``: diag(d) F with d the Fisher's diagonal normalised to mean 1, a
"preconditioner" built as a product instead of a symmetric sandwich, so it is not
symmetric and conjugate gradients on it are meaningless.
"""

from __future__ import annotations

import explorer as ex


@ex.register_curvature(
    "fisher_sum",
    label="Fisher of the summed loss (wrong scale)",
    reference="fisher",
    psd=True,
)
def fisher_sum(problem, theta, batch=None):
    """N · F: the curvature of Σ_i L_i instead of the mean."""
    size = problem.num_examples if batch is None else batch.size
    return size * ex.curvature("fisher", problem, theta, batch=batch).dense()


@ex.register_curvature(
    "fisher_rowscaled",
    label="Row-scaled Fisher (not symmetric)",
    reference="fisher",
    psd=True,
)
def fisher_rowscaled(problem, theta, batch=None):
    """diag(d) F with d = diag(F) / mean(diag(F))."""
    fisher = ex.curvature("fisher", problem, theta, batch=batch).dense()
    weights = fisher.diagonal() / fisher.diagonal().mean()
    return weights.unsqueeze(1) * fisher
