"""Independent references for the optimizer tests: closed forms, no explorer code.

Linear regression with a Gaussian likelihood of std σ and logistic regression, both
without bias (inputs X (N, 2), flat θ = the weight row), in the 1/N convention of
THEORY.md §1.
"""

from __future__ import annotations

import torch


def data(problem):
    """(X (N, P), y (N,)) of a linear/logistic problem, float64."""
    return problem.inputs.double(), problem.targets.double().reshape(-1)


def linreg(problem, theta):
    """(h, g, H) for h = mean (y − Xθ)² / (2σ²)."""
    x, y = data(problem)
    sigma2 = problem.options["sigma"] ** 2
    residual = y - x @ theta
    n = x.shape[0]
    value = (residual**2).mean() / (2 * sigma2)
    grad = -x.T @ residual / (n * sigma2)
    hessian = x.T @ x / (n * sigma2)
    return value, grad, hessian


def logreg(problem, theta):
    """(h, g, F) for the mean Bernoulli NLL with logits Xθ; F = G = H here."""
    x, y = data(problem)
    logits = x @ theta
    p = torch.sigmoid(logits)
    n = x.shape[0]
    value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    grad = x.T @ (p - y) / n
    fisher = x.T @ (x * (p * (1 - p)).unsqueeze(1)) / n
    return value, grad, fisher


def damped_solve(matrix, rhs, damping):
    """(C + λI)⁻¹ b by a dense LU solve."""
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype)
    return torch.linalg.solve(matrix + damping * eye, rhs)


def textbook_cg(matrix, rhs, x0, iterations):
    """Plain conjugate gradients on a dense SPD matrix for a fixed number of steps."""
    x = x0.clone()
    r = rhs - matrix @ x
    d = r.clone()
    for _ in range(iterations):
        rr = r @ r
        if rr.sqrt() < 1e-300:
            break
        ad = matrix @ d
        step = rr / (d @ ad)
        x = x + step * d
        r = r - step * ad
        d = r + (r @ r) / rr * d
    return x
