"""Low-rank plus diagonal approximation of the Fisher, as a plugin function.

F ≈ U_k Λ_k U_kᵀ + D with the top-k eigenpairs of the exact Fisher and D the part of
diag(F) the low-rank term misses (clamped at 0), the structure of many scalable
natural-gradient and Laplace approximations. It registers ``lowrank_diag_fisher`` with
an option ``rank``. Written as a plain function returning a dense matrix: the simplest
plugin form, fine for models with up to a few thousand parameters.
"""

from __future__ import annotations

import torch

import explorer as ex


@ex.register_curvature(
    "lowrank_diag_fisher",
    label="Low-rank + diagonal Fisher",
    reference="fisher",
    psd=True,
    options=(ex.Option("rank", 8, "Number of top eigenpairs kept.", low=1, high=1000),),
)
def lowrank_diag_fisher(problem, theta, batch=None, rank=8):
    """Top-``rank`` eigenpairs of the Fisher plus the diagonal remainder."""
    fisher = ex.curvature("fisher", problem, theta, batch=batch).dense()
    eigenvalues, eigenvectors = torch.linalg.eigh(fisher)
    top_values, top_vectors = eigenvalues[-rank:], eigenvectors[:, -rank:]
    low_rank = (top_vectors * top_values) @ top_vectors.T
    remainder = (fisher.diagonal() - low_rank.diagonal()).clamp_min(0.0)
    return low_rank + torch.diag(remainder)
